"""TensorBoard summaries: scalars, pictures of the training input and of evaluation results.

Pictures are drawn on numpy batches (mtl_ssl.training.visualization) and written eagerly, so no
summary op runs inside the compiled train step.
"""
import math

import numpy as np
import tensorflow as tf

from mtl_ssl.data.fields import InputDataFields as fields
from mtl_ssl.training import visualization as vis


def write_scalars(writer, scalars, step):
  """Writes every finite scalar of `scalars` at `step` (NaN metrics, e.g. classes without ground
  truth, are skipped)."""
  with writer.as_default(step=int(step)):
    for name, value in scalars.items():
      value = float(value)
      if math.isfinite(value):
        tf.summary.scalar(name, value)
  writer.flush()


def write_images(writer, images, step, max_outputs=10):
  """images: {name: uint8 [N,H,W,3]}."""
  with writer.as_default(step=int(step)):
    for name, batch in images.items():
      tf.summary.image(name, batch, max_outputs=max_outputs)
  writer.flush()


def _numpy(batch):
  return {key: value.numpy() if hasattr(value, 'numpy') else np.asarray(value)
          for key, value in batch.items()}


def train_input_pictures(features, labels, category_index, max_images=3):
  """What the detector is trained on, drawn on original_image (needs retain_original_image):
  ground-truth boxes; with Task 1, the windows and their top classes; with Task 3, the foreground
  mask over the image. Returns {summary name: uint8 batch}."""
  features, labels = _numpy(features), _numpy(labels)
  if fields.original_image not in features:
    raise ValueError('train input pictures need features["original_image"] '
                     '(build the dataset with retain_original_image=True)')
  count = min(max_images, features[fields.original_image].shape[0])
  pictures = {'train_input_images/groundtruth_boxes': [],
              'train_input_images/mtl_windows': [],
              'train_input_images/mtl_foreground_mask': []}
  for i in range(count):
    image = vis.upscale_small(vis.crop_to_true_shape(features[fields.original_image][i],
                                                     features[fields.true_image_shape][i]))
    num = int(labels[fields.num_groundtruth_boxes][i])
    classes = np.argmax(labels[fields.groundtruth_classes][i][:num], axis=-1) + 1
    pictures['train_input_images/groundtruth_boxes'].append(vis.draw_boxes(
        image, labels[fields.groundtruth_boxes][i][:num], classes,
        category_index=category_index, max_boxes=100))
    if fields.groundtruth_mtl_windows in labels:
      pictures['train_input_images/mtl_windows'].append(vis.draw_windows(
          image, labels[fields.groundtruth_mtl_windows][i],
          labels[fields.groundtruth_mtl_window_labels][i], category_index))
    if fields.groundtruth_mtl_foreground_mask in labels:
      pictures['train_input_images/mtl_foreground_mask'].append(vis.overlay_mask(
          image, labels[fields.groundtruth_mtl_foreground_mask][i]))
  return {name: vis.same_size_batch(images) for name, images in pictures.items() if images}


def eval_side_by_side(features, labels, detections, category_index, min_score=0.5, max_boxes=20):
  """One picture per image of the batch: detections | ground truth, on the original image."""
  features, labels, detections = _numpy(features), _numpy(labels), _numpy(detections)
  pictures = []
  for i in range(features[fields.original_image].shape[0]):
    image = vis.upscale_small(vis.crop_to_true_shape(features[fields.original_image][i],
                                                     features[fields.true_image_shape][i]))
    num_det = int(detections['num_detections'][i])
    left = vis.draw_boxes(image, detections['detection_boxes'][i][:num_det],
                          detections['detection_classes'][i][:num_det].astype(np.int64) + 1,
                          detections['detection_scores'][i][:num_det], category_index,
                          min_score=min_score, max_boxes=max_boxes)
    num_gt = int(labels[fields.num_groundtruth_boxes][i])
    right = vis.draw_boxes(image, labels[fields.groundtruth_boxes][i][:num_gt],
                           np.argmax(labels[fields.groundtruth_classes][i][:num_gt], -1) + 1,
                           category_index=category_index, max_boxes=100)
    pictures.append(vis.side_by_side(left, right))
  return pictures
