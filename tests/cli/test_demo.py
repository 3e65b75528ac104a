"""mtl_ssl_demo: config resolution, data reuse, and a tiny end-to-end run that is then resumed.

The end-to-end run uses the shipped MTL scenes config shrunk with --config_override (64x64
inputs, batch 2, few proposals and windows), 8 train / 4 test images and 2 + 1 steps.
"""
import json
import os

from PIL import Image
import pytest

from mtl_ssl.cli import demo
from mtl_ssl.config import num_steps
from mtl_ssl.data.scenes import generator

CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
               'Sneaker', 'Bag', 'Ankle boot']
TINY_OVERRIDE = """
model {
  faster_rcnn {
    image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
    first_stage_max_proposals: 16
    second_stage_batch_size: 8
  }
  mtl { num_windows: 4 foreground_grid_size: 8 }
}
train_config { batch_size: 2 }
eval_config { batch_size: 2 }
"""
TINY_ARGS = ['--num_train_images', '8', '--num_test_images', '4', '--num_infer_images', '2',
             '--config_override', TINY_OVERRIDE, '--log_every_n', '1']


def _fake_paths(root):
  return {'train': f'{root}/train.record', 'test': f'{root}/test.record',
          'label_map': f'{root}/map.pbtxt', 'info': f'{root}/info.json'}


def test_resolve_config_points_every_reader_at_the_demo_data():
  path = demo.shipped_config(demo.MAIN_CONFIG)
  configs, _ = demo.resolve_config(path, _fake_paths('/w/data'))
  train = configs['train_input_config']
  assert list(train.tf_record_input_reader.input_path) == ['/w/data/train.record']
  assert train.label_map_path == '/w/data/map.pbtxt'
  assert configs['eval_input_configs']
  for reader in configs['eval_input_configs']:
    assert list(reader.tf_record_input_reader.input_path) == ['/w/data/test.record']
    assert reader.label_map_path == '/w/data/map.pbtxt'
  assert configs['train_config'].num_steps == 1500  # untouched without --num_steps
  assert demo.has_mtl(configs)


def test_num_steps_stretches_the_cosine_schedule():
  path = demo.shipped_config(demo.MAIN_CONFIG)
  original, _ = demo.resolve_config(path, _fake_paths('/d'))
  cosine = original['train_config'].optimizer.momentum_optimizer.learning_rate
  cosine = cosine.cosine_decay_learning_rate
  configs, changes = demo.resolve_config(path, _fake_paths('/d'), num_steps=300)
  scaled = configs['train_config'].optimizer.momentum_optimizer.learning_rate
  scaled = scaled.cosine_decay_learning_rate
  assert configs['train_config'].num_steps == 300
  assert scaled.total_steps == 300
  expected_warmup = round(cosine.warmup_steps * 300 / original['train_config'].num_steps)
  assert scaled.warmup_steps == expected_warmup
  assert scaled.learning_rate_base == cosine.learning_rate_base
  assert any('num_steps 1500 -> 300' in c for c in changes)


def test_manual_step_schedule_is_scaled_to_num_steps():
  configs, _ = demo.resolve_config(demo.shipped_config(demo.MAIN_CONFIG), _fake_paths('/d'))
  learning_rate = configs['train_config'].optimizer.momentum_optimizer.learning_rate
  learning_rate.manual_step_learning_rate.initial_learning_rate = 0.01
  entry = learning_rate.manual_step_learning_rate.schedule.add()
  entry.step, entry.learning_rate = 1000, 0.001
  num_steps.scale_schedule(learning_rate, 2000, 500)
  assert learning_rate.manual_step_learning_rate.schedule[0].step == 250


def test_baseline_flag_plans_the_runs():
  parse = lambda *argv: demo.plan_runs(demo.build_parser().parse_args(list(argv)))
  assert [name for name, _ in parse()] == ['main']
  runs = parse('--baseline')
  assert [name for name, _ in runs] == ['main', 'baseline']
  assert runs[1][1].endswith(demo.BASELINE_CONFIG) and os.path.isfile(runs[1][1])
  assert [name for name, _ in parse('--baseline', 'only')] == ['baseline']
  assert parse('--config', '/x/my.config')[0] == ('main', '/x/my.config')


def test_bad_counts_are_refused():
  with pytest.raises(SystemExit, match='num_train_images'):
    demo.main(['--num_train_images', '0'])


@pytest.mark.parametrize('argv, message', [
    (['--config', '/no/such.config'], 'pipeline config file not found'),
    (['--config_override', 'train_config { batch_sise: 2 }'], 'batch_sise'),
    (['--config_override', 'train_config { batch_size: 0 }'], 'train_config.batch_size'),
])
def test_bad_configs_stop_before_any_data_is_made(tmp_path, capsys, argv, message):
  assert demo.main(['--workdir', str(tmp_path)] + argv) == 2
  assert message in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'data')


def test_data_is_reused_only_when_its_options_match(tmp_path):
  config = generator.SceneConfig(num_train_images=3, num_test_images=2, objects='subset')
  assert not demo.data_is_current(str(tmp_path), config)
  paths, reused = demo.prepare_data(str(tmp_path), config)
  assert not reused and all(os.path.isfile(p) for p in paths.values())
  stamp = os.path.getmtime(paths['train'])
  _, reused = demo.prepare_data(str(tmp_path), config)
  assert reused and os.path.getmtime(paths['train']) == stamp
  other = generator.SceneConfig(num_train_images=3, num_test_images=2, objects='subset', seed=1)
  assert not demo.data_is_current(str(tmp_path), other)
  os.remove(paths['test'])
  assert not demo.data_is_current(str(tmp_path), config)


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('demo'))
  assert demo.main(['--workdir', workdir, '--num_steps', '2'] + TINY_ARGS) == 0
  with open(os.path.join(workdir, 'report.json'), encoding='utf-8') as f:
    return workdir, json.load(f)


def test_tiny_run_trains_evaluates_exports_and_draws(first_run):
  workdir, report = first_run
  (run,) = report['runs']
  assert run['step'] == 2 and run['steps_trained'] == 2 and run['resumed_from_step'] == 0
  assert os.path.isfile(run['checkpoint'] + '.index')
  assert run['metric'] == demo.PASCAL_MAP
  assert 0.0 <= run['mAP'] <= 1.0
  assert list(run['per_class_AP']) == CLASS_NAMES
  assert set(run['mtl_metrics']) >= {'MTL/window_top1_accuracy', 'MTL/foreground_iou'}
  assert os.path.isfile(os.path.join(run['saved_model'], 'saved_model.pb'))
  assert set(report['stage_seconds']) == {'data', 'config', 'train', 'evaluate', 'export',
                                          'infer'}
  side = 256  # the scenes images; each picture has a 16 px title strip, cells 4 px apart
  assert Image.open(report['detections_png']).size == (2 * side + 4, 2 * (side + 16) + 4)
  # ground truth | Task 1 | Task 2 | Task 3
  assert Image.open(report['mtl_labels_png']).size == (4 * side + 12, 2 * (side + 16) + 4)
  with open(report['detections_json'], encoding='utf-8') as f:
    images = json.load(f)['images']
  assert [os.path.basename(i['image']) for i in images] == [
      'scenes_test_000000.jpg', 'scenes_test_000001.jpg']
  # the pipeline config written for the run reads the demo data
  with open(run['pipeline_config'], encoding='utf-8') as f:
    text = f.read()
  assert os.path.join(workdir, 'data', 'scenes_train.record') in text


def test_rerun_reuses_the_data_and_resumes_training(first_run, capsys):
  workdir, _ = first_run
  record = os.path.join(workdir, 'data', 'scenes_train.record')
  stamp = os.path.getmtime(record)
  assert demo.main(['--workdir', workdir, '--num_steps', '3'] + TINY_ARGS) == 0
  with open(os.path.join(workdir, 'report.json'), encoding='utf-8') as f:
    report = json.load(f)
  (run,) = report['runs']
  assert report['data_reused'] and os.path.getmtime(record) == stamp
  assert run['resumed_from_step'] == 2 and run['step'] == 3 and run['steps_trained'] == 1
  assert run['checkpoint'].endswith('ckpt-3')
  assert 0.0 <= run['mAP'] <= 1.0
  out = capsys.readouterr().out
  assert 'resuming from step 2 of 3' in out
  assert f'tensorboard --logdir {workdir}' in out
  # once more: nothing to train, the evaluation and the export are reused
  assert demo.main(['--workdir', workdir, '--num_steps', '3'] + TINY_ARGS) == 0
  with open(os.path.join(workdir, 'report.json'), encoding='utf-8') as f:
    (again,) = json.load(f)['runs']
  out = capsys.readouterr().out
  assert 'already trained to step 3' in out and 'reusing the export' in out
  assert again['steps_trained'] == 0 and again['mAP'] == run['mAP']
  assert list(again['per_class_AP']) == CLASS_NAMES  # label-map order, also when read back


def test_training_stopped_early_skips_the_later_stages(tmp_path, monkeypatch, capsys):
  """SIGTERM makes the train loop save and return before num_steps: the demo must stop there
  (exit 143) rather than evaluate and export a half-trained model."""
  from mtl_ssl.training import train_loop  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(train_loop, 'train_loop', lambda *args, **kwargs: [])
  argv = ['--workdir', str(tmp_path), '--num_steps', '2', '--num_train_images', '2',
          '--num_test_images', '1']
  assert demo.main(argv) == 143
  assert 'training stopped at step 0 of 2' in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'report.json')
  assert not os.path.exists(tmp_path / 'exported')
