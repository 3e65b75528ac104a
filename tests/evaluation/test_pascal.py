"""PASCAL evaluator: a hand-worked case and a VOCdevkit-style numpy reference on random data."""
import math

import numpy as np
import pytest

from mtl_ssl.evaluation import builder
from mtl_ssl.evaluation import pascal

CATEGORIES = [{'id': 1, 'name': 'cat'}, {'id': 2, 'name': 'dog'}, {'id': 3, 'name': 'cow'}]


def _add(evaluator, image_id, gt_boxes, gt_classes, difficult, det_boxes, det_scores, det_classes):
  evaluator.add_single_ground_truth_image_info(image_id, {
      'groundtruth_boxes': np.array(gt_boxes, np.float32).reshape(-1, 4),
      'groundtruth_classes': np.array(gt_classes), 'groundtruth_difficult': np.array(difficult)})
  evaluator.add_single_detected_image_info(image_id, {
      'detection_boxes': np.array(det_boxes, np.float32).reshape(-1, 4),
      'detection_scores': np.array(det_scores, np.float32),
      'detection_classes': np.array(det_classes)})


def test_hand_worked_case():
  evaluator = pascal.PascalDetectionEvaluator(CATEGORIES)
  # Image A: a cat, a difficult cat; detections: hit (0.9), duplicate (0.8 -> FP), difficult
  # (0.7 -> ignored), and a cow where there is no cow (class 3 has no ground truth at all).
  _add(evaluator, 'a', [[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0, 1],
       [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5]],
       [0.9, 0.8, 0.7, 0.95], [1, 1, 1, 3])
  # Image B: two cats and a dog; detections: IoU 0.9 hit (0.6), a miss (0.5); the dog is missed.
  _add(evaluator, 'b', [[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10]], [1, 1, 2], [0, 0, 0],
       [[0, 0, 10, 9], [100, 100, 110, 110]], [0.6, 0.5], [1, 1])
  metrics = evaluator.evaluate()
  # cat: ranked TP, FP, TP, FP over 3 non-difficult cats: precision envelope 1 on recall 0..1/3,
  # 2/3 on recall 1/3..2/3 -> AP = 1/3 + 2/9 = 5/9.
  assert metrics['PascalBoxes_PerformanceByCategory/AP@0.5IOU/cat'] == pytest.approx(5 / 9)
  assert metrics['PascalBoxes_PerformanceByCategory/AP@0.5IOU/dog'] == 0.0
  assert math.isnan(metrics['PascalBoxes_PerformanceByCategory/AP@0.5IOU/cow'])
  assert metrics['PascalBoxes_Precision/mAP@0.5IOU'] == pytest.approx((5 / 9 + 0.0) / 2)


def test_detection_below_threshold_is_false_positive_and_order_matters():
  evaluator = pascal.PascalDetectionEvaluator(CATEGORIES[:1])
  # IoU of [0,0,10,10] with [0,0,10,4.9] is 0.49 < 0.5: a false positive ranked first.
  _add(evaluator, 'a', [[0, 0, 10, 10]], [1], [0], [[0, 0, 10, 4.9], [0, 0, 10, 10]], [0.9, 0.1],
       [1, 1])
  # ranked FP, TP: precision 1/2 at recall 1 -> AP 0.5.
  assert evaluator.evaluate()['PascalBoxes_Precision/mAP@0.5IOU'] == pytest.approx(0.5)


def _reference_voc_ap(images, class_id, iou_threshold=0.5):
  """VOCdevkit-style: all detections of the class over all images, sorted once globally."""
  detections = []
  num_gt = 0
  taken = {}
  for image_id, image in images.items():
    gt_mask = image['gt_classes'] == class_id
    num_gt += int(np.sum(gt_mask & ~image['difficult']))
    taken[image_id] = np.zeros(int(gt_mask.sum()), bool)
    for box, score, cls in zip(image['det_boxes'], image['det_scores'], image['det_classes']):
      if cls == class_id:
        detections.append((score, image_id, box))
  if num_gt == 0:
    return float('nan')
  detections.sort(key=lambda d: -d[0])
  tp, fp = [], []
  for _, image_id, box in detections:
    image = images[image_id]
    gt_mask = image['gt_classes'] == class_id
    gt = image['gt_boxes'][gt_mask]
    difficult = image['difficult'][gt_mask]
    best, best_j = -1.0, -1
    for j, g in enumerate(gt):
      iw = min(box[3], g[3]) - max(box[1], g[1])
      ih = min(box[2], g[2]) - max(box[0], g[0])
      inter = max(iw, 0) * max(ih, 0)
      union = (box[2] - box[0]) * (box[3] - box[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
      if inter / union > best:
        best, best_j = inter / union, j
    if best >= iou_threshold:
      if difficult[best_j]:
        continue
      if not taken[image_id][best_j]:
        taken[image_id][best_j] = True
        tp.append(1.0)
        fp.append(0.0)
      else:
        tp.append(0.0)
        fp.append(1.0)
    else:
      tp.append(0.0)
      fp.append(1.0)
  tp, fp = np.cumsum(tp), np.cumsum(fp)
  recall = list(tp / num_gt)
  precision = list(tp / np.maximum(tp + fp, 1e-12))
  mrec = [0.0] + recall + [1.0]
  mpre = [0.0] + precision + [0.0]
  for i in range(len(mpre) - 2, -1, -1):
    mpre[i] = max(mpre[i], mpre[i + 1])
  return sum((mrec[i] - mrec[i - 1]) * mpre[i]
             for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_matches_voc_reference_on_random_data(seed):
  rng = np.random.default_rng(seed)
  images = {}
  evaluator = pascal.PascalDetectionEvaluator(CATEGORIES)
  for index in range(12):
    num_gt = rng.integers(0, 6)
    gt_boxes = np.sort(rng.integers(0, 40, size=(num_gt, 2, 2)), axis=1)
    gt_boxes = gt_boxes.transpose(0, 2, 1).reshape(-1, 4)[:, [0, 2, 1, 3]].astype(np.float64)
    gt_boxes[:, 2:] += 4  # every box non-empty
    gt_classes = rng.integers(1, 4, size=num_gt)
    difficult = rng.random(num_gt) < 0.2
    # detections: jittered copies of the ground truth plus random boxes
    jitter = gt_boxes + rng.normal(0, 2, size=gt_boxes.shape)
    extra = np.sort(rng.uniform(0, 44, size=(rng.integers(0, 5), 2, 2)), axis=1)
    extra = extra.transpose(0, 2, 1).reshape(-1, 4)[:, [0, 2, 1, 3]]
    det_boxes = np.concatenate([jitter, jitter[: num_gt // 2], extra])
    det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
    det_classes = np.concatenate([gt_classes, gt_classes[: num_gt // 2],
                                  rng.integers(1, 4, size=len(extra))])
    det_scores = rng.random(len(det_boxes))
    image_id = f'img{index}'
    images[image_id] = dict(gt_boxes=gt_boxes, gt_classes=gt_classes, difficult=difficult,
                            det_boxes=det_boxes, det_scores=det_scores, det_classes=det_classes)
    _add(evaluator, image_id, gt_boxes, gt_classes, difficult, det_boxes, det_scores, det_classes)
  metrics = evaluator.evaluate()
  reference = [_reference_voc_ap(images, c['id']) for c in CATEGORIES]
  for category, expected in zip(CATEGORIES, reference):
    got = metrics[f'PascalBoxes_PerformanceByCategory/AP@0.5IOU/{category["name"]}']
    if math.isnan(expected):
      assert math.isnan(got)
    else:
      assert got == pytest.approx(expected, abs=1e-9)
  assert metrics['PascalBoxes_Precision/mAP@0.5IOU'] == pytest.approx(np.nanmean(reference))
  assert 0.0 < metrics['PascalBoxes_Precision/mAP@0.5IOU'] < 1.0


def test_bad_input_is_named():
  evaluator = pascal.PascalDetectionEvaluator(CATEGORIES)
  with pytest.raises(ValueError, match="image 'x'.*outside 1..3"):
    evaluator.add_single_ground_truth_image_info(
        'x', {'groundtruth_boxes': np.zeros((1, 4)), 'groundtruth_classes': np.array([0])})
  with pytest.raises(ValueError, match='before its ground truth'):
    evaluator.add_single_detected_image_info('y', {
        'detection_boxes': np.zeros((0, 4)), 'detection_scores': np.zeros(0),
        'detection_classes': np.zeros(0)})


def test_builder_names_and_errors():
  class EvalConfig:
    metrics_set = ['pascal_voc_detection_metrics', 'coco_detection_metrics']
    include_metrics_per_category = True
  evaluators = builder.build_evaluators(EvalConfig(), CATEGORIES)
  assert [type(e).__name__ for e in evaluators] == ['PascalDetectionEvaluator',
                                                    'CocoDetectionEvaluator']
  EvalConfig.metrics_set = ['oid_challenge_detection_metrics']
  with pytest.raises(ValueError, match='metrics_set'):
    builder.build_evaluators(EvalConfig(), CATEGORIES)
