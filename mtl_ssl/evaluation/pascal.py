"""PASCAL VOC detection metrics, computed the way the OD API's PascalDetectionEvaluator does.

Per image and class, detections are sorted by score and greedily matched to the ground-truth box of
highest IoU; IoU >= 0.5 with an unmatched non-difficult box is a true positive, a match to an
already-taken box is a false positive, a match to a difficult box is ignored (neither). Difficult
boxes do not count as ground truth. AP is the area under the monotone precision envelope over all
recall points (VOC2010+ "all-point" interpolation, OD API `metrics.compute_average_precision`);
mAP is the mean over classes that have ground truth.

Boxes are [ymin, xmin, ymax, xmax] in any one coordinate frame (IoU does not depend on scaling);
class ids are 1-based label-map ids.
"""
import logging

import numpy as np

from mtl_ssl.evaluation import common


def iou_matrix(boxes1, boxes2):
  """IoU between every box of boxes1 [N,4] and boxes2 [M,4] -> [N,M] (no +1 pixel convention)."""
  boxes1 = np.asarray(boxes1, np.float64).reshape(-1, 4)
  boxes2 = np.asarray(boxes2, np.float64).reshape(-1, 4)
  ymin = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
  xmin = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
  ymax = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
  xmax = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
  intersection = np.maximum(ymax - ymin, 0) * np.maximum(xmax - xmin, 0)
  area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
  area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
  union = area1[:, None] + area2[None, :] - intersection
  return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def average_precision(scores, is_true_positive, num_groundtruth):
  """All-point interpolated AP of one class; NaN when the class has no ground truth."""
  if num_groundtruth == 0:
    return float('nan')
  scores = np.asarray(scores, np.float64)
  is_true_positive = np.asarray(is_true_positive, bool)
  if scores.size == 0:
    return 0.0
  order = np.argsort(-scores, kind='stable')
  true_positives = np.cumsum(is_true_positive[order])
  false_positives = np.cumsum(~is_true_positive[order])
  precision = true_positives / (true_positives + false_positives)
  recall = true_positives / float(num_groundtruth)
  recall = np.concatenate([[0.0], recall, [1.0]])
  precision = np.concatenate([[0.0], precision, [0.0]])
  precision = np.maximum.accumulate(precision[::-1])[::-1]
  steps = np.where(recall[1:] != recall[:-1])[0] + 1
  return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def match_single_class(detected_boxes, detected_scores, groundtruth_boxes, groundtruth_difficult,
                       matching_iou_threshold=0.5):
  """TP/FP labels of one image's detections of one class.

  Returns (scores, is_true_positive) for the detections that are evaluated (those matched to a
  difficult box are dropped).
  """
  detected_scores = np.asarray(detected_scores, np.float64)
  num_detections = detected_scores.shape[0]
  if num_detections == 0:
    return np.zeros(0, np.float64), np.zeros(0, bool)
  order = np.argsort(-detected_scores, kind='stable')
  detected_boxes = np.asarray(detected_boxes, np.float64)[order]
  detected_scores = detected_scores[order]
  if len(groundtruth_boxes) == 0:
    return detected_scores, np.zeros(num_detections, bool)
  iou = iou_matrix(detected_boxes, groundtruth_boxes)
  best_gt = np.argmax(iou, axis=1)
  is_true_positive = np.zeros(num_detections, bool)
  is_ignored = np.zeros(num_detections, bool)
  gt_taken = np.zeros(len(groundtruth_boxes), bool)
  for i in range(num_detections):
    gt = best_gt[i]
    if iou[i, gt] < matching_iou_threshold:
      continue
    if groundtruth_difficult[gt]:
      is_ignored[i] = True
    elif not gt_taken[gt]:
      is_true_positive[i] = True
      gt_taken[gt] = True
  keep = ~is_ignored
  return detected_scores[keep], is_true_positive[keep]


def _valid_boxes(boxes):
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  return (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])


class PascalDetectionEvaluator:
  """Accumulates per-image results and reports OD API-named PASCAL metrics.

  categories: list of {'id': int (1-based), 'name': str}.
  """

  metric_prefix = 'PascalBoxes'

  def __init__(self, categories, matching_iou_threshold=0.5):
    if not categories:
      raise ValueError('PascalDetectionEvaluator needs a non-empty list of categories')
    self._categories = list(categories)
    self._num_classes = max(int(c['id']) for c in self._categories)
    self._iou_threshold = matching_iou_threshold
    self.clear()

  def clear(self):
    self._groundtruth = {}
    self._evaluated_images = set()
    self._num_groundtruth = np.zeros(self._num_classes + 1, np.int64)
    self._scores = [[] for _ in range(self._num_classes + 1)]
    self._true_positive = [[] for _ in range(self._num_classes + 1)]

  def _check_classes(self, classes, what, image_id):
    if classes.size and (classes.min() < 1 or classes.max() > self._num_classes):
      raise ValueError(f'{what} of image {image_id!r} has class ids {sorted(set(classes.tolist()))}'
                       f' outside 1..{self._num_classes} (ids are 1-based label-map ids)')

  def add_single_ground_truth_image_info(self, image_id, groundtruth_dict):
    """groundtruth_dict: groundtruth_boxes [N,4], groundtruth_classes [N] (1-based),
    optional groundtruth_difficult [N]."""
    if image_id in self._groundtruth:
      logging.warning('Ground truth of image %r was already added; ignoring the repeat.', image_id)
      return
    boxes = np.asarray(groundtruth_dict['groundtruth_boxes'], np.float64).reshape(-1, 4)
    classes = np.asarray(groundtruth_dict['groundtruth_classes']).astype(np.int64).reshape(-1)
    difficult = groundtruth_dict.get('groundtruth_difficult')
    difficult = (np.zeros(len(boxes), bool) if difficult is None or np.size(difficult) == 0
                 else np.asarray(difficult).astype(bool).reshape(-1))
    if not len(boxes) == len(classes) == len(difficult):
      raise ValueError(f'ground truth of image {image_id!r}: {len(boxes)} boxes, {len(classes)} '
                       f'classes and {len(difficult)} difficult flags differ in length')
    self._check_classes(classes, 'ground truth', image_id)
    self._groundtruth[image_id] = (boxes, classes, difficult)
    np.add.at(self._num_groundtruth, classes[~difficult], 1)

  def add_single_detected_image_info(self, image_id, detections_dict):
    """detections_dict: detection_boxes [K,4], detection_scores [K], detection_classes [K]
    (1-based)."""
    if image_id not in self._groundtruth:
      raise ValueError(f'detections of image {image_id!r} added before its ground truth')
    if image_id in self._evaluated_images:
      logging.warning('Detections of image %r were already added; ignoring the repeat.', image_id)
      return
    self._evaluated_images.add(image_id)
    boxes, scores, classes = common.detection_arrays(image_id, detections_dict)
    self._check_classes(classes, 'detections', image_id)
    valid = _valid_boxes(boxes)
    boxes, scores, classes = boxes[valid], scores[valid], classes[valid]
    gt_boxes, gt_classes, gt_difficult = self._groundtruth[image_id]
    for class_id in np.unique(classes):
      in_class = classes == class_id
      gt_in_class = gt_classes == class_id
      kept_scores, tp = match_single_class(boxes[in_class], scores[in_class], gt_boxes[gt_in_class],
                                           gt_difficult[gt_in_class], self._iou_threshold)
      self._scores[class_id].append(kept_scores)
      self._true_positive[class_id].append(tp)

  def per_class_average_precision(self):
    """AP per class id 1..num_classes (index 0 unused, NaN)."""
    ap = np.full(self._num_classes + 1, np.nan)
    for class_id in range(1, self._num_classes + 1):
      scores = np.concatenate(self._scores[class_id]) if self._scores[class_id] else np.zeros(0)
      tp = (np.concatenate(self._true_positive[class_id]) if self._true_positive[class_id]
            else np.zeros(0, bool))
      ap[class_id] = average_precision(scores, tp, self._num_groundtruth[class_id])
    return ap

  def evaluate(self):
    """Returns {'PascalBoxes_Precision/mAP@0.5IOU': float,
    'PascalBoxes_PerformanceByCategory/AP@0.5IOU/<name>': float, ...}."""
    ap = self.per_class_average_precision()
    iou_name = f'{self._iou_threshold:g}IOU'
    valid = ap[1:][~np.isnan(ap[1:])]
    mean_ap = float(np.mean(valid)) if valid.size else float('nan')
    metrics = {f'{self.metric_prefix}_Precision/mAP@{iou_name}': mean_ap}
    for category in self._categories:
      name = category['name']
      metrics[f'{self.metric_prefix}_PerformanceByCategory/AP@{iou_name}/{name}'] = float(
          ap[int(category['id'])])
    return metrics
