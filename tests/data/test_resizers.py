"""Resizers: OD API sizes, padding, and boxes staying on their drawn rectangles."""
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

import input_records as ir
from mtl_ssl.data import resizers
from mtl_ssl.protos import image_resizer_pb2


def _config(text):
  return text_format.Parse(text, image_resizer_pb2.ImageResizer())


def _reference_size(h, w, min_dim, max_dim):
  """numpy restatement of the OD API resize_to_range rule."""
  scale = min_dim / min(h, w)
  large = (int(np.round(h * scale)), int(np.round(w * scale)))
  if max(large) <= max_dim:
    return large
  scale = max_dim / max(h, w)
  return (int(np.round(h * scale)), int(np.round(w * scale)))


@pytest.mark.parametrize('shape,expected', [
    ((375, 500), (600, 800)),     # VOC-like: short side to 600
    ((100, 1000), (102, 1024)),   # long side capped at 1024
    ((600, 1024), (600, 1024)),   # already right
    ((50, 40), (750, 600)),       # upscaling
])
def test_keep_aspect_ratio_sizes_match_the_od_api_rule(shape, expected):
  assert _reference_size(*shape, 600, 1024) == expected
  size = resizers.keep_aspect_ratio_size(shape[0], shape[1], 600, 1024).numpy()
  assert tuple(size) == expected


def test_keep_aspect_ratio_random_shapes_against_reference():
  rng = np.random.default_rng(0)
  for h, w in rng.integers(10, 2000, size=(40, 2)):
    got = tuple(resizers.keep_aspect_ratio_size(int(h), int(w), 600, 1024).numpy())
    assert got == _reference_size(int(h), int(w), 600, 1024), (h, w)


def test_keep_aspect_ratio_returns_true_shape_and_pads_to_max_when_asked():
  config = _config('keep_aspect_ratio_resizer { min_dimension: 20 max_dimension: 32 '
                   'pad_to_max_dimension: true }')
  image = tf.fill([10, 15, 3], 7.0)
  padded, true_shape = resizers.build(config)(image)
  assert padded.shape == (32, 32, 3)
  np.testing.assert_array_equal(true_shape.numpy(), [20, 30, 3])
  np.testing.assert_allclose(padded.numpy()[:20, :30], 7.0)
  assert np.all(padded.numpy()[20:] == 0) and np.all(padded.numpy()[:, 30:] == 0)
  unpadded, _ = resizers.build(config, pad=False)(image)
  assert unpadded.shape == (20, 30, 3)
  assert resizers.padded_shape(config) == (32, 32)


def test_no_padded_shape_without_pad_to_max_dimension():
  # The original trained unpadded: the size varies per image, batching pads (if at all).
  config = _config('keep_aspect_ratio_resizer { min_dimension: 20 max_dimension: 32 }')
  assert resizers.padded_shape(config) is None
  resized, true_shape = resizers.build(config)(tf.zeros([10, 15, 3]))
  assert resized.shape == (20, 30, 3)
  np.testing.assert_array_equal(true_shape.numpy(), [20, 30, 3])


def test_fixed_shape_resizer():
  config = _config('fixed_shape_resizer { height: 12 width: 20 }')
  resized, true_shape = resizers.build(config)(tf.zeros([30, 7, 3], tf.uint8))
  assert resized.shape == (12, 20, 3) and resized.dtype == tf.float32
  np.testing.assert_array_equal(true_shape.numpy(), [12, 20, 3])
  assert resizers.padded_shape(config) == (12, 20)


def test_nearest_neighbor_keeps_pixel_values():
  config = _config('fixed_shape_resizer { height: 8 width: 8 resize_method: NEAREST_NEIGHBOR }')
  image = tf.constant(np.arange(16 * 3, dtype=np.float32).reshape(4, 4, 3))
  resized, _ = resizers.build(config)(image)
  np.testing.assert_array_equal(resized.numpy()[::2, ::2], image.numpy())


@pytest.mark.parametrize('text', [
    'keep_aspect_ratio_resizer { min_dimension: 48 max_dimension: 64 }',
    'keep_aspect_ratio_resizer { min_dimension: 48 max_dimension: 64 pad_to_max_dimension: true }',
    'fixed_shape_resizer { height: 50 width: 30 }',
])
def test_drawn_rectangles_stay_under_their_normalized_boxes(text):
  boxes = np.array([[0.1, 0.1, 0.45, 0.5], [0.5, 0.55, 0.95, 0.9]])
  image = ir.draw(37, 53, boxes)
  resized, true_shape = resizers.build(_config(text))(tf.constant(image))
  resized = resized.numpy()
  h, w = true_shape.numpy()[:2]
  for i, (ymin, xmin, ymax, xmax) in enumerate(boxes):
    # the inside of the box, one pixel in from each edge (bilinear blends the border pixels)
    inside = resized[int(np.ceil(ymin * h)) + 1:int(ymax * h) - 1,
                     int(np.ceil(xmin * w)) + 1:int(xmax * w) - 1]
    assert inside.size > 0
    np.testing.assert_allclose(inside.reshape(-1, 3).mean(0), ir.COLORS[i], atol=2.0)
    # and just outside the box it is the background
    row = min(int(np.ceil(ymax * h)) + 1, h - 1)
    if row < h - 1:
      np.testing.assert_allclose(resized[row, int((xmin + xmax) / 2 * w)], ir.BACKGROUND, atol=2.0)


@pytest.mark.parametrize('text,field', [
    ('', 'nothing'),
    ('identity_resizer {}', 'identity_resizer'),
    ('fixed_shape_resizer { convert_to_grayscale: true }', 'convert_to_grayscale'),
    ('keep_aspect_ratio_resizer { min_dimension: 100 max_dimension: 50 }', 'max_dimension'),
    ('keep_aspect_ratio_resizer { per_channel_pad_value: 1 }', 'per_channel_pad_value'),
])
def test_unsupported_configs_name_the_field(text, field):
  with pytest.raises(ValueError, match=field):
    resizers.build(_config(text))
