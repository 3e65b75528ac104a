"""COCO evaluator: hand-worked cases and pycocotools run directly by the test on the same data."""
import contextlib
import io

import numpy as np
import pytest
from pycocotools import coco as coco_api
from pycocotools import cocoeval

from mtl_ssl.evaluation import coco

CATEGORIES = [{'id': 1, 'name': 'cat'}, {'id': 2, 'name': 'dog'}]


def _add(evaluator, image_id, gt_boxes, gt_classes, det_boxes, det_scores, det_classes,
         is_crowd=None):
  groundtruth = {'groundtruth_boxes': np.array(gt_boxes, np.float32).reshape(-1, 4),
                 'groundtruth_classes': np.array(gt_classes)}
  if is_crowd is not None:
    groundtruth['groundtruth_is_crowd'] = np.array(is_crowd)
  evaluator.add_single_ground_truth_image_info(image_id, groundtruth)
  evaluator.add_single_detected_image_info(image_id, {
      'detection_boxes': np.array(det_boxes, np.float32).reshape(-1, 4),
      'detection_scores': np.array(det_scores, np.float32),
      'detection_classes': np.array(det_classes)})


def test_perfect_detections_score_one():
  evaluator = coco.CocoDetectionEvaluator(CATEGORIES, include_metrics_per_category=True)
  _add(evaluator, 'a', [[10, 10, 50, 60], [100, 100, 300, 320]], [1, 2],
       [[10, 10, 50, 60], [100, 100, 300, 320]], [0.9, 0.8], [1, 2])
  metrics = evaluator.evaluate()
  assert metrics['DetectionBoxes_Precision/mAP'] == pytest.approx(1.0)
  assert metrics['DetectionBoxes_Recall/AR@100'] == pytest.approx(1.0)
  assert metrics['DetectionBoxes_Precision/mAP (medium)'] == pytest.approx(1.0)  # 40x50 px
  assert metrics['DetectionBoxes_Precision/mAP (large)'] == pytest.approx(1.0)  # 200x220 px
  assert metrics['DetectionBoxes_Precision/mAP (small)'] == -1.0  # no small objects
  assert metrics['DetectionBoxes_PerformanceByCategory/mAP/dog'] == pytest.approx(1.0)


def test_iou_062_counts_for_three_of_ten_thresholds():
  evaluator = coco.CocoDetectionEvaluator(CATEGORIES)
  # ground truth 100x100; detection 100x62 inside it: IoU 0.62 -> TP at 0.50, 0.55, 0.60 only.
  _add(evaluator, 'a', [[0, 0, 100, 100]], [1], [[0, 0, 62, 100]], [0.9], [1])
  metrics = evaluator.evaluate()
  assert metrics['DetectionBoxes_Precision/mAP@.50IOU'] == pytest.approx(1.0)
  assert metrics['DetectionBoxes_Precision/mAP@.75IOU'] == pytest.approx(0.0)
  assert metrics['DetectionBoxes_Precision/mAP'] == pytest.approx(0.3)
  assert metrics['DetectionBoxes_Recall/AR@1'] == pytest.approx(0.3)


def test_crowd_region_is_ignored():
  with_crowd = coco.CocoDetectionEvaluator(CATEGORIES)
  # a normal cat found at 0.5, a crowd of cats detected at 0.9: without the crowd flag the 0.9
  # detection would be a false positive ranked first (AP@.5 0.5); as a crowd it is ignored.
  _add(with_crowd, 'a', [[0, 0, 50, 50], [100, 100, 200, 200]], [1, 1],
       [[0, 0, 50, 50], [100, 100, 200, 200]], [0.5, 0.9], [1, 1], is_crowd=[0, 1])
  assert with_crowd.evaluate()['DetectionBoxes_Precision/mAP@.50IOU'] == pytest.approx(1.0)
  without = coco.CocoDetectionEvaluator(CATEGORIES)
  _add(without, 'a', [[0, 0, 50, 50]], [1], [[0, 0, 50, 50], [100, 100, 200, 200]], [0.5, 0.9],
       [1, 1])
  # ranked FP, TP over one cat -> precision 1/2 at recall 1 -> AP@.5 = 0.5 (101-point sampled).
  assert without.evaluate()['DetectionBoxes_Precision/mAP@.50IOU'] == pytest.approx(0.5)


def _pycocotools_stats(images):
  """COCO stats computed straight from pycocotools with json-style dicts and loadRes."""
  gt = {'images': [], 'categories': CATEGORIES, 'annotations': []}
  results = []
  for index, image in enumerate(images, start=1):
    gt['images'].append({'id': index})
    for box, cls in zip(image['gt_boxes'], image['gt_classes']):
      ymin, xmin, ymax, xmax = (float(v) for v in box)
      gt['annotations'].append({'id': len(gt['annotations']) + 1, 'image_id': index,
                                'category_id': int(cls), 'iscrowd': 0,
                                'bbox': [xmin, ymin, xmax - xmin, ymax - ymin],
                                'area': (xmax - xmin) * (ymax - ymin)})
    for box, score, cls in zip(image['det_boxes'], image['det_scores'], image['det_classes']):
      ymin, xmin, ymax, xmax = (float(v) for v in box)
      results.append({'image_id': index, 'category_id': int(cls), 'score': float(score),
                      'bbox': [xmin, ymin, xmax - xmin, ymax - ymin]})
  with contextlib.redirect_stdout(io.StringIO()):
    ground_truth = coco_api.COCO()
    ground_truth.dataset = gt
    ground_truth.createIndex()
    detections = ground_truth.loadRes(results)
    evaluation = cocoeval.COCOeval(ground_truth, detections, 'bbox')
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
  return evaluation.stats


@pytest.mark.parametrize('seed', [0, 1])
def test_matches_pycocotools_on_random_data(seed):
  rng = np.random.default_rng(seed)
  images = []
  evaluator = coco.CocoDetectionEvaluator(CATEGORIES)
  for index in range(10):
    num_gt = int(rng.integers(1, 6))
    corner = rng.uniform(0, 300, size=(num_gt, 2))
    size = rng.uniform(8, 200, size=(num_gt, 2))  # small, medium and large objects
    gt_boxes = np.concatenate([corner, corner + size], axis=1).astype(np.float32)
    gt_classes = rng.integers(1, 3, size=num_gt)
    det_boxes = np.concatenate([gt_boxes + rng.normal(0, 6, size=gt_boxes.shape),
                                np.concatenate([corner[:2] + 40, corner[:2] + 90], axis=1)])
    det_boxes = det_boxes.astype(np.float32)
    det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
    det_classes = np.concatenate([gt_classes, rng.integers(1, 3, size=len(det_boxes) - num_gt)])
    det_scores = rng.random(len(det_boxes)).astype(np.float32)
    image = dict(gt_boxes=gt_boxes, gt_classes=gt_classes, det_boxes=det_boxes,
                 det_scores=det_scores, det_classes=det_classes)
    images.append(image)
    _add(evaluator, f'img{index}', gt_boxes, gt_classes, det_boxes, det_scores, det_classes)
  metrics = evaluator.evaluate()
  expected = _pycocotools_stats(images)
  for name, index in coco.SUMMARY_METRICS:
    assert metrics[f'DetectionBoxes_{name}'] == pytest.approx(expected[index], abs=1e-9), name
  assert 0.05 < metrics['DetectionBoxes_Precision/mAP'] < 0.95


def test_images_without_detections_count_as_misses():
  evaluator = coco.CocoDetectionEvaluator(CATEGORIES)
  _add(evaluator, 'a', [[0, 0, 100, 100]], [1], [[0, 0, 100, 100]], [0.9], [1])
  _add(evaluator, 'b', [[0, 0, 100, 100]], [1], np.zeros((0, 4)), [], [])
  metrics = evaluator.evaluate()
  assert metrics['DetectionBoxes_Recall/AR@100'] == pytest.approx(0.5)
  assert metrics['DetectionBoxes_Precision/mAP'] == pytest.approx(0.5, abs=0.01)


def test_unknown_class_is_named():
  evaluator = coco.CocoDetectionEvaluator(CATEGORIES)
  with pytest.raises(ValueError, match=r"image 'x'.*\[7\]"):
    evaluator.add_single_ground_truth_image_info(
        'x', {'groundtruth_boxes': np.zeros((1, 4)), 'groundtruth_classes': np.array([7])})
