"""Box ops, the Faster R-CNN box coder and the grid anchor generators vs numpy."""
import math

import numpy as np
import tensorflow as tf

from mtl_ssl.core import anchor_generator
from mtl_ssl.core import box_coder
from mtl_ssl.core import box_ops


def _np_iou(a, b):
  out = np.zeros((len(a), len(b)))
  for i, (y1, x1, y2, x2) in enumerate(a):
    for j, (v1, u1, v2, u2) in enumerate(b):
      ih = max(0.0, min(y2, v2) - max(y1, v1))
      iw = max(0.0, min(x2, u2) - max(x1, u1))
      inter = ih * iw
      union = (y2 - y1) * (x2 - x1) + (v2 - v1) * (u2 - u1) - inter
      out[i, j] = inter / union if union > 0 else 0.0
  return out


def _random_boxes(rng, n, size=100.0):
  yx = rng.uniform(0, size, (n, 2))
  hw = rng.uniform(1, size / 2, (n, 2))
  return np.concatenate([yx, yx + hw], 1).astype(np.float32)


def test_pairwise_iou_matches_numpy_including_degenerate_boxes():
  rng = np.random.RandomState(0)
  a = _random_boxes(rng, 7)
  b = np.concatenate([_random_boxes(rng, 5), np.zeros((1, 4), np.float32)])
  got = box_ops.pairwise_iou(a[None], b[None]).numpy()[0]
  np.testing.assert_allclose(got, _np_iou(a, b), rtol=1e-5, atol=1e-6)
  assert np.all(got[:, -1] == 0.0)
  # hand-worked: [0,0,2,2] vs [1,1,3,3] -> 1 / 7
  hand = box_ops.pairwise_iou(tf.constant([[[0., 0, 2, 2]]]),
                              tf.constant([[[1., 1, 3, 3]]])).numpy()
  np.testing.assert_allclose(hand, [[[1.0 / 7.0]]], rtol=1e-6)


def test_clip_and_inside_window():
  boxes = tf.constant([[[-5., 2, 20, 50], [1., 1, 9, 9]]])
  window = tf.constant([[0., 0, 10, 30]])
  np.testing.assert_allclose(box_ops.clip_to_window(boxes, window).numpy(),
                             [[[0, 2, 10, 30], [1, 1, 9, 9]]])
  assert box_ops.inside_window(boxes, window).numpy().tolist() == [[False, True]]


def _np_encode(boxes, anchors, s):
  def cs(b):
    h, w = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return b[:, 0] + h / 2, b[:, 1] + w / 2, h, w
  yc, xc, h, w = cs(boxes.astype(np.float64))
  yca, xca, ha, wa = cs(anchors.astype(np.float64))
  ha, wa, h, w = ha + 1e-8, wa + 1e-8, h + 1e-8, w + 1e-8
  return np.stack([(yc - yca) / ha * s[0], (xc - xca) / wa * s[1],
                   np.log(h / ha) * s[2], np.log(w / wa) * s[3]], 1)


def test_box_coder_encode_matches_numpy_and_decode_inverts():
  rng = np.random.RandomState(1)
  boxes, anchors = _random_boxes(rng, 20), _random_boxes(rng, 20)
  coder = box_coder.FasterRcnnBoxCoder((10., 10., 5., 5.))
  codes = coder.encode(tf.constant(boxes), tf.constant(anchors)).numpy()
  np.testing.assert_allclose(codes, _np_encode(boxes, anchors, (10, 10, 5, 5)),
                             rtol=1e-4, atol=1e-4)
  decoded = coder.decode(tf.constant(codes), tf.constant(anchors)).numpy()
  np.testing.assert_allclose(decoded, boxes, rtol=1e-4, atol=1e-3)
  # hand-worked: box = anchor shifted by half its height, twice as wide
  enc = coder.encode(tf.constant([[5., 0, 15, 20]]), tf.constant([[0., 0, 10, 10]]))
  np.testing.assert_allclose(enc.numpy(), [[5.0, 5.0, 0.0, 5 * np.log(2)]],
                             rtol=1e-5, atol=1e-5)


def test_box_coder_rejects_bad_scale_factors():
  try:
    box_coder.FasterRcnnBoxCoder((1., 2.))
  except ValueError as e:
    assert 'scale_factors' in str(e)
  else:
    raise AssertionError('expected ValueError')


def _np_grid_anchors(h, w, scales, ratios, base, stride, offset):
  out = []
  for y in range(h):
    for x in range(w):
      for r in ratios:
        for s in scales:
          ah = s / np.sqrt(r) * base[0]
          aw = s * np.sqrt(r) * base[1]
          yc, xc = y * stride[0] + offset[0], x * stride[1] + offset[1]
          out.append([yc - ah / 2, xc - aw / 2, yc + ah / 2, xc + aw / 2])
  return np.array(out, np.float32)


def test_grid_anchors_match_numpy_order_and_values():
  scales, ratios = (0.25, 0.5, 1.0, 2.0), (0.5, 1.0, 2.0)
  gen = anchor_generator.GridAnchorGenerator(scales, ratios, (256, 256),
                                             (16, 16), (8, 4))
  assert gen.num_anchors_per_location == 12
  got = gen.generate(3, 5).numpy()
  want = _np_grid_anchors(3, 5, scales, ratios, (256, 256), (16, 16), (8, 4))
  assert got.shape == (3 * 5 * 12, 4)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
  # first anchor: ratio 0.5, scale 0.25 at (8, 4): h = 64 / sqrt(.5), w = 64 * sqrt(.5)
  np.testing.assert_allclose(got[0], [8 - 45.254834, 4 - 22.627417,
                                      8 + 45.254834, 4 + 22.627417], rtol=1e-5)


def test_anchor_builder_from_proto_defaults_and_errors():
  from mtl_ssl.protos import anchor_generator_pb2
  cfg = anchor_generator_pb2.AnchorGenerator()
  cfg.grid_anchor_generator.scales.extend([0.5, 1.0])
  gen = anchor_generator.build(cfg)
  assert gen.aspect_ratios == [0.5, 1.0, 2.0]
  assert gen.base_anchor_size == [256., 256.] and gen.anchor_stride == [16., 16.]
  assert gen.num_anchors_per_location == 6
  try:
    anchor_generator.build(anchor_generator_pb2.AnchorGenerator())
  except ValueError as e:
    assert 'grid_anchor_generator' in str(e)
  else:
    raise AssertionError('expected ValueError')


def test_multiscale_anchors_count_and_layout_hand_worked():
  # OD API FPN sample: levels 2..6, anchor_scale 4, ratios [1, 2, 0.5], 2 scales per octave.
  gen = anchor_generator.MultiscaleGridAnchorGenerator(2, 6, 4.0, (1.0, 2.0, 0.5), 2)
  assert gen.num_levels == 5 and gen.num_anchors_per_location == 6
  shapes = [(160, 160), (80, 80), (40, 40), (20, 20), (10, 10)]  # a 640 x 640 image
  anchors = gen.generate(shapes).numpy()
  counts = [h * w * 6 for h, w in shapes]
  assert anchors.shape == (sum(counts), 4) == (204600, 4)
  # level 2, cell (0, 0): centre (2, 2); ratio 1, scale 1 -> 16 x 16; scale sqrt2 -> 22.63
  s2 = 16.0 * math.sqrt(2.0)
  np.testing.assert_allclose(anchors[0], [-6, -6, 10, 10], atol=1e-4)
  np.testing.assert_allclose(anchors[1], [2 - s2 / 2, 2 - s2 / 2, 2 + s2 / 2, 2 + s2 / 2],
                             rtol=1e-5)
  # ratio 2 (wide), scale 1: h = 16 / sqrt2, w = 16 * sqrt2
  h, w = 16.0 / math.sqrt(2.0), 16.0 * math.sqrt(2.0)
  np.testing.assert_allclose(anchors[2], [2 - h / 2, 2 - w / 2, 2 + h / 2, 2 + w / 2], rtol=1e-5)
  # level 6 (stride 64, base 256) starts after the four finer levels; its cell (1, 2) ratio 0.5
  # scale 1: centre (96, 160), h = 256 * sqrt2, w = 256 / sqrt2
  start = sum(counts[:4])
  index = start + (1 * 10 + 2) * 6 + 4
  h, w = 256.0 * math.sqrt(2.0), 256.0 / math.sqrt(2.0)
  np.testing.assert_allclose(anchors[index], [96 - h / 2, 160 - w / 2, 96 + h / 2, 160 + w / 2],
                             rtol=1e-5)
  # every level matches its own grid generator
  for generator, (height, width), first, count in zip(
      gen.level_generators, shapes, np.cumsum([0] + counts[:-1]), counts):
    np.testing.assert_allclose(anchors[first:first + count],
                               generator.generate(height, width).numpy())
  try:
    gen.generate(shapes[:4])
  except ValueError as error:
    assert '5 levels' in str(error)
  else:
    raise AssertionError('expected ValueError')


def test_multiscale_anchor_builder_reads_the_proto_and_rejects_normalized():
  from mtl_ssl.protos import anchor_generator_pb2
  cfg = anchor_generator_pb2.AnchorGenerator()
  cfg.multiscale_anchor_generator.min_level = 2
  cfg.multiscale_anchor_generator.max_level = 6
  cfg.multiscale_anchor_generator.aspect_ratios.extend([1.0, 2.0, 0.5])
  cfg.multiscale_anchor_generator.normalize_coordinates = False
  gen = anchor_generator.build(cfg)
  assert (gen.min_level, gen.max_level, gen.anchor_scale, gen.scales_per_octave) == (2, 6, 4.0, 2)
  assert gen.aspect_ratios == [1.0, 2.0, 0.5]
  cfg.multiscale_anchor_generator.normalize_coordinates = True
  for broken, words in ((cfg, 'normalize_coordinates'),):
    try:
      anchor_generator.build(broken)
    except ValueError as error:
      assert words in str(error)
    else:
      raise AssertionError('expected ValueError')
  cfg.multiscale_anchor_generator.normalize_coordinates = False
  del cfg.multiscale_anchor_generator.aspect_ratios[:]
  try:
    anchor_generator.build(cfg)
  except ValueError as error:
    assert 'aspect_ratios' in str(error)
  else:
    raise AssertionError('expected ValueError')
