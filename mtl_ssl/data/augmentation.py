"""Training data augmentation from `train_config.data_augmentation_options` (OD API semantics).

Every step is stateless-random: it takes an int64 [2] seed (the per-element seed of the input
pipeline, folded with the step's position), so a seeded pipeline is reproducible whatever the
parallelism, and each epoch draws new values. Images are float32 in 0..255 (as in the OD API
preprocessor); boxes are normalized [ymin, xmin, ymax, xmax]; `box_fields` are per-box [n] tensors
(classes, difficult, ...) kept or dropped together with their boxes. Augmentation runs before the
MTL labels are made, so windows, closeness and foreground labels always match the augmented image.
"""
import tensorflow as tf

# The one list of supported step names lives with the config validation (no TF import there).
from mtl_ssl.config.support import SUPPORTED_AUGMENTATIONS


def _get(message, name, default):
  """A proto field's value (its proto default when unset), or `default` if our proto lacks it."""
  if name in message.DESCRIPTOR.fields_by_name:
    return getattr(message, name)
  return default


def _uniform(seed, minval, maxval):
  return tf.random.stateless_uniform([], seed, minval=minval, maxval=maxval, dtype=tf.float32)


def flip_boxes_left_right(boxes):
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
  return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1)


def random_horizontal_flip(image, boxes, box_fields, seed, config):
  probability = float(_get(config, 'probability', 0.5))
  do_flip = _uniform(seed, 0.0, 1.0) < probability
  image = tf.cond(do_flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
  boxes = tf.cond(do_flip, lambda: flip_boxes_left_right(boxes), lambda: boxes)
  return image, boxes, box_fields


def crop_to_window(boxes, box_fields, window, overlap_thresh, clip_boxes=True):
  """OD API crop box semantics: drop boxes completely outside the window or with less than
  `overlap_thresh` of their area inside it; the rest move to the window's frame, clipped."""
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
  wy0, wx0, wy1, wx1 = tf.unstack(window)
  outside = (ymin >= wy1) | (xmin >= wx1) | (ymax <= wy0) | (xmax <= wx0)
  inter = (tf.maximum(tf.minimum(ymax, wy1) - tf.maximum(ymin, wy0), 0.0)
           * tf.maximum(tf.minimum(xmax, wx1) - tf.maximum(xmin, wx0), 0.0))
  area = (ymax - ymin) * (xmax - xmin)
  ioa = tf.math.divide_no_nan(inter, area)
  keep = ~outside & (ioa >= overlap_thresh)
  boxes = tf.boolean_mask(boxes, keep)
  height, width = wy1 - wy0, wx1 - wx0
  boxes = (boxes - tf.stack([wy0, wx0, wy0, wx0])) / tf.stack([height, width, height, width])
  if clip_boxes:
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
  return boxes, {key: tf.boolean_mask(value, keep) for key, value in box_fields.items()}


def random_crop_image(image, boxes, box_fields, seed, config):
  min_ar = float(_get(config, 'min_aspect_ratio', 0.75))
  max_ar = float(_get(config, 'max_aspect_ratio', 1.33))
  min_area = float(_get(config, 'min_area', 0.1))
  max_area = float(_get(config, 'max_area', 1.0))
  min_covered = float(_get(config, 'min_object_covered', 1.0))
  overlap_thresh = float(_get(config, 'overlap_thresh', 0.3))
  clip_boxes = bool(_get(config, 'clip_boxes', True))
  random_coef = float(_get(config, 'random_coef', 0.0))
  crop_seed, coef_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))

  def crop():
    begin, size, window = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.clip_by_value(boxes, 0.0, 1.0)[None], seed=crop_seed,
        min_object_covered=min_covered, aspect_ratio_range=(min_ar, max_ar),
        area_range=(min_area, max_area), max_attempts=100, use_image_if_no_bounding_boxes=True)
    new_boxes, new_fields = crop_to_window(boxes, box_fields, window[0, 0], overlap_thresh,
                                           clip_boxes)
    return tf.slice(image, begin, size), new_boxes, new_fields

  if random_coef <= 0.0:
    return crop()
  keep_original = _uniform(coef_seed, 0.0, 1.0) < random_coef
  return tf.cond(keep_original, lambda: (image, boxes, box_fields), crop)


def random_scale_crop_and_pad_to_square(image, boxes, box_fields, seed, config):
  """OD API semantics: scale so the long side is output_size * U(scale_min, scale_max), take a
  random output_size square crop (when larger), zero-pad to the square. The padding becomes part
  of the image: boxes are normalized w.r.t. the square output; boxes left outside are dropped."""
  output_size = int(_get(config, 'output_size', 512))
  scale_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  scale = _uniform(scale_seed, float(_get(config, 'scale_min', 0.1)),
                   float(_get(config, 'scale_max', 2.0)))
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scaled = tf.maximum(tf.cast(scale * output_size * shape / tf.reduce_max(shape), tf.int32), 1)
  offsets = tf.cast(tf.cast(tf.maximum(scaled - output_size, 0), tf.float32)
                    * tf.stack([_uniform(y_seed, 0.0, 1.0), _uniform(x_seed, 0.0, 1.0)]), tf.int32)
  image = tf.image.resize(image, scaled)
  image = image[offsets[0]:offsets[0] + output_size, offsets[1]:offsets[1] + output_size, :]
  image = tf.image.pad_to_bounding_box(image, 0, 0, output_size, output_size)
  window = tf.cast(tf.concat([offsets, offsets + output_size], 0), tf.float32)
  window /= tf.cast(tf.concat([scaled, scaled], 0), tf.float32)
  wy0, wx0, wy1, wx1 = tf.unstack(window)
  boxes = (boxes - tf.stack([wy0, wx0, wy0, wx0])) / tf.stack(
      [wy1 - wy0, wx1 - wx0, wy1 - wy0, wx1 - wx0])
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
  keep = (ymin < 1.0) & (xmin < 1.0) & (ymax > 0.0) & (xmax > 0.0)
  boxes = tf.clip_by_value(tf.boolean_mask(boxes, keep), 0.0, 1.0)
  return image, boxes, {key: tf.boolean_mask(value, keep) for key, value in box_fields.items()}


def _photometric(adjust):
  """Wraps adjust(image in 0..1, value) -> image into a step on 0..255 images, clipped."""
  def step(image, boxes, box_fields, seed, value):
    image = tf.clip_by_value(adjust(image / 255.0, value) * 255.0, 0.0, 255.0)
    return image, boxes, box_fields
  return step


_brightness = _photometric(tf.image.adjust_brightness)
_contrast = _photometric(tf.image.adjust_contrast)
_hue = _photometric(tf.image.adjust_hue)
_saturation = _photometric(tf.image.adjust_saturation)


def random_adjust_brightness(image, boxes, box_fields, seed, config):
  max_delta = float(_get(config, 'max_delta', 0.2))
  return _brightness(image, boxes, box_fields, seed, _uniform(seed, -max_delta, max_delta))


def random_adjust_contrast(image, boxes, box_fields, seed, config):
  factor = _uniform(seed, float(_get(config, 'min_delta', 0.8)),
                    float(_get(config, 'max_delta', 1.25)))
  return _contrast(image, boxes, box_fields, seed, factor)


def random_adjust_hue(image, boxes, box_fields, seed, config):
  max_delta = float(_get(config, 'max_delta', 0.02))
  return _hue(image, boxes, box_fields, seed, _uniform(seed, -max_delta, max_delta))


def random_adjust_saturation(image, boxes, box_fields, seed, config):
  factor = _uniform(seed, float(_get(config, 'min_delta', 0.8)),
                    float(_get(config, 'max_delta', 1.25)))
  return _saturation(image, boxes, box_fields, seed, factor)


def random_rgb_to_gray(image, boxes, box_fields, seed, config):
  probability = float(_get(config, 'probability', 0.1))
  gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
  image = tf.cond(_uniform(seed, 0.0, 1.0) < probability, lambda: gray, lambda: image)
  return image, boxes, box_fields


_STEPS = {
    'random_horizontal_flip': random_horizontal_flip,
    'random_crop_image': random_crop_image,
    'random_scale_crop_and_pad_to_square': random_scale_crop_and_pad_to_square,
    'random_adjust_brightness': random_adjust_brightness,
    'random_adjust_contrast': random_adjust_contrast,
    'random_adjust_hue': random_adjust_hue,
    'random_adjust_saturation': random_adjust_saturation,
    'random_rgb_to_gray': random_rgb_to_gray,
}
if set(_STEPS) != set(SUPPORTED_AUGMENTATIONS):
  raise ImportError('mtl_ssl.config.support.SUPPORTED_AUGMENTATIONS and augmentation._STEPS '
                    f'disagree: {sorted(set(_STEPS) ^ set(SUPPORTED_AUGMENTATIONS))}')


def build(data_augmentation_options):
  """fn(image, boxes, box_fields, seed) -> (image, boxes, box_fields), or None without steps.

  Raises ValueError naming the option for a step that is not supported (never skipped silently).
  """
  steps = []
  for index, option in enumerate(data_augmentation_options):
    name = option.WhichOneof('preprocessing_step')
    if name not in _STEPS:
      raise ValueError(f'train_config.data_augmentation_options[{index}]: {name or "empty step"} '
                       f'is not supported; supported: {", ".join(SUPPORTED_AUGMENTATIONS)}')
    steps.append((_STEPS[name], getattr(option, name)))
  if not steps:
    return None

  def augment(image, boxes, box_fields, seed):
    seed = tf.cast(seed, tf.int64)
    for index, (step, config) in enumerate(steps):
      step_seed = tf.random.experimental.stateless_fold_in(seed, index)
      image, boxes, box_fields = step(image, boxes, box_fields, step_seed, config)
    return image, boxes, box_fields

  return augment
