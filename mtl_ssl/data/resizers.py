"""Image resizers built from the ImageResizer proto (OD API semantics).

`build(config)` returns fn(image [H, W, 3] float32) -> (resized [h, w, 3] float32, true_shape
int32 [3]). Boxes are normalized w.r.t. the true (unpadded) image, so resizing never changes them.
The same function serves the input pipeline and the model's `preprocess` (serving).

Padding: keep_aspect_ratio_resizer with pad_to_max_dimension pads (zeros, bottom/right) to
[max_dimension, max_dimension] as the OD API does: fully static shapes (TPU, XLA). Without it the
input pipeline does not pad a batch of one image (the original TF1 setting: no pixel is wasted) and
pads a larger batch only to its largest image, rounded up to a multiple of PAD_MULTIPLE
(`padded_shape` returns None then). fixed_shape_resizer is static [height, width].
"""
import tensorflow as tf

from mtl_ssl.config.support import SUPPORTED_IMAGE_RESIZERS

_METHODS = {
    0: tf.image.ResizeMethod.BILINEAR,
    1: tf.image.ResizeMethod.NEAREST_NEIGHBOR,
    2: tf.image.ResizeMethod.BICUBIC,
    3: tf.image.ResizeMethod.AREA,
}


def _which(image_resizer_config):
  which = image_resizer_config.WhichOneof('image_resizer_oneof')
  if which not in SUPPORTED_IMAGE_RESIZERS:
    raise ValueError(f'image_resizer: {which or "nothing"} is set; supported: '
                     f'{", ".join(SUPPORTED_IMAGE_RESIZERS)} (batches need a static padded shape)')
  return which, getattr(image_resizer_config, which)


def _check(which, config):
  if config.convert_to_grayscale:
    raise ValueError(f'image_resizer.{which}.convert_to_grayscale is not supported (the '
                     'backbones take 3-channel images)')
  if config.resize_method not in _METHODS:
    raise ValueError(f'image_resizer.{which}.resize_method {config.resize_method} is unknown')
  if which == 'keep_aspect_ratio_resizer':
    if list(getattr(config, 'per_channel_pad_value', [])):
      raise ValueError('image_resizer.keep_aspect_ratio_resizer.per_channel_pad_value is not '
                       'supported: padding is zeros after normalization')
    if config.min_dimension < 1 or config.max_dimension < config.min_dimension:
      raise ValueError('image_resizer.keep_aspect_ratio_resizer needs 1 <= min_dimension <= '
                       f'max_dimension, got {config.min_dimension}, {config.max_dimension}')
  elif config.height < 1 or config.width < 1:
    raise ValueError('image_resizer.fixed_shape_resizer needs height, width >= 1, got '
                     f'{config.height}, {config.width}')


def keep_aspect_ratio_size(height, width, min_dimension, max_dimension):
  """OD API resize_to_range size: short side -> min_dimension unless the long side would exceed
  max_dimension, then long side -> max_dimension. Returns int32 [2] (new height, new width)."""
  height = tf.cast(height, tf.float32)
  width = tf.cast(width, tf.float32)
  large_scale = min_dimension / tf.minimum(height, width)
  large = tf.cast(tf.round(tf.stack([height, width]) * large_scale), tf.int32)
  small_scale = max_dimension / tf.maximum(height, width)
  small = tf.cast(tf.round(tf.stack([height, width]) * small_scale), tf.int32)
  # Rounding can push the long side one pixel past max_dimension on the small branch: clamp.
  small = tf.minimum(tf.maximum(small, 1), max_dimension)
  return tf.where(tf.reduce_max(large) > max_dimension, small, large)


# Batches of unpadded-resizer images are padded up to a multiple of this (fewer distinct shapes
# for kernels that cache per shape; a multiple of every feature stride used here).
PAD_MULTIPLE = 32


def padded_shape(image_resizer_config):
  """(H, W) every image is zero-padded to, or None when the size varies per batch
  (keep_aspect_ratio_resizer without pad_to_max_dimension)."""
  which, config = _which(image_resizer_config)
  if which == 'keep_aspect_ratio_resizer':
    if not config.pad_to_max_dimension:
      return None
    return (int(config.max_dimension), int(config.max_dimension))
  return (int(config.height), int(config.width))


def build(image_resizer_config, pad=True):
  """fn(image [H, W, 3]) -> (resized [h, w, 3] float32, true_shape int32 [3]).

  pad=True keeps the OD API output (padded to [max, max] when pad_to_max_dimension); the input
  pipeline uses pad=False and pads itself after the model's normalization.
  """
  which, config = _which(image_resizer_config)
  _check(which, config)
  method = _METHODS[config.resize_method]

  if which == 'fixed_shape_resizer':
    size = (int(config.height), int(config.width))

    def resize_fixed(image):
      image = tf.convert_to_tensor(image)
      resized = tf.image.resize(tf.cast(image, tf.float32), size, method=method)
      return resized, tf.constant([size[0], size[1], 3], tf.int32)

    return resize_fixed

  min_dim = int(config.min_dimension)
  max_dim = int(config.max_dimension)
  pad_to_max = bool(config.pad_to_max_dimension) and pad

  def resize_keep_aspect(image):
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    new_size = keep_aspect_ratio_size(shape[0], shape[1], min_dim, max_dim)
    resized = tf.image.resize(tf.cast(image, tf.float32), new_size, method=method)
    true_shape = tf.concat([new_size, [3]], 0)
    if pad_to_max:
      resized = tf.image.pad_to_bounding_box(resized, 0, 0, max_dim, max_dim)
    else:
      resized.set_shape([None, None, 3])
    return resized, true_shape

  return resize_keep_aspect
