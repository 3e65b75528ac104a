"""FPN level assignment vs a numpy reference of the OD API formula, and the multi-level crop vs
per-level crop_and_pool."""
import math

import numpy as np
import tensorflow as tf

from mtl_ssl.core import crop_ops
from mtl_ssl.core import multilevel_crop


def _np_levels(boxes, image_h, image_w, num_levels, unit_scale_index):
  """OD API ops.fpn_feature_levels written out in numpy (float64)."""
  boxes = np.asarray(boxes, np.float64)
  hw = boxes[..., 2:4] - boxes[..., 0:2]
  ratio = math.sqrt(image_h * image_w) / 224.0
  levels = np.floor(np.log(np.sqrt(np.prod(hw, -1)) * ratio) / np.log(2.0)) + unit_scale_index
  return np.clip(levels, 0, num_levels - 1).astype(np.int32)


def test_levels_hand_worked_od_api_case():
  # The OD API's own test case: 640 px image, 5 levels, unit index 2.
  boxes = np.array([[[0, 0, 111, 111], [0, 0, 113, 113], [0, 0, 223, 223],
                     [0, 0, 225, 225], [0, 0, 449, 449]]], np.float32) / 640.0
  got = multilevel_crop.fpn_feature_levels(boxes, 640, 640, 5, unit_scale_index=2).numpy()
  assert got.tolist() == [[0, 1, 1, 2, 3]]


def test_levels_default_unit_index_is_the_faster_rcnn_choice():
  # Levels 2..6 (5 maps), unit index 5 - 2 = 3: 224 px -> P5, 112 px -> P4, 56 px -> P3.
  sizes = [20.0, 55.0, 56.0, 111.0, 112.0, 223.0, 224.0, 447.0, 448.0, 900.0]
  boxes = np.array([[[0, 0, s, s] for s in sizes]], np.float32) / 1024.0
  got = multilevel_crop.fpn_feature_levels(boxes, 1024, 1024, 5).numpy()[0]
  pyramid_level = (got + 2).tolist()
  assert pyramid_level == [2, 2, 3, 3, 4, 4, 5, 5, 6, 6]


def test_levels_match_numpy_reference_on_random_boxes_and_non_square_images():
  rng = np.random.default_rng(3)
  for image_h, image_w, num_levels in ((640, 640, 5), (512, 768, 4), (256, 160, 3)):
    yx = rng.uniform(0.0, 0.9, (2, 200, 2))
    hw = np.exp(rng.uniform(np.log(0.002), np.log(1.0), (2, 200, 2)))
    boxes = np.concatenate([yx, np.minimum(yx + hw, 1.0)], -1).astype(np.float32)
    for unit in range(num_levels):
      got = multilevel_crop.fpn_feature_levels(boxes, image_h, image_w, num_levels, unit).numpy()
      want = _np_levels(boxes.astype(np.float64), image_h, image_w, num_levels, unit)
      # float32 vs float64 can only disagree right at a power-of-two boundary
      mismatch = got != want
      assert mismatch.mean() < 0.01, (image_h, image_w, unit)
      assert set(np.unique(got)) <= set(range(num_levels))


def test_degenerate_boxes_go_to_the_finest_level():
  boxes = tf.constant([[[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0], [0.3, 0.3, 0.2, 0.9]]])
  assert multilevel_crop.fpn_feature_levels(boxes, 640, 640, 5).numpy().tolist() == [[0, 0, 0]]


def _pyramid(batch, image_h, image_w, min_level, num_levels, depth, seed=0):
  maps = []
  for index in range(num_levels):
    stride = 2 ** (min_level + index)
    shape = [batch, -(-image_h // stride), -(-image_w // stride), depth]
    maps.append(tf.random.stateless_normal(shape, [seed, index]))
  return maps


def test_multilevel_crop_equals_per_level_crop_and_pool():
  image_h, image_w, min_level = 256, 192, 2
  maps = _pyramid(2, image_h, image_w, min_level, 4, 5)
  rng = np.random.default_rng(0)
  sizes = np.array([[8, 40, 70, 130, 200, 250], [16, 60, 100, 150, 180, 30]], np.float32)
  yx = rng.uniform(0, 0.3, (2, 6, 2)).astype(np.float32)
  hw = np.stack([sizes / image_h, sizes / image_w], -1) * 0.7
  boxes = np.concatenate([yx, yx + hw], -1).astype(np.float32)
  got = multilevel_crop.multilevel_crop_and_pool(maps, boxes, 6, 2, 2, min_level,
                                                 unit_scale_index=3).numpy()
  assert got.shape == (12, 3, 3, 5)
  levels = multilevel_crop.fpn_feature_levels(boxes, image_h, image_w, 4, 3).numpy()
  assert len(np.unique(levels)) >= 3  # the case really spans several levels
  for level in range(4):
    want = crop_ops.crop_and_pool(maps[level], boxes, 6, 2, 2).numpy()
    chosen = levels.reshape(-1) == level
    np.testing.assert_allclose(got[chosen], want[chosen], rtol=1e-5, atol=1e-6)


def test_multilevel_crop_gradients_reach_only_the_levels_used():
  maps = _pyramid(1, 128, 128, 2, 3, 4)
  boxes = tf.constant([[[0.0, 0.0, 0.2, 0.2], [0.1, 0.1, 0.3, 0.3]]])  # 25 px boxes -> level 0
  variables = [tf.Variable(m) for m in maps]
  with tf.GradientTape() as tape:
    crops = multilevel_crop.multilevel_crop_and_pool(variables, boxes, 4, 1, 1, 2)
    total = tf.reduce_sum(crops)
  grads = tape.gradient(total, variables)
  assert float(tf.reduce_sum(tf.abs(grads[0]))) > 0.0
  for grad in grads[1:]:
    assert grad is None or float(tf.reduce_sum(tf.abs(grad))) == 0.0


def test_multilevel_crop_of_one_map_is_crop_and_pool_and_works_in_tf_function():
  feature = tf.random.stateless_normal([2, 16, 16, 3], [1, 2])
  boxes = tf.random.stateless_uniform([2, 5, 4], [3, 4]) * 0.5
  boxes = tf.concat([boxes[..., :2], boxes[..., :2] + 0.3], -1)
  want = crop_ops.crop_and_pool(feature, boxes, 7, 2, 2).numpy()
  got = multilevel_crop.multilevel_crop_and_pool([feature], boxes, 7, 2, 2, 4).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-6)

  maps = _pyramid(2, 64, 64, 2, 3, 3)
  fn = tf.function(lambda m, b: multilevel_crop.multilevel_crop_and_pool(m, b, 4, 1, 1, 2))
  eager = multilevel_crop.multilevel_crop_and_pool(maps, boxes, 4, 1, 1, 2).numpy()
  np.testing.assert_allclose(fn(maps, boxes).numpy(), eager, rtol=1e-6)


def test_pyramid_levels_must_share_the_depth():
  maps = [tf.zeros([1, 8, 8, 4]), tf.zeros([1, 4, 4, 3])]
  try:
    multilevel_crop.multilevel_crop_and_pool(maps, tf.zeros([1, 1, 4]), 2, 1, 1, 2)
  except ValueError as error:
    assert 'same depth' in str(error)
  else:
    raise AssertionError('expected a ValueError')
