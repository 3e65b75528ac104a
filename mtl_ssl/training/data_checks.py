"""Checks of the ground truth against the model's settings, with warnings that say what to change.

Found by training on real small-object data (aerial trees: one class, ~24 px objects, 20-50 per
image), where both problems cost accuracy silently:
- detection caps: at most min(max_detections_per_class, first_stage_max_proposals) detections per
  class and max_total_detections per image (second_stage_post_processing) bound the recall;
- anchors: after the image_resizer, objects much smaller (or larger) than every anchor shape of
  the grid_anchor_generator get no anchor of IoU >= 0.3 and are learned poorly.
The evaluation runs these checks once on the eval data (eval_loop). The one-class closeness check
needs no data: mtl_ssl.config.validation.
"""
import warnings

from absl import logging
import numpy as np

from mtl_ssl.config.errors import ConfigAdviceWarning
from mtl_ssl.data.fields import InputDataFields as fields

# An object "fits" an anchor shape when their centred IoU reaches the RPN's background
# threshold (0.3): below it, every anchor calls the object background and only the one forced
# match of the RPN's matcher learns it. (The scenes data: 1-4% of the objects below it.)
ANCHOR_IOU = 0.3
MAX_POORLY_COVERED = 0.1  # warn when more objects than this fraction fit no anchor shape
MIN_POORLY_COVERED = 5  # ... and at least this many (a tiny eval set is no evidence)
MIN_RECALL_BOUND = 0.99  # warn when the detection caps make recall lower than this possible


def anchor_shapes(model_config):
  """[A, 2] (height, width) in pixels of the model input of the first-stage anchors (of every
  pyramid level for FPN's multiscale_anchor_generator)."""
  from mtl_ssl.core import anchor_generator  # pylint: disable=import-outside-toplevel
  detector = getattr(model_config, model_config.WhichOneof('model'))
  generator = anchor_generator.build(detector.first_stage_anchor_generator)
  # FPN's multiscale generator: the shapes of every level (one grid generator per level)
  levels = getattr(generator, 'level_generators', [generator])
  anchors = np.concatenate([np.asarray(level.generate(1, 1)) for level in levels], 0)
  return np.stack([anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]], axis=1)


def best_centred_iou(box_sizes, anchor_sizes):
  """For every box [N, 2] (h, w): its highest IoU with an anchor shape [A, 2] of the same
  centre (the best any grid position can give)."""
  box_sizes = np.asarray(box_sizes, np.float64).reshape(-1, 2)
  anchor_sizes = np.asarray(anchor_sizes, np.float64).reshape(-1, 2)
  intersection = (np.minimum(box_sizes[:, None, 0], anchor_sizes[None, :, 0])
                  * np.minimum(box_sizes[:, None, 1], anchor_sizes[None, :, 1]))
  union = (np.prod(box_sizes, 1)[:, None] + np.prod(anchor_sizes, 1)[None, :] - intersection)
  return np.max(intersection / np.maximum(union, 1e-12), axis=1) if len(box_sizes) else np.zeros(0)


def recall_bound(counts_per_image, max_per_class, max_total):
  """Highest recall the caps allow: sum over images of min(sum over classes of min(n_c,
  max_per_class), max_total) / number of objects. counts_per_image: [I, C] object counts."""
  counts = np.asarray(counts_per_image, np.int64).reshape(len(counts_per_image), -1)
  total = counts.sum()
  if total == 0:
    return 1.0
  per_image = np.minimum(np.minimum(counts, max_per_class).sum(axis=1), max_total)
  return float(per_image.sum() / total)


def _detection_caps(model_config):
  detector = getattr(model_config, model_config.WhichOneof('model'))
  nms = detector.second_stage_post_processing.batch_non_max_suppression
  per_class = int(nms.max_detections_per_class)
  proposals = int(detector.first_stage_max_proposals)
  return min(per_class, proposals), per_class, int(nms.max_total_detections), proposals


class GroundTruthSummary:
  """Collects object counts and sizes (pixels of the model input) from numpy batches."""

  def __init__(self):
    self.counts = []  # per image: objects per class [C]
    self.sizes = []  # per image: [n, 2] (h, w) in pixels after the image_resizer

  def add_batch(self, features, labels):
    shapes = np.asarray(features[fields.true_image_shape])
    for i in range(shapes.shape[0]):
      n = int(labels[fields.num_groundtruth_boxes][i])
      boxes = np.asarray(labels[fields.groundtruth_boxes][i][:n], np.float64)
      one_hot = np.asarray(labels[fields.groundtruth_classes][i][:n])
      self.counts.append(one_hot.sum(axis=0))  # one-hot rows: objects per class
      self.sizes.append(np.stack([(boxes[:, 2] - boxes[:, 0]) * shapes[i, 0],
                                  (boxes[:, 3] - boxes[:, 1]) * shapes[i, 1]], axis=1))

  def warnings(self, model_config):
    """Messages (empty when all is well) for this data and model_config."""
    if not self.counts:
      return []
    messages = []
    cap, per_class, total_cap, proposals = _detection_caps(model_config)
    bound = recall_bound(np.stack(self.counts), cap, total_cap)
    if bound < MIN_RECALL_BOUND:
      most = np.stack(self.counts)
      messages.append(
          f'detection caps limit the recall to {bound:.1%} on this data: images have up to '
          f'{int(most.max())} objects of one class and {int(most.sum(1).max())} in all, but the '
          f'model keeps at most min(second_stage_post_processing.batch_non_max_suppression.'
          f'max_detections_per_class {per_class}, first_stage_max_proposals {proposals}) = '
          f'{cap} per class and max_total_detections {total_cap} per image. Raise them above '
          'the most objects an image has (e.g. max_detections_per_class: 100, '
          'max_total_detections: 100, first_stage_max_proposals: 300); see '
          'docs/getting_started.md "Small, dense objects and one-class data".')
    sizes = np.concatenate(self.sizes) if self.sizes else np.zeros((0, 2))
    sizes = sizes[(sizes[:, 0] > 0) & (sizes[:, 1] > 0)]
    if len(sizes):
      anchors = anchor_shapes(model_config)
      fits = best_centred_iou(sizes, anchors) >= ANCHOR_IOU
      if 1.0 - fits.mean() > MAX_POORLY_COVERED and np.sum(~fits) >= MIN_POORLY_COVERED:
        side = np.sqrt(np.prod(sizes, axis=1))
        anchor_side = np.sqrt(np.prod(anchors, axis=1))
        smaller = int(np.sum(~fits & (side < anchor_side.min())))
        larger = int(np.sum(~fits & (side > anchor_side.max())))
        messages.append(
            f'{1.0 - fits.mean():.0%} of the objects fit no anchor shape (IoU >= {ANCHOR_IOU} '
            f'with an anchor of the same centre) after the image_resizer: objects are '
            f'{np.percentile(side, 5):.0f}-{np.percentile(side, 95):.0f} px (5th-95th '
            f'percentile, median {np.median(side):.0f} px), anchors {anchor_side.min():.0f}-'
            f'{anchor_side.max():.0f} px; {smaller} objects are smaller than every anchor, '
            f'{larger} larger. Set grid_anchor_generator scales (x its height/width, default '
            '256) to cover the object sizes, or resize the images less (image_resizer); see '
            'docs/getting_started.md "Small, dense objects and one-class data".')
    return messages


def warn(messages):
  """Each message as a ConfigAdviceWarning and an absl warning (seen in logs and by tests)."""
  for message in messages:
    logging.warning('%s', message)
    warnings.warn(message, ConfigAdviceWarning, stacklevel=2)
