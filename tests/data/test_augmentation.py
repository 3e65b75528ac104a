"""Augmentation steps: boxes follow the image (drawn rectangles), OD API crop semantics, ranges."""
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

import input_records as ir
from mtl_ssl.data import augmentation
from mtl_ssl.protos import preprocessor_pb2, train_pb2


def _build(text):
  config = text_format.Parse(text, train_pb2.TrainConfig())
  return augmentation.build(config.data_augmentation_options)


def _run(text, image, boxes, seed=(1, 2), fields=None):
  augment = _build(text)
  boxes = tf.constant(np.asarray(boxes, np.float32).reshape(-1, 4))
  if fields is None:
    fields = {'classes': tf.range(tf.shape(boxes)[0], dtype=tf.int32)}
  out = augment(tf.constant(image, tf.float32), boxes, fields, tf.constant(seed, tf.int64))
  return out[0].numpy(), out[1].numpy(), {k: v.numpy() for k, v in out[2].items()}


def _assert_boxes_on_their_colors(image, boxes, ids):
  """Each box's inside (one pixel in from its edges) shows the colour of the box it came from."""
  h, w = image.shape[:2]
  for box, i in zip(boxes, ids):
    ymin, xmin, ymax, xmax = box
    inside = image[int(np.ceil(ymin * h)) + 1:int(ymax * h) - 1,
                   int(np.ceil(xmin * w)) + 1:int(xmax * w) - 1]
    if inside.size:
      np.testing.assert_allclose(inside.reshape(-1, 3).mean(0), ir.COLORS[i], atol=3.0)


BOXES = np.array([[0.1, 0.05, 0.4, 0.3], [0.5, 0.6, 0.9, 0.95], [0.2, 0.4, 0.7, 0.6]])


def test_supported_names_are_steps_of_the_proto():
  steps = preprocessor_pb2.PreprocessingStep.DESCRIPTOR.oneofs_by_name['preprocessing_step']
  names = {field.name for field in steps.fields}
  assert set(augmentation.SUPPORTED_AUGMENTATIONS) <= names


def test_horizontal_flip_always_and_never():
  image = ir.draw(30, 40, BOXES)
  flipped, boxes, fields = _run('data_augmentation_options { random_horizontal_flip { '
                                'probability: 1.0 } }', image, BOXES)
  np.testing.assert_array_equal(flipped, image[:, ::-1])
  expected = np.stack([BOXES[:, 0], 1 - BOXES[:, 3], BOXES[:, 2], 1 - BOXES[:, 1]], 1)
  np.testing.assert_allclose(boxes, expected, atol=1e-6)
  np.testing.assert_array_equal(fields['classes'], [0, 1, 2])
  _assert_boxes_on_their_colors(flipped, boxes, fields['classes'])
  same, boxes, _ = _run('data_augmentation_options { random_horizontal_flip { probability: 0.0 } }',
                        image, BOXES)
  np.testing.assert_array_equal(same, image)
  np.testing.assert_allclose(boxes, BOXES, atol=1e-7)


def test_horizontal_flip_default_probability_is_about_half_and_seeded():
  image = np.zeros([2, 2, 3])
  image[:, 0] = 255
  text = 'data_augmentation_options { random_horizontal_flip {} }'
  flips = [_run(text, image, [], seed=(s, 0))[0][0, 0, 0] == 0 for s in range(200)]
  assert 70 < sum(flips) < 130
  again = [_run(text, image, [], seed=(s, 0))[0][0, 0, 0] == 0 for s in range(20)]
  assert again == flips[:20]


def test_crop_to_window_od_api_semantics():
  boxes = tf.constant([[0.0, 0.0, 0.2, 0.2],     # completely outside the window -> dropped
                       [0.4, 0.4, 0.6, 0.6],     # inside -> kept, moved
                       [0.1, 0.1, 0.55, 0.55],   # 1/9 of its area inside < 0.3 -> dropped
                       [0.45, 0.45, 0.9, 0.9]])  # 49/81 of it inside >= 0.3 -> kept, clipped
  fields = {'classes': tf.constant([1, 2, 3, 4])}
  window = tf.constant([0.4, 0.4, 0.8, 0.8])
  new_boxes, new_fields = augmentation.crop_to_window(boxes, fields, window, 0.3)
  np.testing.assert_array_equal(new_fields['classes'].numpy(), [2, 4])
  np.testing.assert_allclose(new_boxes.numpy(), [[0.0, 0.0, 0.5, 0.5], [0.125, 0.125, 1.0, 1.0]],
                             atol=1e-6)
  unclipped, _ = augmentation.crop_to_window(boxes, fields, window, 0.3, clip_boxes=False)
  np.testing.assert_allclose(unclipped.numpy()[1], [0.125, 0.125, 1.25, 1.25], atol=1e-6)


@pytest.mark.parametrize('seed', [(s, 7) for s in range(8)])
def test_random_crop_image_keeps_boxes_on_their_rectangles(seed):
  image = ir.draw(60, 80, BOXES)
  text = ('data_augmentation_options { random_crop_image { min_object_covered: 0.0 min_area: 0.3 '
          'overlap_thresh: 0.3 } }')
  cropped, boxes, fields = _run(text, image, BOXES, seed=seed)
  assert cropped.shape[0] <= 60 and cropped.shape[1] <= 80
  assert np.all((boxes >= 0) & (boxes <= 1))
  assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
  _assert_boxes_on_their_colors(cropped, boxes, fields['classes'])
  again = _run(text, image, BOXES, seed=seed)
  np.testing.assert_array_equal(again[0], cropped)


def test_random_crop_image_varies_with_the_seed_and_random_coef_one_keeps_the_image():
  image = ir.draw(60, 80, BOXES)
  text = 'data_augmentation_options { random_crop_image { min_object_covered: 0.0 min_area: 0.1 } }'
  shapes = {_run(text, image, BOXES, seed=(s, 1))[0].shape for s in range(10)}
  assert len(shapes) > 3
  kept, boxes, _ = _run('data_augmentation_options { random_crop_image { random_coef: 1.0 } }',
                        image, BOXES)
  np.testing.assert_array_equal(kept, image)
  np.testing.assert_allclose(boxes, BOXES, atol=1e-7)


def test_random_crop_image_without_boxes():
  cropped, boxes, fields = _run('data_augmentation_options { random_crop_image { min_area: 0.2 } }',
                                ir.draw(40, 40, []), [])
  assert boxes.shape == (0, 4) and fields['classes'].shape == (0,)
  assert cropped.shape[0] * cropped.shape[1] >= 0.19 * 1600


@pytest.mark.parametrize('seed', [(s, 3) for s in range(6)])
def test_random_scale_crop_and_pad_to_square(seed):
  image = ir.draw(30, 60, BOXES)
  text = ('data_augmentation_options { random_scale_crop_and_pad_to_square { output_size: 48 '
          'scale_min: 0.5 scale_max: 2.0 } }')
  out, boxes, fields = _run(text, image, BOXES, seed=seed)
  assert out.shape == (48, 48, 3)
  assert np.all((boxes >= 0) & (boxes <= 1))
  _assert_boxes_on_their_colors(out, boxes, fields['classes'])


def test_photometric_steps_keep_range_and_boxes():
  rng = np.random.default_rng(0)
  image = rng.uniform(20, 235, [8, 8, 3])
  for step in ('random_adjust_brightness { max_delta: 0.1 }', 'random_adjust_contrast {}',
               'random_adjust_hue {}', 'random_adjust_saturation {}'):
    for s in range(5):
      out, boxes, _ = _run(f'data_augmentation_options {{ {step} }}', image, BOXES, seed=(s, 0))
      assert out.min() >= 0 and out.max() <= 255
      np.testing.assert_array_equal(boxes, BOXES.astype(np.float32))
  # brightness: one delta in [-0.1, 0.1] * 255 added to every pixel (no clipping in this range)
  out, _, _ = _run('data_augmentation_options { random_adjust_brightness { max_delta: 0.05 } }',
                   image, BOXES, seed=(3, 4))
  delta = out - image
  np.testing.assert_allclose(delta, delta.flat[0], atol=1e-3)
  assert abs(delta.flat[0]) <= 0.05 * 255 + 1e-3
  # contrast: (x - mean) scaled by a factor in [0.8, 1.25] per channel
  out, _, _ = _run('data_augmentation_options { random_adjust_contrast {} }', image, BOXES)
  mean = image.mean(axis=(0, 1))
  factor = (out - out.mean(axis=(0, 1))) / (image - mean)
  assert 0.8 - 1e-3 <= np.median(factor) <= 1.25 + 1e-3


def test_rgb_to_gray():
  image = np.random.default_rng(1).uniform(0, 255, [6, 6, 3])
  out, _, _ = _run('data_augmentation_options { random_rgb_to_gray { probability: 1.0 } }',
                   image, [])
  np.testing.assert_allclose(out[..., 0], out[..., 1])
  np.testing.assert_allclose(out[..., 0], image @ [0.2989, 0.587, 0.114], atol=0.5)


def test_steps_run_in_config_order_with_distinct_seeds():
  image = ir.draw(30, 40, BOXES)
  text = ('data_augmentation_options { random_horizontal_flip { probability: 1.0 } } '
          'data_augmentation_options { random_horizontal_flip { probability: 1.0 } }')
  out, boxes, _ = _run(text, image, BOXES)
  np.testing.assert_array_equal(out, image)  # flipped twice
  np.testing.assert_allclose(boxes, BOXES, atol=1e-6)


def test_no_steps_builds_none_and_unsupported_steps_name_the_option():
  assert _build('') is None
  with pytest.raises(ValueError, match=r'data_augmentation_options\[1\]: random_jitter_boxes'):
    _build('data_augmentation_options { random_horizontal_flip {} } '
           'data_augmentation_options { random_jitter_boxes {} }')
