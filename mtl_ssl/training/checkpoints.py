"""Checkpoints: naming by global step, resume, fine-tune restore, stop on SIGTERM.

Training checkpoints are tf.train.Checkpoint(step=..., model=..., optimizer=...) written by a
CheckpointManager as <model_dir>/ckpt-<global step>, so evaluation can read the step back
('step' is a direct child of the root).
"""
import logging
import re
import signal
import threading

import tensorflow as tf

FINE_TUNE_TYPES = ('classification', 'detection', 'full')
KERAS_WEIGHT_SUFFIXES = ('.h5', '.hdf5', '.keras')
CLASSIFICATION_ROOT = 'feature_extractor'  # tf.train.Checkpoint(feature_extractor=application)


def checkpoint_step(path):
  """Global step stored in a checkpoint ('step' variable, else the ckpt-<n> suffix)."""
  reader = tf.train.load_checkpoint(path)
  key = 'step/.ATTRIBUTES/VARIABLE_VALUE'
  if reader.has_tensor(key):
    return int(reader.get_tensor(key))
  match = re.search(r'-(\d+)$', path)
  if match:
    return int(match.group(1))
  raise ValueError(f'checkpoint {path} has no step variable and no -<step> suffix')


def is_object_based(path):
  try:
    return tf.train.load_checkpoint(path).has_tensor('_CHECKPOINTABLE_OBJECT_GRAPH')
  except (tf.errors.NotFoundError, ValueError):
    return False


def resolve_checkpoint(path, field):
  """A checkpoint prefix from a prefix or a directory; clear error naming `field` if none."""
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise ValueError(f'{field}: no checkpoint found in directory {path}')
    return latest
  if not tf.io.gfile.exists(path + '.index'):
    raise ValueError(f'{field}: checkpoint {path} not found (no {path}.index)')
  return path


def _has_root(path, name):
  """True when the object-based checkpoint at path has a top-level object `name`."""
  prefix = name + '/'
  return any(key.startswith(prefix) for key, _ in tf.train.list_variables(path))


def fine_tune_type(train_config):
  kind = train_config.fine_tune_checkpoint_type
  if not kind:
    kind = 'detection' if train_config.from_detection_checkpoint else 'classification'
  if kind not in FINE_TUNE_TYPES:
    raise ValueError(f'train_config.fine_tune_checkpoint_type {kind!r} is not one of '
                     f'{FINE_TUNE_TYPES}')
  return kind


def _share_second_stage_init(model, kind):
  """mtl.share_second_stage_init: the auxiliary stage copies restart from the main stage's
  restored weights ('full' checkpoints carry the copies themselves, so they are kept)."""
  heads = getattr(model, 'mtl_heads', None)
  if heads is not None and kind != 'full':
    heads.copy_main_stage_weights(only_if_built=True)


def restore_fine_tune_checkpoint(model, train_config):
  """Loads train_config.fine_tune_checkpoint into the (already built) model.

  'detection' / 'full' / 'classification' TF2 object-based checkpoints: the model chooses which
  of its parts take part (model.restore_from_objects) and every one of them must be found in
  the checkpoint. 'classification' also accepts the weights of the Keras application itself,
  loaded by the feature extractor: 'imagenet' (download), a .h5 file, or a TF checkpoint of
  the application without a `feature_extractor` root (`model.save_weights(prefix)`,
  `tf.train.Checkpoint(model=application)`), so training needs no network. After a
  classification restore, every copy of the box-classifier stage (the MTL heads') starts from
  the same weights as the main one.
  """
  kind = fine_tune_type(train_config)
  source = train_config.fine_tune_checkpoint
  extractor = getattr(model, 'feature_extractor', None)
  if kind == 'classification' and (source == 'imagenet' or
                                   source.lower().endswith(KERAS_WEIGHT_SUFFIXES)):
    extractor.load_classification_weights(source)
    _share_second_stage_init(model, kind)
    logging.info('Fine-tuning from classification weights %s', source)
    return source
  path = resolve_checkpoint(source, 'train_config.fine_tune_checkpoint')
  if not is_object_based(path):
    raise ValueError(f'train_config.fine_tune_checkpoint {path} is not an object-based (TF2) '
                     'checkpoint; TF1 name-based checkpoints (fine_tune_checkpoint_version V1) '
                     'cannot be restored into this Keras model')
  if kind == 'classification' and not _has_root(path, CLASSIFICATION_ROOT):
    # a TF checkpoint of the Keras application itself (model.save_weights(prefix), or
    # tf.train.Checkpoint(<other name>=model)): the extractor maps it layer by layer
    extractor.load_classification_weights(path)
    _share_second_stage_init(model, kind)
    logging.info('Fine-tuning from the classification checkpoint %s', path)
    return path
  objects = model.restore_from_objects(kind)
  status = tf.train.Checkpoint(**objects).read(path)  # read: also checkpoints from write()
  status.assert_existing_objects_matched()
  status.expect_partial()
  if kind == 'classification' and hasattr(extractor, 'propagate_main_box_classifier_weights'):
    extractor.propagate_main_box_classifier_weights()
  _share_second_stage_init(model, kind)
  logging.info('Fine-tuning from %s (%s: %s)', path, kind, ', '.join(sorted(objects)))
  return path


class GracefulStop:
  """Context manager: SIGTERM sets `requested` instead of killing the process, so the training
  loop can save a checkpoint and return. A no-op outside the main thread."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def _handle(self, signum, frame):
    del frame
    logging.warning('Signal %d received: saving a checkpoint and stopping.', signum)
    self.requested = True

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False
