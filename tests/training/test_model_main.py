"""The model_main_tf2 command: flags, train-and-evaluate mode, thin entry scripts."""
import os
import subprocess
import sys

import pytest
import tensorflow as tf

import tiny_pipeline
from mtl_ssl.cli import exporter_main_v2
from mtl_ssl.cli import model_main_tf2

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def test_flags_follow_the_od_api():
  args = model_main_tf2.build_parser().parse_args([
      '--pipeline_config_path=p', '--model_dir', 'm', '--use_tpu', '--norecord_summaries',
      '--alsologtostderr', '--num_workers=2', '--checkpoint_every_n=5', '--eval_timeout=7',
      '--sample_1_of_n_eval_examples=3', '--train_and_eval=false', '--tpu_name=t'])
  assert args.use_tpu is True and args.record_summaries is False
  assert args.train_and_eval is False
  assert (args.num_workers, args.checkpoint_every_n, args.eval_timeout) == (2, 5, 7)
  assert args.sample_1_of_n_eval_examples == 3 and args.tpu_name == 't'
  assert args.deterministic is False  # an mtl-ssl flag, off as in the OD API
  defaults = model_main_tf2.build_parser().parse_args(['--pipeline_config_path=p',
                                                       '--model_dir=m'])
  assert (defaults.use_tpu, defaults.record_summaries, defaults.num_workers) == (False, True, 1)
  assert (defaults.checkpoint_every_n, defaults.eval_timeout) == (1000, 3600)
  with pytest.raises(SystemExit):
    model_main_tf2.build_parser().parse_args(['--model_dir=m', '--use_tpu=maybe'])
  export = exporter_main_v2.build_parser().parse_args([
      '--input_type=tf_example', '--pipeline_config_path=p', '--trained_checkpoint_dir=c',
      '--output_directory=o'])
  assert export.input_type == 'tf_example'


def test_train_and_eval_mode_evaluates_checkpoints_while_training(tmp_path):
  data_dir = tiny_pipeline.write_scenes(tmp_path / 'scenes', num_train=4, num_test=2)
  config = tiny_pipeline.write_pipeline(tmp_path, data_dir, num_steps=10)
  model_dir = str(tmp_path / 'model')
  assert model_main_tf2.main([
      f'--pipeline_config_path={config}', f'--model_dir={model_dir}',
      '--config_override=train_config { num_steps: 3 }', '--checkpoint_every_n=1',
      '--train_and_eval', '--eval_every_n_checkpoints=2', '--log_every_n=1', '--seed=2']) == 0
  assert tf.train.latest_checkpoint(model_dir).endswith('ckpt-3')  # the override won
  written = sorted(os.listdir(os.path.join(model_dir, 'eval')))
  metrics = [name for name in written if name.startswith('metrics_')]
  assert metrics == ['metrics_2.json', 'metrics_3.json']  # every 2nd checkpoint + the final one
  events = tiny_pipeline.event_values(os.path.join(model_dir, 'eval'))
  assert [step for step, _ in events['PascalBoxes_Precision/mAP@0.5IOU']] == [2, 3]
  assert 'Loss/total_loss' in tiny_pipeline.event_values(os.path.join(model_dir, 'train'))


_DETERMINISTIC_RUN = r'''
import sys
from tensorflow.python.framework import config  # is_op_determinism_enabled: not public
from mtl_ssl.cli import model_main_tf2
assert not config.is_op_determinism_enabled()
code = model_main_tf2.main(sys.argv[1:])
print('RESULT', code, config.is_op_determinism_enabled())
'''


def test_deterministic_flag_turns_on_op_determinism_and_seeds_random_ops(tmp_path):
  """In a subprocess: op determinism is process-wide. Without --seed, the seed defaults to 0:
  the model's random ops (samplers) would otherwise raise under op determinism."""
  data_dir = tiny_pipeline.write_scenes(tmp_path / 'scenes', num_train=2, num_test=2)
  config = tiny_pipeline.write_pipeline(tmp_path, data_dir, num_steps=1)
  done = subprocess.run(
      [sys.executable, '-c', _DETERMINISTIC_RUN, f'--pipeline_config_path={config}',
       f'--model_dir={tmp_path / "model"}', '--deterministic', '--norecord_summaries'],
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'), capture_output=True, text=True,
      timeout=600, check=False)
  assert 'RESULT 0 True' in done.stdout, done.stderr[-3000:]
  assert tf.train.latest_checkpoint(str(tmp_path / 'model')).endswith('ckpt-1')


@pytest.mark.parametrize('script', ['model_main_tf2.py', 'exporter_main_v2.py', 'infer.py'])
def test_entry_scripts_show_help(script):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  done = subprocess.run([sys.executable, os.path.join(REPO, 'scripts', script), '--help'],
                        capture_output=True, text=True, timeout=120, env=env, check=False)
  assert done.returncode == 0, done.stderr
  assert '--pipeline_config_path' in done.stdout or '--saved_model_dir' in done.stdout
