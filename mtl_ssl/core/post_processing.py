"""Score conversion and batched (multi-class) non-max suppression.

Wraps tf.image.combined_non_max_suppression (one fused kernel, static output
shapes) with the OD API's batch_multiclass_non_max_suppression semantics:
boxes are clipped to a per-image window, boxes that become empty are dropped,
invalid (padded) boxes never survive, scores must be > score_threshold, and
with change_coordinate_frame the output is normalized w.r.t. the window. It
also recovers, for every detection, the index of the input box it came from
(to gather per-box fields such as the multi-class scores).
"""
import tensorflow as tf

from mtl_ssl.core import box_ops

SCORE_CONVERTERS = ('IDENTITY', 'SIGMOID', 'SOFTMAX')


def score_converter_fn(name, logit_scale=1.0):
  """OD API score converter: logits / logit_scale, then identity / sigmoid /
  softmax over the last axis."""
  if name not in SCORE_CONVERTERS:
    raise ValueError('score_converter must be one of %s, got %r' %
                     (SCORE_CONVERTERS, name))
  if logit_scale <= 0:
    raise ValueError('logit_scale must be positive, got %s' % logit_scale)

  def convert(logits):
    scaled = logits / logit_scale
    if name == 'SIGMOID':
      return tf.sigmoid(scaled)
    if name == 'SOFTMAX':
      return tf.nn.softmax(scaled, axis=-1)
    return scaled
  return convert


def batch_multiclass_nms(boxes, scores, score_threshold, iou_threshold,
                         max_size_per_class, max_total_size, clip_window=None,
                         change_coordinate_frame=False, num_valid_boxes=None):
  """Per-class NMS over a batch.

  Args:
    boxes: [B, N, q, 4] absolute boxes, q = 1 (shared) or num_classes.
    scores: [B, N, K] class scores (no background column).
    clip_window: optional [B, 4] windows to clip to.
    change_coordinate_frame: normalize outputs w.r.t. clip_window.
    num_valid_boxes: optional [B] number of real (unpadded) boxes.

  Returns dict: boxes [B, T, 4], scores [B, T], classes [B, T] float (0-based),
    num_detections [B] int32, source_indices [B, T] int32 (0 for padding),
    valid [B, T] bool; T = max_total_size.
  """
  num_boxes = boxes.shape[1] if boxes.shape[1] is not None else tf.shape(boxes)[1]
  q = boxes.shape[2]
  if clip_window is not None:
    flat = tf.reshape(boxes, [tf.shape(boxes)[0], -1, 4])
    flat = box_ops.clip_to_window(flat, clip_window)
    boxes = tf.reshape(flat, tf.shape(boxes))
    non_empty = box_ops.area(boxes) > 0.0  # [B, N, q]
    scores = tf.where(non_empty, scores, tf.minimum(scores, score_threshold))
  if num_valid_boxes is not None:
    valid = tf.sequence_mask(num_valid_boxes, num_boxes)[:, :, tf.newaxis]
    scores = tf.where(valid, scores, tf.minimum(scores, score_threshold))
  boxes = tf.stop_gradient(boxes)
  scores = tf.stop_gradient(scores)
  nmsed_boxes, nmsed_scores, nmsed_classes, num_det = (
      tf.image.combined_non_max_suppression(
          boxes, scores, max_output_size_per_class=max_size_per_class,
          max_total_size=max_total_size, iou_threshold=iou_threshold,
          score_threshold=score_threshold, pad_per_class=False,
          clip_boxes=False))
  det_valid = tf.sequence_mask(num_det, max_total_size)
  # source box of each detection: same coordinates and score in its class
  class_idx = tf.cast(nmsed_classes, tf.int32)
  box_class_idx = class_idx if q != 1 else tf.zeros_like(class_idx)
  per_class_boxes = tf.transpose(boxes, [0, 2, 1, 3])  # [B, q, N, 4]
  cand_boxes = tf.gather(per_class_boxes, box_class_idx, batch_dims=1)
  cand_scores = tf.gather(tf.transpose(scores, [0, 2, 1]), class_idx,
                          batch_dims=1)  # [B, T, N]
  same = (tf.reduce_all(tf.equal(cand_boxes, nmsed_boxes[:, :, tf.newaxis]),
                        axis=-1) &
          tf.equal(cand_scores, nmsed_scores[:, :, tf.newaxis]))
  source = tf.argmax(tf.cast(same, tf.int32), axis=-1, output_type=tf.int32)
  source = tf.where(det_valid, source, 0)
  if change_coordinate_frame and clip_window is not None:
    win = clip_window[:, tf.newaxis, :]
    height = win[..., 2] - win[..., 0]
    width = win[..., 3] - win[..., 1]
    nmsed_boxes = tf.stack([
        (nmsed_boxes[..., 0] - win[..., 0]) / height,
        (nmsed_boxes[..., 1] - win[..., 1]) / width,
        (nmsed_boxes[..., 2] - win[..., 0]) / height,
        (nmsed_boxes[..., 3] - win[..., 1]) / width], axis=-1)
    nmsed_boxes = tf.where(det_valid[..., tf.newaxis], nmsed_boxes, 0.0)
  return {
      'boxes': nmsed_boxes,
      'scores': nmsed_scores,
      'classes': nmsed_classes,
      'num_detections': num_det,
      'source_indices': source,
      'valid': det_valid,
  }
