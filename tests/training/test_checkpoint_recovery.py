"""checkpoint_recovery.recover on each leftover a SIGKILL inside CheckpointManager.save can leave
(made by hand from real checkpoints, so every case is hit, not only those a random kill finds)."""
import os
import shutil

import tensorflow as tf

from mtl_ssl.training import checkpoint_recovery


def _directory_with_checkpoints(tmp_path, steps=(10, 20, 30)):
  """A model_dir with CheckpointManager checkpoints of one variable (value = step)."""
  variable = tf.Variable(0.0)
  checkpoint = tf.train.Checkpoint(v=variable)
  manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=5)
  for step in steps:
    variable.assign(float(step))
    manager.save(checkpoint_number=step)
  return str(tmp_path)


def _restored_value(prefix):
  return float(tf.train.load_checkpoint(prefix).get_tensor('v/.ATTRIBUTES/VARIABLE_VALUE'))


def _names(directory):
  return sorted(os.listdir(directory))


def test_nothing_interrupted_changes_nothing(tmp_path):
  directory = _directory_with_checkpoints(tmp_path)
  before = {n: os.path.getmtime(os.path.join(directory, n)) for n in _names(directory)}
  assert checkpoint_recovery.recover(directory) == []
  after = {n: os.path.getmtime(os.path.join(directory, n)) for n in _names(directory)}
  assert after == before


def test_shard_temp_dir_is_removed(tmp_path):
  directory = _directory_with_checkpoints(tmp_path)
  temp = os.path.join(directory, 'ckpt-40_temp')
  os.makedirs(os.path.join(temp, 'part-00000-of-00001'))
  with open(os.path.join(temp, 'part-00000-of-00001', 'x.data'), 'wb') as f:
    f.write(b'\0' * 10)
  removed = checkpoint_recovery.recover(directory)
  assert removed == [temp]
  assert tf.train.latest_checkpoint(directory).endswith('ckpt-30')


def test_data_without_index_and_truncated_index_are_removed(tmp_path):
  directory = _directory_with_checkpoints(tmp_path)
  # the merge renamed ckpt-40's data into place, the index was never written
  shutil.copy(os.path.join(directory, 'ckpt-30.data-00000-of-00001'),
              os.path.join(directory, 'ckpt-40.data-00000-of-00001'))
  # ckpt-50: index cut in the middle of its write
  for suffix in ('.data-00000-of-00001', '.index'):
    shutil.copy(os.path.join(directory, 'ckpt-30' + suffix),
                os.path.join(directory, 'ckpt-50' + suffix))
  with open(os.path.join(directory, 'ckpt-50.index'), 'r+b') as f:
    f.truncate(os.path.getsize(os.path.join(directory, 'ckpt-30.index')) // 2)
  assert not checkpoint_recovery.is_complete(os.path.join(directory, 'ckpt-50'))
  removed = sorted(os.path.basename(p) for p in checkpoint_recovery.recover(directory))
  assert removed == ['ckpt-40.data-00000-of-00001', 'ckpt-50.data-00000-of-00001',
                     'ckpt-50.index']
  assert tf.train.latest_checkpoint(directory).endswith('ckpt-30')
  assert _restored_value(tf.train.latest_checkpoint(directory)) == 30.0


def test_complete_checkpoint_missing_from_the_state_file_is_adopted(tmp_path):
  directory = _directory_with_checkpoints(tmp_path, steps=(10, 20))
  state_text = open(os.path.join(directory, 'checkpoint'), encoding='utf-8').read()
  _directory_with_checkpoints(tmp_path / 'other', steps=(30,))
  for suffix in ('.data-00000-of-00001', '.index'):  # complete, written before the state update
    shutil.copy(os.path.join(tmp_path, 'other', 'ckpt-30' + suffix),
                os.path.join(directory, 'ckpt-30' + suffix))
  with open(os.path.join(directory, 'checkpoint'), 'w', encoding='utf-8') as f:
    f.write(state_text)  # still names ckpt-20 as the latest
  assert tf.train.latest_checkpoint(directory).endswith('ckpt-20')
  assert checkpoint_recovery.recover(directory) == []
  state = tf.train.get_checkpoint_state(directory)
  assert state.model_checkpoint_path.endswith('ckpt-30')
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
      'ckpt-10', 'ckpt-20', 'ckpt-30']
  assert _restored_value(tf.train.latest_checkpoint(directory)) == 30.0


def test_half_swept_old_checkpoint_is_removed_and_unlisted(tmp_path):
  directory = _directory_with_checkpoints(tmp_path)
  os.remove(os.path.join(directory, 'ckpt-10.index'))  # the sweep deleted the index first
  removed = [os.path.basename(p) for p in checkpoint_recovery.recover(directory)]
  assert removed == ['ckpt-10.data-00000-of-00001']
  state = tf.train.get_checkpoint_state(directory)
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ['ckpt-20', 'ckpt-30']
  assert state.model_checkpoint_path.endswith('ckpt-30')


def test_state_file_naming_a_broken_latest_falls_back_to_the_newest_complete(tmp_path):
  directory = _directory_with_checkpoints(tmp_path)
  os.remove(os.path.join(directory, 'ckpt-30.data-00000-of-00001'))
  checkpoint_recovery.recover(directory)
  assert not os.path.exists(os.path.join(directory, 'ckpt-30.index'))
  assert tf.train.latest_checkpoint(directory).endswith('ckpt-20')
  assert _restored_value(tf.train.latest_checkpoint(directory)) == 20.0


def test_no_complete_checkpoint_left_removes_the_state_file(tmp_path):
  directory = _directory_with_checkpoints(tmp_path, steps=(10,))
  os.remove(os.path.join(directory, 'ckpt-10.data-00000-of-00001'))
  checkpoint_recovery.recover(directory)
  assert _names(directory) == []
  assert tf.train.latest_checkpoint(directory) is None


def test_missing_directory_is_left_alone(tmp_path):
  missing = str(tmp_path / 'never_made')
  assert checkpoint_recovery.recover(missing) == []
  assert not os.path.exists(missing)
