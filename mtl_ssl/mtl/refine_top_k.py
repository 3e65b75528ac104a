"""`refine_top_k`: refine only the proposals that can matter at inference.

The refiner needs, per proposal, the window head at L context boxes and the closeness head: at
300 proposals that is 4-5 extra box-classifier stages' worth of crops, the whole cost of refined
inference (docs/performance.md). Detections come from the highest-scoring proposals, so
refinement is run on the K proposals with the best main class probability and the others keep
their main logits. Not the paper's formulation (it refined all); its accuracy effect is measured
in docs/performance.md. With refine_top_k_in_training the same selection is made among the
sampled RoIs in training; the closeness head then runs on those rows only, and its loss covers
the positives among them (`refined_rows`).
"""
import tensorflow as tf

# Faster R-CNN's ctx entries laid out [B * P, ...] (one row per proposal, image-major); R-FCN's
# box_classifier_features is a per-image map and is kept whole
PER_PROPOSAL_ROWS = ('proposal_crops', 'box_classifier_features')


def select(ctx, k, per_proposal_rows=PER_PROPOSAL_ROWS):
    """ctx restricted to each image's top-k proposals, and their indices [B, k].

    Proposals are ranked by the best non-background softmax probability of the main class
    logits; padded proposals (beyond num_proposals) rank last, so the first
    min(num_proposals, k) selected rows are the valid ones, as num_proposals says."""
    logits = ctx['class_logits']
    num_boxes = tf.shape(logits)[1]
    scores = tf.reduce_max(tf.nn.softmax(logits)[..., 1:], axis=-1)
    valid = tf.sequence_mask(ctx['num_proposals'], num_boxes)
    # k may exceed a proposal count known only at run time
    _, indices = tf.math.top_k(tf.where(valid, scores, -1.0), k=tf.minimum(k, num_boxes))
    sub = dict(ctx)
    for key in ('proposal_boxes_normalized', 'class_logits'):
        sub[key] = tf.gather(ctx[key], indices, batch_dims=1)
    sub['num_proposals'] = tf.minimum(tf.cast(ctx['num_proposals'], tf.int32), k)
    rows = tf.reshape(indices + tf.range(tf.shape(indices)[0])[:, None] * num_boxes, [-1])
    for key in per_proposal_rows:
        if ctx.get(key) is not None:
            sub[key] = tf.gather(ctx[key], rows)
    return sub, indices


def scatter(main_logits, refined, indices):
    """main_logits [B, P, C+1] with rows `indices` [B, k] replaced by refined [B, k, C+1]."""
    batch = tf.broadcast_to(tf.range(tf.shape(indices)[0])[:, None], tf.shape(indices))
    return tf.tensor_scatter_nd_update(main_logits, tf.stack([batch, indices], -1),
                                       tf.cast(refined, main_logits.dtype))


def active(k, num_boxes, training, in_training=False):
    """True when top-k applies: inference (or training with in_training), k set and not above
    the proposal count (when it is static; a run-time count is handled by select)."""
    return (in_training or not training) and k > 0 and (num_boxes is None or k < num_boxes)


def refined_rows(indices, num_proposals, num_boxes):
    """[B, P] float mask: 1 at the selected rows `indices` [B, k] that are valid proposals
    (in training, the rows the closeness head ran on and its loss covers)."""
    hits = tf.reduce_max(tf.one_hot(indices, num_boxes, dtype=tf.float32), axis=1)
    return hits * tf.sequence_mask(num_proposals, num_boxes, dtype=tf.float32)
