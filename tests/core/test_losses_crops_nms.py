"""Losses vs hand-worked numbers; crop_and_pool and PS-RoI pooling vs numpy;
batched multi-class NMS vs a numpy greedy NMS."""
import numpy as np
import tensorflow as tf

from mtl_ssl.core import crop_ops
from mtl_ssl.core import losses
from mtl_ssl.core import post_processing


def test_smooth_l1_hand_worked():
  pred = tf.constant([[[0.5, -2.0, 0.0, 1.0], [3.0, 0.0, 0.0, 0.0]]])
  target = tf.zeros_like(pred)
  weights = tf.constant([[1.0, 0.5]])
  got = losses.weighted_smooth_l1(pred, target, weights).numpy()
  # row0: .5*.25 + (2-.5) + 0 + .5 = 2.125 ; row1: (3-.5) * .5 = 1.25
  np.testing.assert_allclose(got, [[2.125, 1.25]], rtol=1e-6)


def test_softmax_cross_entropy_hand_worked_and_weights():
  logits = tf.constant([[[0.0, 0.0], [np.log(3.0), 0.0]]])
  targets = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
  got = losses.weighted_softmax_cross_entropy(logits, targets,
                                              tf.constant([[1.0, 2.0]])).numpy()
  # -log(.5) ; 2 * -log(1/4)
  np.testing.assert_allclose(got, [[np.log(2.0), 2 * np.log(4.0)]], rtol=1e-6)
  scaled = losses.weighted_softmax_cross_entropy(
      logits * 2.0, targets, tf.constant([[1.0, 1.0]]), logit_scale=2.0).numpy()
  np.testing.assert_allclose(scaled, [[np.log(2.0), np.log(4.0)]], rtol=1e-6)


def test_sigmoid_cross_entropy_sums_classes():
  got = losses.weighted_sigmoid_cross_entropy(
      tf.constant([[[0.0, 0.0]]]), tf.constant([[[1.0, 0.0]]]),
      tf.constant([[3.0]])).numpy()
  np.testing.assert_allclose(got, [[3 * 2 * np.log(2.0)]], rtol=1e-6)


def _np_crop_and_resize(image, box, size):
  """tf.image.crop_and_resize semantics (bilinear, extrapolation 0)."""
  h, w, c = image.shape
  y1, x1, y2, x2 = box
  out = np.zeros((size, size, c))
  for i in range(size):
    y = y1 * (h - 1) + (i * (y2 - y1) * (h - 1) / (size - 1) if size > 1 else
                        0.5 * (y1 + y2) * (h - 1) - y1 * (h - 1))
    for j in range(size):
      x = x1 * (w - 1) + (j * (x2 - x1) * (w - 1) / (size - 1) if size > 1 else
                          0.5 * (x1 + x2) * (w - 1) - x1 * (w - 1))
      if y < 0 or y > h - 1 or x < 0 or x > w - 1:
        continue
      y0, x0 = int(np.floor(y)), int(np.floor(x))
      y1i, x1i = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
      dy, dx = y - y0, x - x0
      top = image[y0, x0] * (1 - dx) + image[y0, x1i] * dx
      bot = image[y1i, x0] * (1 - dx) + image[y1i, x1i] * dx
      out[i, j] = top * (1 - dy) + bot * dy
  return out


def test_crop_and_pool_matches_numpy():
  rng = np.random.RandomState(0)
  feats = rng.randn(2, 9, 11, 3).astype(np.float32)
  boxes = np.array([[[0.1, 0.2, 0.8, 0.9], [0.0, 0.0, 1.0, 1.0]],
                    [[0.3, 0.1, 0.6, 0.5], [0.2, 0.2, 0.4, 0.9]]], np.float32)
  got = crop_ops.crop_and_pool(tf.constant(feats), tf.constant(boxes), 6, 2, 2)
  assert got.shape == (4, 3, 3, 3)
  want = []
  for b in range(2):
    for k in range(2):
      crop = _np_crop_and_resize(feats[b], boxes[b, k], 6)
      want.append(crop.reshape(3, 2, 3, 2, 3).max(axis=(1, 3)))
  np.testing.assert_allclose(got.numpy(), np.stack(want), rtol=1e-4, atol=1e-5)


def test_true_to_padded_normalized():
  boxes = tf.constant([[[0.5, 0.5, 1.0, 1.0]]])
  got = crop_ops.true_to_padded_normalized(boxes, tf.constant([[50, 100, 3]]),
                                           100, 200).numpy()
  np.testing.assert_allclose(got, [[[0.25, 0.25, 0.5, 0.5]]])


def _np_ps_roi(feats, box, crop, bins):
  by_n, bx_n = bins
  depth = feats.shape[-1] // (by_n * bx_n)
  y1, x1, y2, x2 = box
  sy, sx = (y2 - y1) / by_n, (x2 - x1) / bx_n
  acc = np.zeros(depth)
  for by in range(by_n):
    for bx in range(bx_n):
      g = by * bx_n + bx
      sub = [y1 + by * sy, x1 + bx * sx, y1 + (by + 1) * sy, x1 + (bx + 1) * sx]
      part = _np_crop_and_resize(feats[..., g * depth:(g + 1) * depth], sub,
                                 crop[0] // by_n)
      acc += part.mean(axis=(0, 1))
  return acc / (by_n * bx_n)


def test_position_sensitive_pooling_matches_numpy():
  rng = np.random.RandomState(3)
  bins, depth = (3, 3), 4
  feats = rng.randn(2, 10, 12, 9 * depth).astype(np.float32)
  boxes = rng.uniform(0, 0.5, (2, 3, 2))
  boxes = np.concatenate([boxes, boxes + 0.4], -1).astype(np.float32)
  got = crop_ops.position_sensitive_crop_regions(
      tf.constant(feats), tf.constant(boxes), (6, 6), bins).numpy()
  assert got.shape == (2, 3, depth)
  for b in range(2):
    for k in range(3):
      np.testing.assert_allclose(got[b, k], _np_ps_roi(feats[b], boxes[b, k],
                                                       (6, 6), bins),
                                 rtol=1e-4, atol=1e-5)
  # a constant map per channel group: PS pooling averages the group constants
  const = np.concatenate([np.full((1, 10, 12, 1), g, np.float32)
                          for g in range(9)], -1)
  avg = crop_ops.position_sensitive_crop_regions(
      tf.constant(const), tf.constant(boxes[:1]), (3, 3), bins).numpy()
  np.testing.assert_allclose(avg, np.full((1, 3, 1), 4.0), rtol=1e-6)


def test_score_converters():
  logits = tf.constant([[1.0, 2.0, 3.0]])
  np.testing.assert_allclose(
      post_processing.score_converter_fn('SOFTMAX', 2.0)(logits).numpy(),
      tf.nn.softmax(logits / 2.0).numpy(), rtol=1e-6)
  np.testing.assert_allclose(
      post_processing.score_converter_fn('SIGMOID')(logits).numpy(),
      1 / (1 + np.exp(-logits.numpy())), rtol=1e-6)
  np.testing.assert_allclose(
      post_processing.score_converter_fn('IDENTITY', 2.0)(logits).numpy(),
      [[0.5, 1.0, 1.5]])


def _np_nms(boxes, scores, thr, iou_thr, max_out):
  order = [i for i in np.argsort(-scores, kind='stable') if scores[i] > thr]
  keep = []
  for i in order:
    ok = True
    for j in keep:
      y1, x1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
      y2, x2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
      inter = max(0, y2 - y1) * max(0, x2 - x1)
      a = lambda b: (b[2] - b[0]) * (b[3] - b[1])
      if inter / (a(boxes[i]) + a(boxes[j]) - inter) > iou_thr:
        ok = False
        break
    if ok:
      keep.append(i)
    if len(keep) == max_out:
      break
  return keep


def test_batch_multiclass_nms_matches_numpy_and_recovers_sources():
  rng = np.random.RandomState(5)
  b, n, k = 2, 40, 3
  yx = rng.uniform(0, 60, (b, n, k, 2))
  boxes = np.concatenate([yx, yx + rng.uniform(10, 40, (b, n, k, 2))],
                         -1).astype(np.float32)
  scores = rng.uniform(size=(b, n, k)).astype(np.float32)
  window = np.array([[0, 0, 80, 100], [0, 0, 100, 80]], np.float32)
  num_valid = np.array([40, 25], np.int32)
  out = post_processing.batch_multiclass_nms(
      tf.constant(boxes), tf.constant(scores), 0.3, 0.5, 5, 12,
      clip_window=tf.constant(window), change_coordinate_frame=True,
      num_valid_boxes=tf.constant(num_valid))
  for i in range(b):
    clipped = boxes[i].copy()
    clipped[..., 0::2] = np.clip(clipped[..., 0::2], 0, window[i, 2])
    clipped[..., 1::2] = np.clip(clipped[..., 1::2], 0, window[i, 3])
    cands = []
    for c in range(k):
      s = scores[i, :num_valid[i], c]
      for j in _np_nms(clipped[:num_valid[i], c], s, 0.3, 0.5, 5):
        cands.append((s[j], c, j))
    cands = sorted(cands, key=lambda t: -t[0])[:12]
    nd = int(out['num_detections'][i])
    assert nd == len(cands)
    np.testing.assert_allclose(out['scores'][i, :nd], [t[0] for t in cands],
                               rtol=1e-6)
    assert out['classes'][i, :nd].numpy().tolist() == [t[1] for t in cands]
    assert out['source_indices'][i, :nd].numpy().tolist() == [t[2] for t in cands]
    want_boxes = np.stack([clipped[t[2], t[1]] for t in cands])
    want_boxes = want_boxes / np.array([window[i, 2], window[i, 3]] * 2)
    np.testing.assert_allclose(out['boxes'][i, :nd], want_boxes, rtol=1e-5)
    assert np.all(out['boxes'][i, nd:].numpy() == 0)
