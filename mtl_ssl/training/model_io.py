"""Glue between batches of the input pipeline, the DetectionModel and the evaluators.

One place for: unpadding the batch labels into the per-image lists of provide_groundtruth, the
forward pass + losses used by training and evaluation, and turning a batch of detections into the
evaluators' per-image dicts (absolute pixels of the original image, 1-based classes).
"""
import numpy as np
import tensorflow as tf

from mtl_ssl.data.fields import InputDataFields as fields

LABEL_ID_OFFSET = 1  # postprocess classes are 0-based; label maps and evaluators are 1-based

# batch label key -> provide_groundtruth argument, for labels kept whole per image
_PER_IMAGE_MTL_LABELS = {
    fields.groundtruth_mtl_windows: 'groundtruth_mtl_windows_list',
    fields.groundtruth_mtl_window_labels: 'groundtruth_mtl_window_labels_list',
    fields.groundtruth_mtl_foreground_mask: 'groundtruth_mtl_foreground_mask_list',
    fields.groundtruth_mtl_foreground_weights: 'groundtruth_mtl_foreground_weights_list',
}


def _static_batch_size(tensor, key):
  batch_size = tensor.shape[0]
  if batch_size is None:
    raise ValueError(f'labels[{key!r}] has no static batch size; the input pipeline must batch '
                     'with drop_remainder (static shapes, docs/architecture.md section 2)')
  return batch_size


def groundtruth_lists(labels):
  """provide_groundtruth keyword arguments from a padded label batch."""
  boxes = labels[fields.groundtruth_boxes]
  batch_size = _static_batch_size(boxes, fields.groundtruth_boxes)
  num_boxes = tf.unstack(tf.cast(labels[fields.num_groundtruth_boxes], tf.int32), batch_size)

  def unpad(key):
    return [image[:n] for image, n in zip(tf.unstack(labels[key], batch_size), num_boxes)]

  lists = {'groundtruth_boxes_list': unpad(fields.groundtruth_boxes),
           'groundtruth_classes_list': unpad(fields.groundtruth_classes)}
  if fields.groundtruth_weights in labels:
    lists['groundtruth_weights_list'] = unpad(fields.groundtruth_weights)
  if fields.groundtruth_mtl_closeness_labels in labels:
    lists['groundtruth_mtl_closeness_labels_list'] = unpad(
        fields.groundtruth_mtl_closeness_labels)
  for key, argument in _PER_IMAGE_MTL_LABELS.items():
    if key in labels:
      lists[argument] = tf.unstack(labels[key], batch_size)
  return lists


def provide_groundtruth(model, labels):
  model.provide_groundtruth(**groundtruth_lists(labels))


def losses_with_total(model, prediction_dict, true_image_shapes, add_regularization_loss=True):
  """model.loss plus Loss/regularization_loss; returns (losses dict, total loss)."""
  losses = dict(model.loss(prediction_dict, true_image_shapes))
  if add_regularization_loss:
    regularization = [tf.cast(r, tf.float32) for r in model.regularization_losses()]
    if regularization:
      losses['Loss/regularization_loss'] = tf.add_n(regularization)
  if not losses:
    raise ValueError('model.loss returned no losses')
  total = tf.add_n([tf.cast(value, tf.float32) for value in losses.values()])
  return losses, total


def auxiliary_statistics(prediction_dict, labels):
  """Sums for the auxiliary-task quality on eval data, when those heads ran.

  Returns a dict of batch sums (summed over batches, divided at the end by eval_loop):
  window cross-entropy against the soft Task-1 label and top-1 agreement (per window), and the
  foreground head's intersection / union with the Task-3 mask (probability > 0.5 vs mask > 0.5).
  """
  stats = {}
  window_labels = labels.get(fields.groundtruth_mtl_window_labels)
  if 'mtl_window_logits' in prediction_dict and window_labels is not None:
    logits = tf.cast(prediction_dict['mtl_window_logits'], tf.float32)
    cross_entropy = -tf.reduce_sum(window_labels * tf.nn.log_softmax(logits), axis=-1)
    agree = tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(window_labels, -1)), tf.float32)
    stats['window_cross_entropy_sum'] = tf.reduce_sum(cross_entropy)
    stats['window_top1_sum'] = tf.reduce_sum(agree)
    stats['window_count'] = tf.cast(tf.size(cross_entropy), tf.float32)
  mask = labels.get(fields.groundtruth_mtl_foreground_mask)
  if 'mtl_foreground_logits' in prediction_dict and mask is not None:
    logits = tf.cast(prediction_dict['mtl_foreground_logits'], tf.float32)
    predicted = tf.nn.softmax(logits)[..., 1] > 0.5
    target = mask > 0.5
    stats['foreground_intersection'] = tf.reduce_sum(tf.cast(predicted & target, tf.float32))
    stats['foreground_union'] = tf.reduce_sum(tf.cast(predicted | target, tf.float32))
  return stats


def auxiliary_metrics(sums):
  """Final MTL/* metrics from the summed auxiliary statistics."""
  metrics = {}
  if sums.get('window_count', 0) > 0:
    metrics['MTL/window_cross_entropy'] = sums['window_cross_entropy_sum'] / sums['window_count']
    metrics['MTL/window_top1_accuracy'] = sums['window_top1_sum'] / sums['window_count']
  if 'foreground_union' in sums:
    union = sums['foreground_union']
    metrics['MTL/foreground_iou'] = (sums['foreground_intersection'] / union) if union > 0 else 1.0
  return metrics


def _image_id(source_id, fallback):
  if isinstance(source_id, bytes):
    source_id = source_id.decode('utf-8', 'replace')
  return source_id or fallback


def evaluation_examples(features, labels, detections, start_index=0):
  """Per-image (image_id, groundtruth_dict, detections_dict) for the evaluators, from numpy
  batches. Boxes become absolute pixels of the original image ([ymin, xmin, ymax, xmax]);
  detection classes become 1-based; padding rows are dropped."""
  shapes = np.asarray(features[fields.original_image_spatial_shape])
  examples = []
  for i in range(shapes.shape[0]):
    scale = np.array([shapes[i, 0], shapes[i, 1], shapes[i, 0], shapes[i, 1]], np.float64)
    num_gt = int(labels[fields.num_groundtruth_boxes][i])
    groundtruth = {
        'groundtruth_boxes': np.asarray(labels[fields.groundtruth_boxes][i][:num_gt]) * scale,
        'groundtruth_classes':
            np.argmax(labels[fields.groundtruth_classes][i][:num_gt], axis=-1) + LABEL_ID_OFFSET,
    }
    for key in (fields.groundtruth_difficult, fields.groundtruth_is_crowd):
      if key in labels:
        groundtruth[key] = np.asarray(labels[key][i][:num_gt])
    num_det = int(detections['num_detections'][i])
    detected = {
        'detection_boxes': np.asarray(detections['detection_boxes'][i][:num_det]) * scale,
        'detection_scores': np.asarray(detections['detection_scores'][i][:num_det]),
        'detection_classes':
            np.asarray(detections['detection_classes'][i][:num_det]).astype(np.int64)
            + LABEL_ID_OFFSET,
    }
    source_id = (features[fields.source_id][i] if fields.source_id in features else b'')
    examples.append((_image_id(source_id, f'image_{start_index + i}'), groundtruth, detected))
  return examples
