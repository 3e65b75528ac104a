"""Crash-safe file writes: a killed process leaves the old file or the new one, never half of one.

Readers of <model_dir> (resume, eval, TensorBoard, users) must never see a truncated
pipeline.config or metrics JSON, so those files are written to a hidden temporary file in the same
directory and renamed over the target (os.replace is atomic on POSIX and Windows). Remote paths
(gs://, s3://, ...) go through tf.io.gfile with the same temp-then-rename order; how atomic that
rename is depends on the file system (on GCS it is a copy then a delete).
"""
import os

_TMP_PREFIX = '.tmp-'


def temp_name(path):
  """The hidden temporary file used while writing `path` (one per process)."""
  directory, name = os.path.split(os.fspath(path))
  return os.path.join(directory, f'{_TMP_PREFIX}{name}.{os.getpid()}')


def atomic_write_text(path, text):
  """Writes `text` (utf-8) to `path` through a temporary file and a rename (creates the
  directory)."""
  path = os.fspath(path)
  tmp = temp_name(path)
  if '://' in path:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(tmp, 'w') as f:
      f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  try:
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())  # the data is on disk before the name points to it
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def is_temp_file(name):
  """True for the temporary files atomic_write_text leaves behind when killed mid-write."""
  return os.path.basename(name).startswith(_TMP_PREFIX)
