"""COCO detection metrics with pycocotools' COCOeval, named as the OD API's CocoDetectionEvaluator.

Boxes are [ymin, xmin, ymax, xmax] in ABSOLUTE pixels of the original image (the small / medium /
large ranges of COCO are pixel areas); class ids are 1-based label-map ids. Crowd ground truth
(groundtruth_is_crowd) is an ignore region: detections matched to it are neither TP nor FP.
"""
import contextlib
import io
import logging

import numpy as np
from pycocotools import coco as coco_api
from pycocotools import cocoeval

from mtl_ssl.evaluation import common

# (OD API metric name, index into COCOeval.stats)
SUMMARY_METRICS = (
    ('Precision/mAP', 0),
    ('Precision/mAP@.50IOU', 1),
    ('Precision/mAP@.75IOU', 2),
    ('Precision/mAP (small)', 3),
    ('Precision/mAP (medium)', 4),
    ('Precision/mAP (large)', 5),
    ('Recall/AR@1', 6),
    ('Recall/AR@10', 7),
    ('Recall/AR@100', 8),
    ('Recall/AR@100 (small)', 9),
    ('Recall/AR@100 (medium)', 10),
    ('Recall/AR@100 (large)', 11),
)


def _to_xywh(boxes):
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  return np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]],
                  axis=1)


def _quiet_coco(dataset):
  """A pycocotools COCO object from an in-memory dataset dict, without its prints."""
  coco = coco_api.COCO()
  coco.dataset = dataset
  with contextlib.redirect_stdout(io.StringIO()):
    coco.createIndex()
  return coco


def _mean_valid(values):
  values = values[values > -1]
  return float(np.mean(values)) if values.size else -1.0


class CocoDetectionEvaluator:
  """Accumulates ground truth and detections; evaluate() runs COCOeval (bbox).

  categories: list of {'id': int (1-based), 'name': str}.
  """

  metric_prefix = 'DetectionBoxes'

  def __init__(self, categories, include_metrics_per_category=False,
               all_metrics_per_category=False):
    if not categories:
      raise ValueError('CocoDetectionEvaluator needs a non-empty list of categories')
    self._categories = [{'id': int(c['id']), 'name': str(c['name'])} for c in categories]
    self._category_ids = {c['id'] for c in self._categories}
    self._per_category = include_metrics_per_category or all_metrics_per_category
    self._all_per_category = all_metrics_per_category
    self.clear()

  def clear(self):
    self._image_ids = {}
    self._groundtruth = []
    self._detections = []
    self._images_with_detections = set()

  def add_single_ground_truth_image_info(self, image_id, groundtruth_dict):
    """groundtruth_dict: groundtruth_boxes [N,4] absolute, groundtruth_classes [N] (1-based),
    optional groundtruth_is_crowd [N], groundtruth_area [N]."""
    if image_id in self._image_ids:
      logging.warning('Ground truth of image %r was already added; ignoring the repeat.', image_id)
      return
    boxes = _to_xywh(groundtruth_dict['groundtruth_boxes'])
    classes = np.asarray(groundtruth_dict['groundtruth_classes']).astype(np.int64).reshape(-1)
    is_crowd = groundtruth_dict.get('groundtruth_is_crowd')
    is_crowd = (np.zeros(len(boxes), np.int64) if is_crowd is None or np.size(is_crowd) == 0
                else np.asarray(is_crowd).astype(np.int64).reshape(-1))
    area = groundtruth_dict.get('groundtruth_area')
    area = (boxes[:, 2] * boxes[:, 3] if area is None or np.size(area) == 0
            else np.asarray(area, np.float64).reshape(-1))
    if not len(boxes) == len(classes) == len(is_crowd) == len(area):
      raise ValueError(f'ground truth of image {image_id!r}: boxes, classes, is_crowd and area '
                       f'differ in length ({len(boxes)}, {len(classes)}, {len(is_crowd)}, '
                       f'{len(area)})')
    common.check_classes(classes, self._category_ids, 'ground truth', image_id)
    coco_id = len(self._image_ids) + 1
    self._image_ids[image_id] = coco_id
    for box, class_id, crowd, box_area in zip(boxes, classes, is_crowd, area):
      self._groundtruth.append({
          'id': len(self._groundtruth) + 1, 'image_id': coco_id, 'category_id': int(class_id),
          'bbox': [float(v) for v in box], 'area': float(box_area), 'iscrowd': int(crowd)})

  def add_single_detected_image_info(self, image_id, detections_dict):
    """detections_dict: detection_boxes [K,4] absolute, detection_scores [K],
    detection_classes [K] (1-based)."""
    if image_id not in self._image_ids:
      raise ValueError(f'detections of image {image_id!r} added before its ground truth')
    if image_id in self._images_with_detections:
      logging.warning('Detections of image %r were already added; ignoring the repeat.', image_id)
      return
    self._images_with_detections.add(image_id)
    boxes, scores, classes = common.detection_arrays(image_id, detections_dict)
    common.check_classes(classes, self._category_ids, 'detections', image_id)
    boxes = _to_xywh(boxes)
    coco_id = self._image_ids[image_id]
    for box, score, class_id in zip(boxes, scores, classes):
      self._detections.append({
          'id': len(self._detections) + 1, 'image_id': coco_id, 'category_id': int(class_id),
          'bbox': [float(v) for v in box], 'score': float(score),
          'area': float(box[2] * box[3]), 'iscrowd': 0})

  def run_cocoeval(self):
    """The finished COCOeval object (evaluate + accumulate + summarize done, prints captured)."""
    images = [{'id': i} for i in self._image_ids.values()]
    groundtruth = _quiet_coco({'images': images, 'categories': self._categories,
                               'annotations': self._groundtruth})
    detections = _quiet_coco({'images': images, 'categories': self._categories,
                              'annotations': self._detections})
    evaluation = cocoeval.COCOeval(groundtruth, detections, iouType='bbox')
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
      evaluation.evaluate()
      evaluation.accumulate()
      evaluation.summarize()
    logging.info('COCO evaluation:\n%s', summary.getvalue())
    return evaluation

  def evaluate(self):
    """Returns {'DetectionBoxes_Precision/mAP': ..., 'DetectionBoxes_Recall/AR@100': ..., ...}
    (-1 where COCOeval has no ground truth for a range, as pycocotools)."""
    if not self._image_ids:
      raise ValueError('CocoDetectionEvaluator.evaluate called with no images added')
    evaluation = self.run_cocoeval()
    metrics = {f'{self.metric_prefix}_{name}': float(evaluation.stats[index])
               for name, index in SUMMARY_METRICS}
    if self._per_category:
      metrics.update(self._per_category_metrics(evaluation))
    return metrics

  def _per_category_metrics(self, evaluation):
    precision = evaluation.eval['precision']  # [T, R, K, A, M]
    recall = evaluation.eval['recall']  # [T, K, A, M]
    params = evaluation.params
    iou_50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
    iou_75 = int(np.argmin(np.abs(params.iouThrs - 0.75)))
    metrics = {}
    prefix = f'{self.metric_prefix}_PerformanceByCategory'
    for k, category_id in enumerate(params.catIds):
      name = next(c['name'] for c in self._categories if c['id'] == category_id)
      metrics[f'{prefix}/mAP/{name}'] = _mean_valid(precision[:, :, k, 0, -1])
      if self._all_per_category:
        metrics[f'{prefix}/mAP@.50IOU/{name}'] = _mean_valid(precision[iou_50, :, k, 0, -1])
        metrics[f'{prefix}/mAP@.75IOU/{name}'] = _mean_valid(precision[iou_75, :, k, 0, -1])
        for a, area_name in enumerate(params.areaRngLbl[1:], start=1):
          metrics[f'{prefix}/mAP ({area_name})/{name}'] = _mean_valid(
              precision[:, :, k, a, -1])
        for m, max_dets in enumerate(params.maxDets):
          metrics[f'{prefix}/AR@{max_dets}/{name}'] = _mean_valid(recall[:, k, 0, m])
    return metrics
