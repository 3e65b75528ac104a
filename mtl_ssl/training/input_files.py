"""Checks that the TFRecords and label maps of a run exist, before anything is built or written.

A missing file is the most common first error with your own data (a path relative to another
directory, a converter not run yet); the error names the reader (train_input_reader or
eval_input_reader[i]), the path and the current directory, and says how to make the data.
"""
import os

import tensorflow as tf

from mtl_ssl.config.errors import ConfigError

SCENES_PREFIX = 'scenes_'  # file names of mtl_ssl_make_scenes (scenes_train.record, ...)


def _readers(configs, kinds, eval_index):
  if 'train' in kinds:
    yield 'train_input_reader', configs['train_input_config']
  if 'eval' in kinds:
    for index, reader in enumerate(configs['eval_input_configs']):
      if eval_index is None or index == eval_index:
        yield f'eval_input_reader[{index}]', reader


def _hint(missing):
  scenes_dirs = sorted({os.path.dirname(path) or '.' for path in missing
                        if os.path.basename(path).startswith(SCENES_PREFIX)})
  here = f'relative paths are read from the current directory {os.getcwd()}'
  if scenes_dirs:
    commands = ' and '.join(f'`mtl_ssl_make_scenes --output_dir {d}`' for d in scenes_dirs)
    return (f'these are the built-in scenes data: make them with {commands} ({here}; see '
            'docs/getting_started.md)')
  return ('make the records with mtl_ssl_create_pascal_tf_record or mtl_ssl_create_coco_tf_record '
          f'(docs/getting_started.md, "Your own data"); {here}')


def problems(configs, kinds=('train', 'eval'), eval_index=None):
  """[(message, missing path)] for every input_path matching no file and every missing
  label_map_path of the readers of `kinds` ('train', 'eval'; only eval_index if given)."""
  found = []
  for name, reader in _readers(configs, kinds, eval_index):
    if reader.WhichOneof('input_reader') == 'tf_record_input_reader':
      for pattern in reader.tf_record_input_reader.input_path:
        if pattern and not tf.io.gfile.glob(pattern):
          found.append((f'{name}.tf_record_input_reader.input_path {pattern!r}: no such file',
                        pattern))
    path = reader.label_map_path
    if path and not tf.io.gfile.exists(path):
      found.append((f'{name}.label_map_path {path!r}: no such file', path))
  return found


def check(configs, kinds=('train', 'eval'), eval_index=None):
  """Raises ConfigError listing every missing input file of the readers of `kinds`."""
  found = problems(configs, kinds, eval_index)
  if found:
    raise ConfigError('input files not found:\n  ' + '\n  '.join(m for m, _ in found) +
                      '\n  ' + _hint([path for _, path in found]))
