"""Second-stage post-processing (OD API _postprocess_box_classifier).

Decode the refined box encodings at the proposals, convert logits to scores,
per-class NMS on the class columns (background dropped) with boxes clipped to
the true image and normalized w.r.t. it; gather each detection's full score
vector; report the raw (pre-NMS) boxes of every proposal's best class.
"""
import tensorflow as tf

from mtl_ssl.core import box_ops
from mtl_ssl.core import post_processing


class SecondStagePostprocessor:
  """Callable holding the NMS settings and the score converter."""

  def __init__(self, score_converter='IDENTITY', logit_scale=1.0,
               score_threshold=0.0, iou_threshold=0.6,
               max_detections_per_class=100, max_total_detections=100,
               use_class_agnostic_nms=False):
    if use_class_agnostic_nms:
      raise ValueError('second_stage_post_processing.batch_non_max_suppression.'
                       'use_class_agnostic_nms is not supported')
    if not 0.0 <= iou_threshold <= 1.0:
      raise ValueError('batch_non_max_suppression.iou_threshold must be in '
                       '[0, 1], got %s' % iou_threshold)
    if max_detections_per_class < 1 or max_total_detections < 1:
      raise ValueError('batch_non_max_suppression max_detections_per_class and '
                       'max_total_detections must be >= 1')
    self.score_fn = post_processing.score_converter_fn(score_converter,
                                                       logit_scale)
    self.score_threshold = float(score_threshold)
    self.iou_threshold = float(iou_threshold)
    self.max_detections_per_class = int(max_detections_per_class)
    self.max_total_detections = int(max_total_detections)

  def __call__(self, refined_box_encodings, class_logits, proposal_boxes,
               num_proposals, true_image_shapes, box_coder):
    """refined_box_encodings [B, P, q, 4], class_logits [B, P, C+1],
    proposal_boxes [B, P, 4] absolute -> detection dict."""
    decoded = box_coder.decode(refined_box_encodings,
                               proposal_boxes[:, :, tf.newaxis])  # [B,P,q,4]
    scores_with_bg = self.score_fn(class_logits)
    class_scores = scores_with_bg[..., 1:]
    window = box_ops.true_image_window(true_image_shapes)
    nms = post_processing.batch_multiclass_nms(
        decoded, class_scores, self.score_threshold, self.iou_threshold,
        self.max_detections_per_class, self.max_total_detections,
        clip_window=window, change_coordinate_frame=True,
        num_valid_boxes=num_proposals)
    multiclass = tf.gather(scores_with_bg, nms['source_indices'], batch_dims=1)
    multiclass = tf.where(nms['valid'][..., tf.newaxis], multiclass, 0.0)
    if decoded.shape[2] == 1:
      raw_boxes = decoded[:, :, 0]
    else:
      best = tf.argmax(class_scores, axis=-1, output_type=tf.int32)
      raw_boxes = tf.gather(decoded, best[..., tf.newaxis], batch_dims=2)[:, :, 0]
    raw_boxes = box_ops.clip_to_window(raw_boxes, window)
    shapes = tf.cast(true_image_shapes, tf.float32)
    raw_boxes = box_ops.to_normalized(raw_boxes, shapes[:, 0], shapes[:, 1])
    return {
        'detection_boxes': nms['boxes'],
        'detection_scores': nms['scores'],
        'detection_classes': nms['classes'],
        'num_detections': tf.cast(nms['num_detections'], tf.float32),
        'detection_multiclass_scores': multiclass,
        'raw_detection_boxes': raw_boxes,
        'raw_detection_scores': scores_with_bg,
    }
