"""TIDE error breakdown (Bolya et al., "TIDE: A General Toolbox for Identifying Object Detection
Errors", ECCV 2020), with the numbers of the reference code (tidecv 1.0.1, box mode).

Why our own code: tidecv needs opencv-python (clashes with the headless OpenCV of this stack) and
the numpy-only fork tidecv-light reads boxes as [x1, y1, x2, y2] while documenting [x, y, w, h]
and fails on crowd regions. tests/evaluation/test_tide.py checks this file against numbers that
tidecv 1.0.1 itself produced (tests/evaluation/tide_reference.json, made by
tests/evaluation/make_tide_reference.py).

Definitions (foreground IoU t_f = 0.5, background IoU t_b = 0.1; per image, detections sorted by
score, at most max_detections):
- matching: each detection takes the unmatched same-class ground truth of highest IoU if that
  IoU >= t_f (a true positive);
- every other detection gets the first error that fits, in this order:
  Loc   t_b <= IoU with the best same-class ground truth <= t_f;
  Cls   IoU >= t_f with a ground truth of another class;
  Dupe  IoU >= t_f with a same-class ground truth already matched by a higher-scored detection;
  Bkg   IoU <= t_b with every ground truth;
  Both  anything else (wrong class and badly localized);
- Miss  a ground truth that no detection matched and that no Loc / Cls error could recover.
- dAP_X = AP after fixing every error of type X, minus the original AP (clipped at 0, as tidecv).
  Fixing Loc / Cls turns the highest-scored such detection of each unmatched ground truth into a
  true positive (of the ground truth's class for Cls) and drops the others; fixing Dupe, Bkg and
  Both drops those detections; fixing Miss removes the missed ground truth from the count.
  Special errors: dAP_FalsePos (every false positive scored 0) and dAP_FalseNeg (every missed
  ground truth removed), not clipped.
- AP: COCO-style 101-point interpolated AP at IoU t_f per class, averaged over the classes that
  have ground truth or detections (a class with detections and no ground truth counts as AP 0,
  as in tidecv).

Ignore regions: crowd ground truth (groundtruth_is_crowd) and, for PASCAL data, difficult boxes
(groundtruth_difficult) are not counted; an unmatched detection of the same class covered by one
(intersection / detection area > t_f) is left out of the AP, as tidecv does with COCO crowds.
Values are fractions (tidecv prints percentage points: 100x these).
"""
import collections
import logging

import numpy as np

from mtl_ssl.evaluation import common
from mtl_ssl.evaluation.pascal import iou_matrix

ERROR_TYPES = ('Cls', 'Loc', 'Both', 'Dupe', 'Bkg', 'Miss')  # tidecv's order
SPECIAL_ERROR_TYPES = ('FalsePos', 'FalseNeg')
_RECALL_POINTS = np.array([x / 100 for x in range(101)])


def average_precision_101(scores, is_true_positive, num_groundtruth):
  """COCO-style AP over 101 recall points (tidecv APDataObject.get_ap, as a fraction).

  Ties in score keep the given order (tidecv sorts its insertion-ordered points stably).
  """
  if num_groundtruth == 0:
    return 0.0
  scores = np.asarray(scores, np.float64)
  if scores.size == 0:
    return 0.0
  correct = np.asarray(is_true_positive, bool)[np.argsort(-scores, kind='stable')]
  true_positives = np.cumsum(correct)
  precision = true_positives / np.arange(1, correct.size + 1)
  recall = true_positives / float(num_groundtruth)
  precision = np.maximum.accumulate(precision[::-1])[::-1]
  index = np.searchsorted(recall, _RECALL_POINTS, side='left')
  values = np.where(index < precision.size, precision[np.minimum(index, precision.size - 1)], 0.0)
  return float(np.sum(values) / values.size)


class _APData:
  """Per class: insertion-ordered {detection id: (score, is_true_positive)} and the ground-truth
  count (tidecv's ClassedAPDataObject)."""

  def __init__(self):
    self.points = collections.defaultdict(dict)
    self.num_groundtruth = collections.defaultdict(int)

  def classes(self):
    return list(dict.fromkeys(list(self.points) + list(self.num_groundtruth)))

  def mean_ap(self):
    aps = []
    for class_id in self.classes():
      points = self.points.get(class_id, {})
      count = self.num_groundtruth.get(class_id, 0)
      if points or count != 0:
        values = list(points.values())
        aps.append(average_precision_101([v[0] for v in values], [v[1] for v in values], count))
    return float(np.mean(aps)) if aps else 0.0


class _Error:
  """One error. `original`: (class, (score, False)) of its detection, None when the detection
  was left out (ignore region) or for Miss; `target`: the ground truth a Loc / Cls fix would
  recover (None when that ground truth was matched already)."""

  __slots__ = ('kind', 'id', 'score', 'fix_class', 'original', 'target', 'groundtruth_class')

  def __init__(self, kind, detection=None, target=None, fix_class=None, groundtruth_class=None):
    self.kind = kind
    self.target = target
    self.fix_class = fix_class
    self.groundtruth_class = groundtruth_class
    if detection is not None:
      self.id, self.score = detection['id'], detection['score']
      self.original = (None if detection['used'] is None
                       else (detection['class'], (detection['score'], False)))
    else:
      self.id, self.score, self.original = None, None, None

  def fixed(self, best_of_target):
    """(class, data point) after the fix; data point None drops the detection, -1 removes one
    ground truth from the count (Miss)."""
    if self.kind == 'Miss':
      return self.groundtruth_class, -1
    if self.kind in ('Loc', 'Cls') and self.target is not None:
      if best_of_target[self.target] == self.id:
        return self.fix_class, (self.score, True)
    return None, None


class TideDetectionEvaluator:
  """Accumulates per-image results; evaluate() returns the TIDE/* error breakdown.

  categories: list of {'id': int (1-based), 'name': str}. Boxes [ymin, xmin, ymax, xmax] in one
  frame per image (IoU does not depend on it).
  """

  metric_prefix = 'TIDE'

  def __init__(self, categories, foreground_iou=0.5, background_iou=0.1, max_detections=100):
    if not categories:
      raise ValueError('TideDetectionEvaluator needs a non-empty list of categories')
    if not 0.0 <= background_iou <= foreground_iou <= 1.0:
      raise ValueError(f'need 0 <= background_iou ({background_iou}) <= foreground_iou '
                       f'({foreground_iou}) <= 1')
    self._category_ids = {int(c['id']) for c in categories}
    self._foreground_iou = float(foreground_iou)
    self._background_iou = float(background_iou)
    self._max_detections = int(max_detections)
    self.clear()

  def clear(self):
    self._groundtruth = {}  # image id -> (boxes, classes, ignore)
    self._detections = {}  # image id -> (boxes, scores, classes)

  def add_single_ground_truth_image_info(self, image_id, groundtruth_dict):
    """groundtruth_dict: groundtruth_boxes [N,4], groundtruth_classes [N] (1-based), optional
    groundtruth_is_crowd [N] and groundtruth_difficult [N] (both become ignore regions)."""
    if image_id in self._groundtruth:
      logging.warning('Ground truth of image %r was already added; ignoring the repeat.', image_id)
      return
    boxes = np.asarray(groundtruth_dict['groundtruth_boxes'], np.float64).reshape(-1, 4)
    classes = np.asarray(groundtruth_dict['groundtruth_classes']).astype(np.int64).reshape(-1)
    ignore = np.zeros(len(boxes), bool)
    for key in ('groundtruth_is_crowd', 'groundtruth_difficult'):
      flags = groundtruth_dict.get(key)
      if flags is not None and np.size(flags):
        flags = np.asarray(flags).astype(bool).reshape(-1)
        if len(flags) != len(boxes):
          raise ValueError(f'ground truth of image {image_id!r}: {len(boxes)} boxes but '
                           f'{len(flags)} {key} flags')
        ignore |= flags
    if len(classes) != len(boxes):
      raise ValueError(f'ground truth of image {image_id!r}: {len(boxes)} boxes and '
                       f'{len(classes)} classes differ in length')
    common.check_classes(classes, self._category_ids, 'ground truth', image_id)
    self._groundtruth[image_id] = (boxes, classes, ignore)

  def add_single_detected_image_info(self, image_id, detections_dict):
    """detections_dict: detection_boxes [K,4], detection_scores [K], detection_classes [K]
    (1-based)."""
    if image_id not in self._groundtruth:
      raise ValueError(f'detections of image {image_id!r} added before its ground truth')
    if image_id in self._detections:
      logging.warning('Detections of image %r were already added; ignoring the repeat.', image_id)
      return
    boxes, scores, classes = common.detection_arrays(image_id, detections_dict)
    common.check_classes(classes, self._category_ids, 'detections', image_id)
    self._detections[image_id] = (boxes, scores, classes)

  # ------------------------------------------------------------------------------------------
  def _run(self):
    """Matches every image; returns (AP data, errors, false negatives per class, best detection
    id per recoverable ground truth)."""
    ap_data, errors = _APData(), []
    false_negatives = collections.defaultdict(int)
    best = {}  # ground-truth key -> (score, detection id) of its best Loc / Cls error
    next_id = 0
    for image_index, (image_id, (gt_boxes, gt_classes, ignore)) in enumerate(
        self._groundtruth.items()):
      empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
      det_boxes, det_scores, det_classes = self._detections.get(image_id, empty)
      ids = np.arange(next_id, next_id + len(det_scores))
      next_id += len(det_scores)
      next_errors = self._eval_image(image_index, gt_boxes, gt_classes, ignore, det_boxes,
                                     det_scores, det_classes, ids, ap_data, false_negatives, best)
      errors.extend(next_errors)
    best_ids = {key: detection_id for key, (_, detection_id) in best.items()}
    return ap_data, errors, false_negatives, best_ids

  def _eval_image(self, image_index, gt_boxes, gt_classes, ignore, det_boxes, det_scores,
                  det_classes, ids, ap_data, false_negatives, best):
    errors = []
    valid = np.flatnonzero(~ignore)
    for g in valid:
      ap_data.num_groundtruth[int(gt_classes[g])] += 1
    if len(det_scores) == 0:
      for g in valid:
        false_negatives[int(gt_classes[g])] += 1
        errors.append(_Error('Miss', groundtruth_class=int(gt_classes[g])))
      return errors
    order = np.argsort(-det_scores, kind='stable')[:self._max_detections]
    boxes, scores, classes, ids = (det_boxes[order], det_scores[order], det_classes[order],
                                   ids[order])
    gt_b, gt_c = gt_boxes[valid], gt_classes[valid]
    num_det, num_gt = len(scores), len(gt_c)
    iou = iou_matrix(boxes, gt_b) if num_gt else np.zeros((num_det, 0))
    same_class = classes[:, None] == gt_c[None, :]
    class_iou = iou * same_class
    used = [False] * num_det  # True (matched) / False / None (left out: ignore region)
    gt_used = np.zeros(num_gt, bool)
    buffer = class_iou.copy()
    for d in range(num_det):
      if num_gt:
        g = int(np.argmax(buffer[d]))
        if buffer[d, g] >= self._foreground_iou:
          used[d], gt_used[g] = True, True
          buffer[:, g] = 0
    for r in np.flatnonzero(ignore):
      coverage = _intersection_over_first(boxes, gt_boxes[r:r + 1])[:, 0]
      for d in range(num_det):
        if used[d] is False and coverage[d] > self._foreground_iou and classes[d] == gt_classes[r]:
          used[d] = None
    other_class_iou = iou * ~same_class
    used_class_iou = iou * gt_used[None, :] * same_class
    for d in range(num_det):
      detection = {'id': int(ids[d]), 'score': float(scores[d]), 'class': int(classes[d]),
                   'used': used[d]}
      if used[d] is not None:
        ap_data.points[int(classes[d])][int(ids[d])] = (float(scores[d]), bool(used[d]))
      if used[d] is True:
        continue
      errors.append(self._classify(d, detection, iou, class_iou, other_class_iou,
                                   used_class_iou, gt_used, gt_c, image_index, best))
    recoverable = {key[1] for key in best if key[0] == image_index}
    for g in range(num_gt):
      if not gt_used[g]:
        false_negatives[int(gt_c[g])] += 1
        if g not in recoverable:
          errors.append(_Error('Miss', groundtruth_class=int(gt_c[g])))
    return errors

  def _classify(self, d, detection, iou, class_iou, other_class_iou, used_class_iou, gt_used,
                gt_classes, image_index, best):
    """The error of unmatched detection d (tidecv's order of tests)."""
    if iou.shape[1] == 0:
      return _Error('Bkg', detection)
    g = int(np.argmax(class_iou[d]))
    if self._background_iou <= class_iou[d, g] <= self._foreground_iou:
      return self._recoverable('Loc', detection, g, detection['class'], gt_used, image_index,
                               best)
    g = int(np.argmax(other_class_iou[d]))
    if other_class_iou[d, g] >= self._foreground_iou:
      return self._recoverable('Cls', detection, g, int(gt_classes[g]), gt_used, image_index,
                               best)
    g = int(np.argmax(used_class_iou[d]))
    if used_class_iou[d, g] >= self._foreground_iou:
      return _Error('Dupe', detection)
    if np.max(iou[d]) <= self._background_iou:
      return _Error('Bkg', detection)
    return _Error('Both', detection)

  @staticmethod
  def _recoverable(kind, detection, g, fix_class, gt_used, image_index, best):
    if gt_used[g]:
      return _Error(kind, detection, target=None, fix_class=fix_class)
    key = (image_index, g)
    if key not in best or best[key][0] < detection['score']:
      best[key] = (detection['score'], detection['id'])
    return _Error(kind, detection, target=key, fix_class=fix_class)

  @staticmethod
  def _fixed_ap(ap_data, errors, best_ids, condition, transform=None,
                false_negatives=None):
    """mAP after fixing the errors for which condition(error) holds (tidecv fix_errors)."""
    num_groundtruth = dict(ap_data.num_groundtruth)
    for class_id in ap_data.points:
      num_groundtruth.setdefault(class_id, 0)
    fixed = _APData()
    for error in errors:
      class_id, point = error.original or (None, None)
      if condition(error):
        class_id, point = error.fixed(best_ids)
        if isinstance(point, int):
          num_groundtruth[class_id] += point
          point = None
      if point is not None:
        fixed.points[class_id][error.id] = transform(*point) if transform else point
    for class_id in num_groundtruth:
      for detection_id, point in ap_data.points.get(class_id, {}).items():
        if point[1]:
          fixed.points[class_id][detection_id] = transform(*point) if transform else point
    for class_id, count in num_groundtruth.items():
      if false_negatives is not None:
        count -= false_negatives.get(class_id, 0)
      fixed.num_groundtruth[class_id] += count
    return fixed.mean_ap()

  def error_breakdown(self):
    """{'AP': ..., 'dAP': {type: ...}, 'special_dAP': {...}, 'counts': {type: n}}."""
    if not self._groundtruth:
      raise ValueError('TideDetectionEvaluator.evaluate called with no images added')
    ap_data, errors, false_negatives, best_ids = self._run()
    ap = ap_data.mean_ap()
    delta = {kind: max(self._fixed_ap(ap_data, errors, best_ids,
                                      lambda e, kind=kind: e.kind == kind) - ap, 0.0)
             for kind in ERROR_TYPES}
    special = {
        'FalsePos': self._fixed_ap(ap_data, errors, best_ids, lambda e: False,
                                   transform=lambda s, c: (1.0, True) if c else (0.0, False)) - ap,
        'FalseNeg': self._fixed_ap(ap_data, errors, best_ids, lambda e: False,
                                   false_negatives=false_negatives) - ap}
    counts = collections.Counter(error.kind for error in errors)
    return {'AP': ap, 'dAP': delta, 'special_dAP': special,
            'counts': {kind: counts.get(kind, 0) for kind in ERROR_TYPES}}

  def evaluate(self):
    """Returns {'TIDE/AP50': ..., 'TIDE/dAP_<type>': ..., 'TIDE/num_<type>': ...} for the types
    Cls, Loc, Both, Dupe, Bkg, Miss, plus TIDE/dAP_FalsePos and TIDE/dAP_FalseNeg."""
    breakdown = self.error_breakdown()
    prefix = self.metric_prefix
    metrics = {f'{prefix}/AP{int(round(self._foreground_iou * 100))}': breakdown['AP']}
    for kind in ERROR_TYPES:
      metrics[f'{prefix}/dAP_{kind}'] = breakdown['dAP'][kind]
    for kind in SPECIAL_ERROR_TYPES:
      metrics[f'{prefix}/dAP_{kind}'] = breakdown['special_dAP'][kind]
    for kind in ERROR_TYPES:
      metrics[f'{prefix}/num_{kind}'] = float(breakdown['counts'][kind])
    return metrics


def _intersection_over_first(boxes1, boxes2):
  """Intersection / area of boxes1 [N,4] with boxes2 [M,4] -> [N,M] (pycocotools' crowd IoU)."""
  ymin = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
  xmin = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
  ymax = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
  xmax = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
  intersection = np.maximum(ymax - ymin, 0) * np.maximum(xmax - xmin, 0)
  area = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
  return np.where(area[:, None] > 0, intersection / np.maximum(area[:, None], 1e-12), 0.0)
