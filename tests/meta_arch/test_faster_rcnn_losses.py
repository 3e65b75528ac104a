"""Faster R-CNN losses vs an independent numpy reference (OD API target
assignment and normalization), on hand-made prediction dicts."""
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from mtl_ssl.builders import model_builder
from mtl_ssl.protos import model_pb2

NUM_CLASSES = 3
_CONFIG = """
faster_rcnn {
  num_classes: 3
  image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
  feature_extractor { type: 'faster_rcnn_mobilenet_v1_keras' }
  first_stage_anchor_generator { grid_anchor_generator {
    scales: [0.125, 0.25] aspect_ratios: [0.5, 1.0, 2.0] height_offset: 8 width_offset: 8 } }
  first_stage_box_predictor_depth: 16
  first_stage_minibatch_size: 16
  first_stage_max_proposals: 8
  initial_crop_size: 4 maxpool_kernel_size: 2 maxpool_stride: 2
  second_stage_box_predictor { mask_rcnn_box_predictor { } }
  second_stage_batch_size: 8
  first_stage_localization_loss_weight: 2.0
  second_stage_classification_loss_weight: 3.0
  second_stage_post_processing { score_converter: SOFTMAX
    batch_non_max_suppression { max_detections_per_class: 5 max_total_detections: 5 } }
}
"""


def _build(sigma=None):
  text = _CONFIG
  if sigma is not None:  # the original's RPN loss (py-faster-rcnn smooth L1, sigma 3)
    text = text.replace('first_stage_minibatch_size', 'first_stage_localization_loss_sigma: %s\n'
                        '  first_stage_minibatch_size' % sigma)
  cfg = text_format.Parse(text, model_pb2.DetectionModel())
  return model_builder.build(cfg, is_training=True, depth_multiplier=0.25)


@pytest.fixture(scope='module')
def model():
  return _build()


def _iou(a, b):
  out = np.zeros((len(a), len(b)))
  for i, p in enumerate(a):
    for j, q in enumerate(b):
      ih = max(0, min(p[2], q[2]) - max(p[0], q[0]))
      iw = max(0, min(p[3], q[3]) - max(p[1], q[1]))
      inter = ih * iw
      union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
      out[i, j] = inter / union if union > 0 else 0
  return out


def _encode(box, anchor, scale=(10., 10., 5., 5.)):
  h, w = box[2] - box[0] + 1e-8, box[3] - box[1] + 1e-8
  ha, wa = anchor[2] - anchor[0] + 1e-8, anchor[3] - anchor[1] + 1e-8
  yc, xc = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
  yca, xca = (anchor[0] + anchor[2]) / 2, (anchor[1] + anchor[3]) / 2
  return np.array([(yc - yca) / ha * scale[0], (xc - xca) / wa * scale[1],
                   np.log(h / ha) * scale[2], np.log(w / wa) * scale[3]])


def _huber(x, sigma=1.0):
  a, s2 = np.abs(x), sigma * sigma
  return np.where(a <= 1 / s2, 0.5 * s2 * a * a, a - 0.5 / s2).sum()


def _np_match(iou, hi, lo, force, valid_cols):
  iou = np.where(valid_cols[None], iou, -1.0)
  best = iou.max(0)
  matches = np.where(best >= hi, iou.argmax(0), np.where(best < lo, -1, -2))
  if force:
    for row in range(iou.shape[0]):  # later rows do not override earlier
      col = int(iou[row].argmax())
      if not any(int(iou[r].argmax()) == col for r in range(row)):
        matches[col] = row
  return np.where(valid_cols, matches, -3)


def _gt():
  boxes = [np.array([[0.1, 0.1, 0.6, 0.5], [0.5, 0.55, 0.95, 0.95]], np.float32),
           np.array([[0.2, 0.3, 0.8, 0.7]], np.float32)]
  classes = [np.array([0, 2]), np.array([1])]
  return boxes, classes


@pytest.mark.parametrize('sigma', [None, 3.0])
def test_rpn_and_box_classifier_losses_match_numpy(model, sigma):
  model = model if sigma is None else _build(sigma)
  boxes, classes = _gt()
  model.provide_groundtruth([tf.constant(b) for b in boxes],
                            [tf.one_hot(c, NUM_CLASSES) for c in classes],
                            [tf.constant([1.0, 0.5]), tf.constant([1.0])])
  true_shapes = tf.constant([[64, 64, 3], [48, 64, 3]])
  anchors = model._anchor_generator.generate(4, 4)
  valid = tf.reduce_all(tf.concat([anchors[:, :2] >= 0, anchors[:, 2:] <= 64],
                                  1), axis=1)
  num_anchors = anchors.shape[0]
  proposals = np.array([
      [[6, 6, 38, 32], [30, 34, 60, 60], [0, 0, 20, 20], [10, 8, 40, 30],
       [0, 0, 0, 0], [0, 0, 0, 0]],
      [[10, 19, 38, 45], [0, 0, 16, 16], [20, 20, 30, 30], [0, 0, 0, 0],
       [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
  num_proposals = np.array([4, 3], np.int32)
  pred = {
      'rpn_box_encodings': tf.zeros([2, num_anchors, 4]),
      'rpn_objectness_predictions_with_background': tf.zeros([2, num_anchors, 2]),
      'anchors': anchors, 'anchor_valid': valid,
      'proposal_boxes': tf.constant(proposals),
      'num_proposals': tf.constant(num_proposals),
      'refined_box_encodings': tf.zeros([2, 6, NUM_CLASSES, 4]),
      'class_predictions_with_background': tf.zeros([2, 6, NUM_CLASSES + 1]),
  }
  losses = {k: float(v) for k, v in model.loss(pred, true_shapes).items()}

  # numpy reference
  anchors_np, valid_np = anchors.numpy(), valid.numpy()
  rpn_loc, box_loc = [], []
  for b in range(2):
    h, w = true_shapes.numpy()[b, :2]
    gt_abs = boxes[b] * np.array([h, w, h, w])
    m = _np_match(_iou(gt_abs, anchors_np), 0.7, 0.3, True, valid_np)
    pos = np.nonzero(m >= 0)[0]
    neg = np.nonzero(m == -1)[0]
    assert 0 < len(pos) <= 8 and len(neg) > 0  # all positives get sampled
    sampled = len(pos) + min(len(neg), 16 - len(pos))
    weights = [1.0, 0.5] if b == 0 else [1.0]
    rpn_loc.append(sum(weights[m[a]] * _huber(_encode(gt_abs[m[a]], anchors_np[a]), sigma or 1.0)
                       for a in pos) / sampled)
    n = num_proposals[b]
    mp = _np_match(_iou(gt_abs, proposals[b, :n]), 0.5, 0.5, False,
                   np.ones(n, bool))
    box_loc.append(sum(weights[mp[p]] * _huber(_encode(gt_abs[mp[p]], proposals[b, p]))
                       for p in range(n) if mp[p] >= 0) / (n * 2))
    if b == 0:
      assert sorted(mp.tolist()) == [-1, 0, 0, 1]
      cls_b0 = (sum(weights[mp[p]] if mp[p] >= 0 else 1.0 for p in range(n)) *
                np.log(4.0) / (n * 2))
  cls_b1 = 3 * np.log(4.0) / (3 * 2)
  np.testing.assert_allclose(losses['Loss/RPNLoss/localization_loss'],
                             2.0 * np.mean(rpn_loc), rtol=1e-4)
  np.testing.assert_allclose(losses['Loss/RPNLoss/objectness_loss'], np.log(2.0),
                             rtol=1e-5)
  np.testing.assert_allclose(losses['Loss/BoxClassifierLoss/localization_loss'],
                             np.sum(box_loc), rtol=1e-4)
  np.testing.assert_allclose(losses['Loss/BoxClassifierLoss/classification_loss'],
                             3.0 * (cls_b0 + cls_b1), rtol=1e-5)


def test_box_localization_uses_the_target_class_slot(model):
  boxes, classes = _gt()
  model.provide_groundtruth([tf.constant(b) for b in boxes],
                            [tf.one_hot(c, NUM_CLASSES) for c in classes])
  true_shapes = tf.constant([[64, 64, 3], [64, 64, 3]])
  proposals = np.array([[[8, 8, 36, 30], [34, 36, 60, 60]],
                        [[14, 20, 50, 44], [0, 0, 10, 10]]], np.float32)
  encodings = np.full((2, 2, NUM_CLASSES, 4), 7.0, np.float32)
  for b in range(2):
    gt_abs = boxes[b] * 64
    for p in range(2):
      iou = _iou(gt_abs, proposals[b, p:p + 1])[:, 0]
      if iou.max() >= 0.5:
        encodings[b, p, classes[b][iou.argmax()]] = _encode(
            gt_abs[iou.argmax()], proposals[b, p])
  anchors = model._anchor_generator.generate(4, 4)
  pred = {
      'rpn_box_encodings': tf.zeros([2, anchors.shape[0], 4]),
      'rpn_objectness_predictions_with_background': tf.zeros([2, anchors.shape[0], 2]),
      'anchors': anchors, 'anchor_valid': tf.ones([anchors.shape[0]], tf.bool),
      'proposal_boxes': tf.constant(proposals),
      'num_proposals': tf.constant([2, 2]),
      'refined_box_encodings': tf.constant(encodings),
      'class_predictions_with_background': tf.zeros([2, 2, NUM_CLASSES + 1]),
  }
  losses = model.loss(pred, true_shapes)
  assert float(losses['Loss/BoxClassifierLoss/localization_loss']) < 1e-6
  encodings[0, 0] += 1.0  # now every slot is off by one: loss > 0
  pred['refined_box_encodings'] = tf.constant(encodings)
  assert float(model.loss(pred, true_shapes)[
      'Loss/BoxClassifierLoss/localization_loss']) > 0.1


def test_loss_weights_come_from_config_and_apply_once(model):
  assert model.loss_weights == {
      'Loss/RPNLoss/localization_loss': 2.0,
      'Loss/RPNLoss/objectness_loss': 1.0,
      'Loss/BoxClassifierLoss/localization_loss': 1.0,
      'Loss/BoxClassifierLoss/classification_loss': 3.0,
  }
  boxes, classes = _gt()
  model.provide_groundtruth([tf.constant(b) for b in boxes],
                            [tf.one_hot(c, NUM_CLASSES) for c in classes])
  anchors = model._anchor_generator.generate(4, 4)
  pred = {
      'rpn_box_encodings': tf.zeros([2, anchors.shape[0], 4]),
      'rpn_objectness_predictions_with_background': tf.zeros([2, anchors.shape[0], 2]),
      'anchors': anchors, 'anchor_valid': tf.ones([anchors.shape[0]], tf.bool),
      'proposal_boxes': tf.constant([[[8., 8, 36, 30]], [[14., 20, 50, 44]]]),
      'num_proposals': tf.constant([1, 1]),
      'refined_box_encodings': tf.zeros([2, 1, NUM_CLASSES, 4]),
      'class_predictions_with_background': tf.zeros([2, 1, NUM_CLASSES + 1]),
  }
  shapes = tf.constant([[64, 64, 3]] * 2)
  before = model.loss(pred, shapes)
  saved = dict(model.loss_weights)
  model.loss_weights['Loss/BoxClassifierLoss/classification_loss'] = 6.0
  try:
    after = model.loss(pred, shapes)
  finally:
    model.loss_weights.update(saved)
  np.testing.assert_allclose(
      float(after['Loss/BoxClassifierLoss/classification_loss']),
      2 * float(before['Loss/BoxClassifierLoss/classification_loss']), rtol=1e-6)
  np.testing.assert_allclose(float(before['Loss/BoxClassifierLoss/classification_loss']),
                             3 * np.log(4.0), rtol=1e-5)
