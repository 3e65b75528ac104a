"""Small helpers shared by the train, eval and export code: classes and categories of a config,
compiled step functions."""
from absl import logging
import tensorflow as tf

from mtl_ssl.data import label_map_util


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


class GraphFunction:
  """tf.function of `fn` traced WITHOUT AutoGraph first: the detector is plain TF code, and
  skipping the AutoGraph conversion of every model function makes the (slow, one-off) trace of
  a train step several times faster. Code that does need AutoGraph (Python control flow on
  tensors) fails to trace that way; it is then traced again with AutoGraph."""

  def __init__(self, fn):
    self._fn = fn
    self._function = tf.function(fn, autograph=False)
    self._with_autograph = False

  def __call__(self, *args, **kwargs):
    try:
      return self._function(*args, **kwargs)
    except tf.errors.OperatorNotAllowedInGraphError:
      if self._with_autograph:
        raise
      logging.warning('tracing %s without AutoGraph failed; tracing it with AutoGraph',
                      getattr(self._fn, '__name__', self._fn))
      self._with_autograph = True
      self._function = tf.function(self._fn)
      return self._function(*args, **kwargs)
