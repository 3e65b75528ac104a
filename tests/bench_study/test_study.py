"""The accuracy study's machinery (bench/study): variants, run configs, resume, scheduling,
aggregation. The training itself is mtl_ssl's (tested elsewhere); here the runner is faked."""
import json
import os
import sys
import textwrap
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)  # bench/ is not installed

from bench.study import aggregate  # pylint: disable=wrong-import-position
from bench.study import scheduler  # pylint: disable=wrong-import-position
from bench.study import settings  # pylint: disable=wrong-import-position
from bench.study import variants  # pylint: disable=wrong-import-position
from mtl_ssl.config import config_util  # pylint: disable=wrong-import-position

SCENES = os.path.join(REPO, 'pipeline_configs', 'scenes')
DATA = settings.Dataset('context', ['/d/train.record'], ['/d/test.record'], '/d/labels.pbtxt')


def _shipped(name):
  return config_util.get_configs_from_pipeline_file(
      os.path.join(SCENES, f'faster_rcnn_mobilenet_v1_scenes_{name}.config'))


def _resolved(name, num_steps=None):
  variant = variants.by_name([name])[0]
  return settings.resolve_configs(settings.SCENES_CONFIG, variant, DATA, num_steps)[0]


def test_baseline_row_is_the_shipped_baseline_config():
  assert _resolved('baseline')['model'] == _shipped('baseline')['model']
  assert _resolved('all_refine')['model'] == _shipped('mtl')['model']


@pytest.mark.parametrize('row, shipped', [('T1_window', 'window'), ('T2_closeness', 'closeness'),
                                          ('T3_foreground', 'foreground')])
def test_single_task_rows_match_the_shipped_ablation_configs(row, shipped):
  ours, theirs = _resolved(row)['model'], _shipped(shipped)['model']
  assert ours.faster_rcnn == theirs.faster_rcnn
  for flag in variants.MTL_FLAGS:
    assert getattr(ours.mtl, flag) == getattr(theirs.mtl, flag), flag
  for field, value in theirs.mtl.ListFields():  # every setting of the shipped file holds
    assert getattr(ours.mtl, field.name) == value, field.name


def test_run_config_has_the_study_data_steps_and_evaluators():
  configs = _resolved('T1_window', num_steps=3000)
  cosine = configs['train_config'].optimizer.momentum_optimizer.learning_rate.\
      cosine_decay_learning_rate
  assert configs['train_config'].num_steps == 3000
  assert (cosine.total_steps, cosine.warmup_steps) == (3000, 200)  # 1500 / 100 stretched
  assert list(configs['eval_config'].metrics_set) == list(settings.METRICS_SETS)
  assert list(configs['train_input_config'].tf_record_input_reader.input_path) == DATA.train
  assert configs['eval_input_configs'][0].label_map_path == DATA.label_map


def test_eval_steps():
  assert settings.eval_steps(2000, 4) == [500, 1000, 1500, 2000]
  assert settings.eval_steps(10, 3) == [3, 6, 10]
  assert settings.eval_steps(3, 10) == [1, 2, 3]
  assert settings.eval_steps(7, 1) == [7]


def test_unknown_rows_are_named():
  with pytest.raises(ValueError, match="'T9'"):
    variants.by_name(['baseline', 'T9'])


def test_run_status_and_fingerprint(tmp_path):
  run = settings.make_run(str(tmp_path), DATA, variants.by_name(['baseline'])[0], 1,
                          settings.SCENES_CONFIG, 100, 2)
  assert run['name'] == 'context/baseline/seed1' and run['eval_steps'] == [50, 100]
  other_seed = settings.make_run(str(tmp_path), DATA, variants.by_name(['baseline'])[0], 2,
                                 settings.SCENES_CONFIG, 100, 2)
  assert other_seed['fingerprint'] != run['fingerprint']
  assert settings.run_status(run) == 'new'
  os.makedirs(run['run_dir'])
  open(os.path.join(run['run_dir'], 'ckpt-50.index'), 'w').close()
  assert settings.run_status(run) == 'partial'
  with open(settings.result_path(run), 'w', encoding='utf-8') as f:
    json.dump({'fingerprint': run['fingerprint']}, f)
  assert settings.run_status(run) == 'done'
  changed = settings.make_run(str(tmp_path), DATA, variants.by_name(['baseline'])[0], 1,
                              settings.SCENES_CONFIG, 200, 2)
  with pytest.raises(ValueError, match='other settings'):
    settings.run_status(changed)


FAKE_RUNNER = textwrap.dedent('''
    import argparse, json, os, sys
    parser = argparse.ArgumentParser()
    parser.add_argument('--spec')
    spec = json.load(open(parser.parse_args().spec))
    with open(os.path.join(os.path.dirname(spec['run_dir']), 'calls.txt'), 'a') as f:
      f.write(spec['name'] + '\\n')
    if spec['variant'] == 'broken':
      print('something went wrong'); sys.exit(3)
    json.dump({'fingerprint': spec['fingerprint'], 'pascal_map': 0.5, 'coco_ap': 0.25},
              open(os.path.join(spec['run_dir'], 'result.json'), 'w'))
''')


def _fake_runs(root, names):
  return [{'name': f'context/{name}/seed0', 'variant': name, 'num_steps': 10,
           'run_dir': os.path.join(root, name, 'seed0'), 'fingerprint': f'fp-{name}',
           'config_text': ''} for name in names]


def test_scheduler_runs_skips_finished_and_reports_failures(tmp_path):
  (tmp_path / 'fake_runner.py').write_text(FAKE_RUNNER)
  runs = _fake_runs(str(tmp_path / 'runs'), ['a', 'broken', 'c'])
  lines = []
  outcome = scheduler.run_all(runs, jobs=2, repo_root=str(tmp_path), echo=lines.append,
                              runner_module='fake_runner', poll_seconds=0.05)
  assert outcome['failed'] == ['context/broken/seed0'] and not outcome['stopped']
  assert sorted(outcome['done']) == ['context/a/seed0', 'context/c/seed0']
  assert any('FAILED context/broken/seed0 (exit 3)' in l and 'something went wrong' in l
             for l in lines)
  assert any(l.startswith('[2/3] done') for l in lines)
  calls = lambda name: (tmp_path / 'runs' / name / 'calls.txt').read_text().split()
  assert calls('a') == ['context/a/seed0']
  # again: the finished runs are skipped, the failed one is retried
  outcome = scheduler.run_all(runs, jobs=2, repo_root=str(tmp_path), echo=lines.append,
                              runner_module='fake_runner', poll_seconds=0.05)
  assert calls('a') == ['context/a/seed0'] and len(calls('broken')) == 2
  assert 'study: 3 runs, 2 done, 0 to resume, 1 new; 2 at a time' in lines


def _result(variant, seed, pascal, coco, tide_loc, dataset='context'):
  return {'dataset': dataset, 'variant': variant, 'variant_label': variant, 'seed': seed,
          'num_steps': 100, 'pascal_map': pascal, 'coco_ap': coco, 'coco_ap50': pascal,
          'tide': {'dAP_Loc': tide_loc, 'dAP_Cls': 0.1},
          'curve': [{'step': 50, 'pascal_map': pascal / 2}, {'step': 100, 'pascal_map': pascal}],
          'timing': {'train_seconds': 10.0, 'train_steps_per_sec': 10.0, 'cpu_seconds': 20.0,
                     'eval_cpu_seconds': 2.0, 'steady_cpu_seconds_per_step': 0.1}}


def test_aggregate_numbers_tables_and_pictures(tmp_path):
  base = [0.40, 0.44, 0.42]
  mtl = [0.47, 0.45, 0.52]
  results = ([_result('baseline', s, v, v / 2, 0.2) for s, v in enumerate(base)]
             + [_result('all_refine', s, v, v / 2, 0.1) for s, v in enumerate(mtl)])
  summary = aggregate.summarize(results)['context']
  assert list(summary) == ['baseline', 'all_refine']  # table order
  row = summary['all_refine']
  assert row['pascal_map']['mean'] == pytest.approx(np.mean(mtl))
  assert row['pascal_map']['std'] == pytest.approx(np.std(mtl, ddof=1))
  difference = row['vs_baseline']['pascal_map']
  assert difference['delta'] == pytest.approx(np.mean(mtl) - np.mean(base))
  assert difference['standard_error'] == pytest.approx(
      np.sqrt(np.var(mtl, ddof=1) / 3 + np.var(base, ddof=1) / 3))
  assert row['curve'][0] == dict(step=50, **aggregate._stats([v / 2 for v in mtl]))  # pylint: disable=protected-access
  assert row['tide']['Loc']['mean'] == pytest.approx(0.1)
  table = aggregate.markdown({'context': summary})
  assert f'| all_refine | 3 | 100 | {np.mean(mtl):.3f} ± {np.std(mtl, ddof=1):.3f} | ' \
         f'+{np.mean(mtl) - np.mean(base):.3f} ± ' in table
  assert any('all_refine' in a and 'std' in a for a in aggregate.spread_advice(
      {'context': summary}))  # std 0.036 > 0.02: more seeds

  for result in results:
    run_dir = tmp_path / 'runs' / 'context' / result['variant'] / f'seed{result["seed"]}'
    run_dir.mkdir(parents=True)
    (run_dir / 'result.json').write_text(json.dumps(result))
  paths = aggregate.write_report(str(tmp_path), echo=lambda *_: None)
  assert open(paths['results_md'], encoding='utf-8').read().startswith('### context')
  for picture in paths['pictures']:
    with open(picture, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert sorted(os.path.basename(p) for p in paths['pictures']) == [
      'map_vs_step_context.png', 'tide_context.png']


def test_a_run_directory_is_run_by_one_process_at_a_time(tmp_path):
  import subprocess  # pylint: disable=import-outside-toplevel
  from bench.study import runner  # pylint: disable=import-outside-toplevel
  assert runner.running_pid(str(tmp_path)) is None  # no pid file
  other = subprocess.Popen(['sleep', '30'])  # alive, but not a runner (a reused pid)
  sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)',
                              'bench.study.runner'])
  # Popen returns after fork: until the child has exec'd, its /proc cmdline is still ours (a
  # real runner writes its pid file itself, long after its exec)
  deadline = time.time() + 20
  while not runner.process_alive(sleeper.pid) and time.time() < deadline:
    time.sleep(0.05)
  try:
    (tmp_path / runner.PID_FILE).write_text(str(other.pid))
    assert runner.running_pid(str(tmp_path)) is None
    (tmp_path / runner.PID_FILE).write_text(str(sleeper.pid))
    assert runner.running_pid(str(tmp_path)) == sleeper.pid
  finally:
    for process in (other, sleeper):
      process.kill()
      process.wait()
  assert runner.running_pid(str(tmp_path)) is None  # a dead runner's file is stale
