"""Reads ImageNet classification weights of a tf_keras.applications model.

The weights are loaded by Keras itself into a fresh blueprint of the same application
(same constructor arguments), then returned per blueprint layer position, so they can be
copied into our rebuilt sub-models whatever their layer names.

Sources:
  'imagenet'                 Keras' own download (needs network access; never in tests).
  path ending .h5 / .hdf5    `model.save_weights('x.h5')` of the application, with or
                             without the classification top (Keras' topological loading).
  TF checkpoint prefix/dir   `model.save_weights(prefix)` (TF format) of the application, or
                             `tf.train.Checkpoint(<any name>=model).write(prefix)`.
"""

import os

import tensorflow as tf

_H5_SUFFIXES = ('.h5', '.hdf5', '.keras')


def load_application_weights(make_application, source):
  """Returns {blueprint layer index: [numpy arrays]} for every layer that has weights.

  Args:
    make_application: callable(weights, include_top) -> the tf_keras.applications model
      with the extractor's own arguments (alpha, ...).
    source: 'imagenet', a Keras .h5 weights file, or a TF checkpoint prefix / directory.
  """
  if not isinstance(source, (str, os.PathLike)) or not str(source):
    raise ValueError(f'classification weights source must be "imagenet" or a path, got {source!r}')
  source = str(source)
  if source == 'imagenet':
    model = make_application(weights='imagenet', include_top=False)
  elif source.lower().endswith(_H5_SUFFIXES):
    model = _load_h5(make_application, source)
  else:
    model = _load_tf_checkpoint(make_application, source)
  return {index: layer.get_weights() for index, layer in enumerate(model.layers)
          if layer.weights}


def _load_h5(make_application, path):
  if not os.path.isfile(path):
    raise FileNotFoundError(f'classification weights file {path!r} does not exist')
  errors = []
  for include_top in (False, True):
    model = make_application(weights=None, include_top=include_top)
    try:
      model.load_weights(path)
      return model
    except ValueError as error:
      errors.append(f'include_top={include_top}: {error}')
  raise ValueError(f'classification weights file {path!r} does not fit the backbone '
                   f'{model.name!r}: ' + ' | '.join(errors))


def _load_tf_checkpoint(make_application, path):
  prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
  if not prefix or not tf.io.gfile.exists(prefix + '.index'):
    raise FileNotFoundError(f'no TF checkpoint at {path!r} (expected a prefix with a .index '
                            'file, a directory with a checkpoint, or a .h5 file)')
  keys = [name for name, _ in tf.train.list_variables(prefix)]
  roots = sorted({key.split('layer_with_weights-0/')[0] for key in keys
                  if 'layer_with_weights-0/' in key})
  if len(roots) != 1:
    raise ValueError(f'TF checkpoint {prefix!r} does not hold exactly one Keras model '
                     f'(model roots found: {roots})')
  model = make_application(weights=None, include_top=False)
  path_parts = [part for part in roots[0].split('/') if part]
  try:
    if not path_parts:
      status = model.load_weights(prefix)
    else:
      holder = model
      for part in reversed(path_parts[1:]):
        parent = tf.Module()
        setattr(parent, part, holder)
        holder = parent
      status = tf.train.Checkpoint(**{path_parts[0]: holder}).read(prefix)
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError) as error:  # missing objects or other shapes
    raise ValueError(f'TF checkpoint {prefix!r} does not fit the backbone {model.name!r}: '
                     f'{str(error)[:500]}') from error
  return model
