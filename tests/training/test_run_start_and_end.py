"""How a run starts and ends for a user: missing inputs named per reader, a failed start leaves no
model_dir, evaluation-only mode ends at the steps the training run really used."""
import os
import shutil

import pytest
import tensorflow as tf

from mtl_ssl.cli import model_main_tf2
from mtl_ssl.config import config_util
from mtl_ssl.config.errors import ConfigError
from mtl_ssl.training import eval_loop
from mtl_ssl.training import input_files
from mtl_ssl.training import train_loop

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
SCENES_CONFIG = os.path.join(REPO, 'pipeline_configs', 'scenes',
                             'faster_rcnn_mobilenet_v1_scenes_mtl.config')


@pytest.fixture()
def empty_cwd(tmp_path, monkeypatch):
  """A current directory without the scenes data the shipped config reads."""
  monkeypatch.chdir(tmp_path)
  return tmp_path


def _scenes_configs():
  return config_util.get_configs_from_pipeline_file(SCENES_CONFIG)


def test_missing_scenes_records_name_the_reader_and_the_command(empty_cwd):
  with pytest.raises(ConfigError) as info:
    input_files.check(_scenes_configs(), ('train',))
  text = str(info.value)
  assert ("train_input_reader.tf_record_input_reader.input_path "
          "'data/scenes/scenes_train.record': no such file") in text
  assert "train_input_reader.label_map_path 'data/scenes/scenes_label_map.pbtxt'" in text
  assert 'eval_input_reader' not in text
  assert '`mtl_ssl_make_scenes --output_dir data/scenes`' in text and str(empty_cwd) in text
  with pytest.raises(ConfigError, match=r"eval_input_reader\[0\].*scenes_test.record"):
    input_files.check(_scenes_configs(), ('eval',))


def test_missing_own_records_point_to_the_converters(empty_cwd):
  configs = config_util.get_configs_from_pipeline_file(SCENES_CONFIG, """
      eval_input_reader { label_map_path: "data/scenes/scenes_label_map.pbtxt"
                          tf_record_input_reader { input_path: "data/mine-*.record" } }""")
  (empty_cwd / 'data' / 'scenes').mkdir(parents=True)
  for name in ('scenes_label_map.pbtxt', 'scenes_train.record'):
    (empty_cwd / 'data' / 'scenes' / name).write_text('')
  assert input_files.problems(configs, ('train',)) == []
  with pytest.raises(ConfigError) as info:
    input_files.check(configs)
  assert "eval_input_reader[0].tf_record_input_reader.input_path 'data/mine-*.record'" in str(
      info.value)
  assert 'mtl_ssl_create_pascal_tf_record' in str(info.value)
  assert 'mtl_ssl_make_scenes' not in str(info.value)


@pytest.mark.parametrize('mode', [[], ['--train_and_eval'], ['--checkpoint_dir=elsewhere']])
def test_failed_start_leaves_no_model_dir_and_no_traceback(empty_cwd, capsys, mode):
  model_dir = empty_cwd / 'runs' / 'new'
  argv = [f'--pipeline_config_path={SCENES_CONFIG}', f'--model_dir={model_dir}'] + mode
  with pytest.raises(ConfigError, match='input files not found'):
    model_main_tf2.main(argv)
  assert not model_dir.exists()
  # as a command: one 'error:' paragraph, exit code 1, no traceback
  monkey_argv = ['model_main_tf2'] + argv
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr('sys.argv', monkey_argv)
    with pytest.raises(SystemExit) as exit_info:
      model_main_tf2.run()
  assert exit_info.value.code == 1
  err = capsys.readouterr().err
  assert 'error:' in err and 'mtl_ssl_make_scenes' in err and 'Traceback' not in err
  assert not model_dir.exists()


def test_start_failing_while_building_writes_nothing(empty_cwd, monkeypatch):
  data = empty_cwd / 'data' / 'scenes'
  data.mkdir(parents=True)
  for name in ('scenes_label_map.pbtxt', 'scenes_train.record', 'scenes_test.record'):
    (data / name).write_text('')

  def failing_trainer(*args, **kwargs):
    raise ValueError('cannot build the model (simulated)')

  monkeypatch.setattr(train_loop, '_Trainer', failing_trainer)
  model_dir = empty_cwd / 'runs' / 'new'
  with pytest.raises(ValueError, match='simulated'):
    model_main_tf2.main([f'--pipeline_config_path={SCENES_CONFIG}', f'--model_dir={model_dir}',
                         '--num_train_steps=5'])
  assert not model_dir.exists()
  # an existing model_dir is never removed, even when empty
  model_dir.mkdir(parents=True)
  with pytest.raises(ValueError, match='simulated'):
    model_main_tf2.main([f'--pipeline_config_path={SCENES_CONFIG}', f'--model_dir={model_dir}'])
  assert model_dir.is_dir()


def _fake_training_run(model_dir, steps, recorded_num_steps):
  """Checkpoints at `steps` and the pipeline.config a run with --num_train_steps writes."""
  step = tf.Variable(0, dtype=tf.int64)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step), str(model_dir), 10)
  for value in steps:
    step.assign(value)
    manager.save(checkpoint_number=value)
  configs = _scenes_configs()
  configs['train_config'].num_steps = recorded_num_steps
  config_util.save_pipeline_config(configs, model_dir)


class _FakeEvaluation:
  """Stands in for the model: records which checkpoints were evaluated."""
  evaluated = []

  def __init__(self, *args, **kwargs):
    del args, kwargs

  def evaluate_checkpoint(self, path):
    _FakeEvaluation.evaluated.append(os.path.basename(path))
    return {'mAP': 0.5}


def test_eval_only_ends_after_the_final_checkpoint_of_a_shortened_run(tmp_path, monkeypatch):
  model_dir = tmp_path / 'model'
  _fake_training_run(model_dir, [1, 2], recorded_num_steps=2)  # config says 1500
  assert eval_loop.recorded_num_steps(str(model_dir)) == 2
  real_iterator = tf.train.checkpoints_iterator

  def iterator_that_must_not_wait(*args, **kwargs):
    for path in real_iterator(*args, **kwargs):
      yield path
      raise AssertionError('evaluation-only mode waited for another checkpoint')

  monkeypatch.setattr(tf.train, 'checkpoints_iterator', iterator_that_must_not_wait)
  monkeypatch.setattr(eval_loop, 'CheckpointEvaluation', _FakeEvaluation)
  _FakeEvaluation.evaluated = []
  results = eval_loop.eval_continuously(SCENES_CONFIG, str(tmp_path / 'eval_out'),
                                        str(model_dir), timeout=600)
  assert list(results) == [2] and _FakeEvaluation.evaluated == ['ckpt-2']
  # without a recorded pipeline.config the config's num_steps (1500) is the end: it would wait
  os.remove(model_dir / 'pipeline.config')
  assert eval_loop.recorded_num_steps(str(model_dir)) is None
  with pytest.raises(AssertionError, match='waited'):
    eval_loop.eval_continuously(SCENES_CONFIG, str(tmp_path / 'eval_out'), str(model_dir),
                                timeout=600)
  shutil.rmtree(model_dir)
