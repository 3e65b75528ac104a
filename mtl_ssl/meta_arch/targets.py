"""Target assignment for both stages (OD API TargetAssigner semantics).

'proposal' stage (RPN): IoU matcher 0.7 / 0.3 with a forced match for every
GT box; class target 1 = object. 'detection' stage (box classifier): IoU
matcher 0.5 / 0.5 (negatives below 0.5, nothing ignored); class target = the
GT class one-hot with background at index 0. Weights as the OD API:
regression weight = GT weight for matched entries (else 0); class weight = GT
weight for matched, 1 (negative_class_weight) for unmatched, 0 for ignored.
"""
import tensorflow as tf

from mtl_ssl.core import box_ops
from mtl_ssl.core import matcher


def assign(boxes, box_valid, gt_boxes, gt_valid, gt_weights, box_coder,
           matched_threshold, unmatched_threshold, force_match_for_each_row):
  """Matches boxes to GT and builds regression targets and weights.

  Args:
    boxes: [B, N, 4] absolute anchors / proposals.
    box_valid: bool [B, N] or [N]; invalid boxes get zero weights.
    gt_boxes: [B, M, 4] absolute GT; gt_valid bool [B, M]; gt_weights [B, M].

  Returns dict with
    matches [B, N] int32 (>= 0 GT row, -1 negative, -2 ignored),
    positive, negative [B, N] bool (within box_valid),
    reg_targets [B, N, 4], reg_weights [B, N], cls_weights [B, N].
  """
  iou = box_ops.pairwise_iou(gt_boxes, boxes)  # [B, M, N]
  box_valid = tf.broadcast_to(tf.cast(box_valid, tf.bool),
                              tf.shape(iou)[::2])
  # invalid boxes take no part in matching (OD API: pruned beforehand), so a
  # forced match never lands on one
  iou = tf.where(box_valid[:, tf.newaxis, :], iou, -1.0)
  matches = matcher.argmax_match(iou, gt_valid, matched_threshold,
                                 unmatched_threshold, force_match_for_each_row)
  positive = (matches >= 0) & box_valid
  negative = tf.equal(matches, matcher.UNMATCHED) & box_valid
  safe = tf.maximum(matches, 0)
  matched_gt = tf.gather(gt_boxes, safe, batch_dims=1)  # [B, N, 4]
  matched_weight = tf.gather(gt_weights, safe, batch_dims=1)
  reg_targets = box_coder.encode(matched_gt, boxes)
  reg_targets = tf.where(positive[..., tf.newaxis], reg_targets, 0.0)
  reg_weights = tf.where(positive, matched_weight, 0.0)
  cls_weights = tf.where(positive, matched_weight,
                         tf.where(negative, 1.0, 0.0))
  return {
      'matches': matches,
      'positive': positive,
      'negative': negative,
      'reg_targets': reg_targets,
      'reg_weights': reg_weights,
      'cls_weights': cls_weights,
  }


def class_targets_with_background(matches, positive, gt_classes):
  """[B, N, C+1] targets: the matched GT's classes for positives, background
  [1, 0, ...] otherwise."""
  gathered = tf.gather(gt_classes, tf.maximum(matches, 0), batch_dims=1)
  with_bg = tf.pad(gathered, [[0, 0], [0, 0], [1, 0]])
  num_slots = tf.shape(with_bg)[-1]
  background = tf.one_hot(0, num_slots, dtype=with_bg.dtype)
  return tf.where(positive[..., tf.newaxis], with_bg, background)
