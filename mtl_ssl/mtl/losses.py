"""Unweighted losses of the MTL-SSL auxiliary tasks (method.md, Tasks 1-3).

Pure functions of tensors; the loss weights are applied in one place (`MTLHeads.loss`). Every
function works for any batch size and returns a float32 scalar.
"""
import tensorflow as tf


def _f32(x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def window_loss(window_logits, window_labels):
    """Task 1: softmax cross-entropy against the soft window labels, mean over the batch's windows.

    window_logits, window_labels: [B, M, C+1]. A label row that sums to 0 is a padded window (the
    label builder never makes one for a real window: its labels sum to 1) and is left out of the
    mean, so padding never dilutes the loss.
    """
    logits, labels = _f32(window_logits), _f32(window_labels)
    cross_entropy = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    valid = tf.cast(tf.reduce_sum(labels, -1) > 0.0, tf.float32)
    return tf.reduce_sum(cross_entropy * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)


def gather_closeness_targets(closeness_labels, matched_gt_indices):
    """Closeness target of every proposal: the label row of its matched GT box. [B, P, C+1].

    closeness_labels [B, N, C+1]; matched_gt_indices [B, P] (negatives may hold -1 or any
    value: they are clamped here and masked out by the loss).
    """
    labels = _f32(closeness_labels)
    indices = tf.cast(matched_gt_indices, tf.int32)
    if labels.shape[1] == 0:  # no GT row at all (static): no target
        return tf.zeros(tf.concat([tf.shape(indices), tf.shape(labels)[2:]], 0), tf.float32)
    indices = tf.clip_by_value(indices, 0, tf.shape(labels)[1] - 1)
    return tf.gather(labels, indices, batch_dims=1)


def closeness_loss(closeness_logits, closeness_labels, matched_gt_indices, positive_mask,
                   sum_over_images=False):
    """Task 2 loss on the positive proposals (method.md; original `_loss_box_classifier`).

    Per proposal: CE = -sum_{k>=1} t_k log softmax(z_1..z_C)_k with the background column dropped
    from logits and target (t is not renormalised), times sum_{k>=1} t_k (a box whose GT has no
    neighbour of another class has t_{1..C} = 0 and adds nothing). Per image: sum over positives /
    max(1, #positives); then the mean over images, like every other loss (sum_over_images: the sum,
    the TF1 code read literally for several images in one clone; mtl.closeness_loss_sum_over_images).
    """
    logits = _f32(closeness_logits)[..., 1:]
    targets = gather_closeness_targets(closeness_labels, matched_gt_indices)[..., 1:]
    positives = _f32(positive_mask)
    cross_entropy = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    per_proposal = cross_entropy * tf.reduce_sum(targets, -1) * positives
    per_image = tf.reduce_sum(per_proposal, 1) / tf.maximum(tf.reduce_sum(positives, 1), 1.0)
    return tf.reduce_sum(per_image) if sum_over_images else tf.reduce_mean(per_image)


def foreground_loss(foreground_logits, foreground_mask, foreground_weights=None):
    """Task 3: 2-way softmax CE against [1 - mask, mask], weighted per cell, mean over all cells.

    foreground_logits [B, G, G, 2]; foreground_mask, foreground_weights [B, G, G]
    (weights None = unweighted, i.e. mtl.edgemask_weighted false).
    """
    logits, mask = _f32(foreground_logits), _f32(foreground_mask)
    targets = tf.stack([1.0 - mask, mask], -1)
    cross_entropy = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    if foreground_weights is not None:
        cross_entropy = cross_entropy * _f32(foreground_weights)
    return tf.reduce_mean(cross_entropy)
