"""Tidies a checkpoint directory after a process was killed while writing, before training resumes.

What a SIGKILL during `tf.train.CheckpointManager.save` can leave (TF 2.20, V2 format):
- `ckpt-N_temp/` with a partial shard: the shards are written there first;
- `ckpt-N.data-*` without `ckpt-N.index`, or a truncated `ckpt-N.index`: the merge renames the
  data file into place, then writes the index directly (not through a temporary file);
- a complete `ckpt-N` that the `checkpoint` state file does not list yet (the state file is written
  atomically, after the checkpoint);
- `ckpt-K.data-*` of an old checkpoint whose index was already deleted by the max_to_keep sweep.
None of these makes `tf.train.latest_checkpoint` point to a broken checkpoint, but they would be
picked up by anything that lists the directory. `recover` removes the broken leftovers, makes the
state file list only complete checkpoints and adopts complete ones newer than its latest.
"""
import glob
import json
import os
import re
import shutil

from absl import logging
import tensorflow as tf

from mtl_ssl import io_util

_STEP = re.compile(r'-(\d+)$')
_DATA = re.compile(r'^(?P<prefix>.+)\.data-(?P<shard>\d{5})-of-(?P<count>\d{5})$')
STATE_FILE = 'checkpoint'


def _step(prefix):
  match = _STEP.search(prefix)
  return int(match.group(1)) if match else -1


def _remove(path, removed):
  try:
    if os.path.isdir(path):
      shutil.rmtree(path)
    else:
      os.remove(path)
    removed.append(path)
  except FileNotFoundError:  # another process (e.g. a second worker) removed it first
    pass


def is_complete(prefix):
  """True when prefix.index can be read and every data shard it needs is present."""
  if not os.path.isfile(prefix + '.index'):
    return False
  try:
    tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError):  # truncated or corrupt index (DataLoss, NotFound ...)
    return False
  shards = [_DATA.match(path) for path in glob.glob(glob.escape(prefix) + '.data-*')]
  counts = {int(m.group('count')) for m in shards if m}
  return len(counts) == 1 and len(shards) == counts.pop()


def _read_state(directory):
  try:
    return tf.train.get_checkpoint_state(directory)
  except Exception as error:  # pylint: disable=broad-except  (a corrupt state file: rebuild it)
    logging.warning('checkpoint state file in %s is unreadable (%s): rebuilding it', directory,
                    error)
    return None


def recover(directory, basename='ckpt'):
  """Removes leftovers of interrupted checkpoint writes in `directory` (local paths only).

  Returns the list of removed paths. Safe to call when nothing was interrupted (it then changes
  nothing); must not run while another process saves checkpoints into the same directory.
  """
  if '://' in os.fspath(directory) or not os.path.isdir(directory):
    return []
  removed = []
  pattern = os.path.join(glob.escape(directory), basename + '-*')
  for path in glob.glob(pattern):  # temporary shard directories and BundleWriter temp files
    if path.endswith('_temp') or '.tempstate' in path:
      _remove(path, removed)
  prefixes = set()
  for path in glob.glob(pattern):
    if path.endswith('.index'):
      prefixes.add(path[:-len('.index')])
    else:
      match = _DATA.match(path)
      if match:
        prefixes.add(match.group('prefix'))
  complete = {}
  for prefix in sorted(prefixes, key=_step):
    if is_complete(prefix):
      complete[os.path.basename(prefix)] = prefix
    else:
      for path in glob.glob(glob.escape(prefix) + '.index') + glob.glob(
          glob.escape(prefix) + '.data-*'):
        _remove(path, removed)
  _repair_state(directory, complete)
  if removed:
    logging.warning('Removed %d leftover file(s) of interrupted checkpoint writes in %s: %s',
                    len(removed), directory, ', '.join(os.path.basename(p) for p in removed))
  return removed


def _repair_state(directory, complete):
  """Rewrites the state file when it lists a checkpoint that is not complete, is missing, or
  misses a complete checkpoint newer than its latest one."""
  state = _read_state(directory)
  listed, timestamps = [], []
  if state is not None:
    stamps = list(state.all_model_checkpoint_timestamps)
    for i, path in enumerate(state.all_model_checkpoint_paths):
      listed.append(os.path.basename(path))
      timestamps.append(stamps[i] if i < len(stamps) else None)
  kept = [(name, stamp) for name, stamp in zip(listed, timestamps) if name in complete]
  newest_listed = max((_step(name) for name, _ in kept), default=-1)
  adopted = [(name, os.path.getmtime(complete[name] + '.index'))
             for name in sorted(complete, key=_step)
             if _step(name) > newest_listed and name not in listed]
  latest = os.path.basename(state.model_checkpoint_path) if state is not None else None
  entries = sorted(kept + adopted, key=lambda entry: _step(entry[0]))
  if len(kept) == len(listed) and not adopted and (latest in complete or not complete):
    return  # consistent already
  if not entries:
    if state is not None:
      os.remove(os.path.join(directory, STATE_FILE))
      logging.warning('No complete checkpoint in %s: removed its checkpoint state file', directory)
    return
  names = [name for name, _ in entries]
  stamps = [stamp for _, stamp in entries]
  latest = max(names, key=_step)
  _write_state(directory, latest, names, None if None in stamps else stamps,
               state.last_preserved_timestamp if state is not None else None)
  logging.warning('Checkpoint state of %s rewritten: latest %s, listing %s', directory, latest,
                  ', '.join(names))


def _write_state(directory, latest, names, timestamps, last_preserved_timestamp):
  """The `checkpoint` file (CheckpointState text proto, relative paths as CheckpointManager
  writes them), replaced atomically."""
  lines = [f'model_checkpoint_path: {json.dumps(latest)}']
  lines += [f'all_model_checkpoint_paths: {json.dumps(name)}' for name in names]
  lines += [f'all_model_checkpoint_timestamps: {stamp!r}' for stamp in timestamps or []]
  if last_preserved_timestamp is not None:
    lines.append(f'last_preserved_timestamp: {last_preserved_timestamp!r}')
  io_util.atomic_write_text(os.path.join(directory, STATE_FILE), '\n'.join(lines) + '\n')
