"""Small helpers shared by the train, eval and export code: classes and categories of a config,
compiled step functions."""
from absl import logging
import tensorflow as tf

from mtl_ssl.data import label_map_util
from mtl_ssl.data.fields import InputDataFields as fields


def num_classes(model_config):
  kind = model_config.WhichOneof('model')
  if kind is None:
    raise ValueError('model: no meta-architecture set (e.g. model { faster_rcnn { ... } })')
  return int(getattr(model_config, kind).num_classes)


def categories(input_config, model_config):
  """[{'id', 'name'}] from the input's label map; '1'..'num_classes' when it has none."""
  if input_config is not None and input_config.label_map_path:
    return label_map_util.create_categories_from_labelmap(input_config.label_map_path)
  return [{'id': i, 'name': str(i)} for i in range(1, num_classes(model_config) + 1)]


def category_index(input_config, model_config):
  return label_map_util.create_category_index(categories(input_config, model_config))


def _image_size_relaxed_specs(args):
  """TensorSpecs of args (dicts of tensors, e.g. (features, labels)) with the height and width
  of the image tensors ('image' / 'original_image', [B, H, W, C]) left open, all else as given."""
  image_keys = (fields.image, fields.original_image)

  def spec(key, tensor):
    shape = tensor.shape.as_list()
    if key in image_keys and len(shape) == 4:
      shape = [shape[0], None, None, shape[3]]
    return tf.TensorSpec(shape, tensor.dtype)

  return [{key: spec(key, value) for key, value in arg.items()} for arg in args]


class GraphFunction:
  """tf.function of `fn` traced WITHOUT AutoGraph first: the detector is plain TF code, and
  skipping the AutoGraph conversion of every model function makes the (slow, one-off) trace of
  a train step several times faster. Code that does need AutoGraph (Python control flow on
  tensors) fails to trace that way; it is then traced again with AutoGraph.

  relax_image_size: called with tensors, trace once for any image height and width (unpadded
  keep-aspect inputs change size every batch; a trace per size would take seconds each) while
  the batch size and the other shapes stay static.
  """

  def __init__(self, fn, relax_image_size=False):
    self._fn = fn
    self._relax = relax_image_size
    self._function = tf.function(fn, autograph=False)
    self._with_autograph = False

  def _call(self, args, kwargs):
    if self._relax and not kwargs and all(isinstance(arg, dict) for arg in args):
      concrete = self._function.get_concrete_function(*_image_size_relaxed_specs(args))
      return concrete(*args)
    return self._function(*args, **kwargs)

  def __call__(self, *args, **kwargs):
    try:
      return self._call(args, kwargs)
    except tf.errors.OperatorNotAllowedInGraphError:
      if self._with_autograph:
        raise
      logging.warning('tracing %s without AutoGraph failed; tracing it with AutoGraph',
                      getattr(self._fn, '__name__', self._fn))
      self._with_autograph = True
      self._function = tf.function(self._fn)
      return self._call(args, kwargs)
