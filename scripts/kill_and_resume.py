r"""Kill-and-resume harness: SIGKILLs `model_main_tf2` at random moments and restarts it.

  python scripts/kill_and_resume.py --work_dir=/tmp/kill_resume --kills=24 [--seed=0]

A tiny run (the shipped scenes MTL config shrunk to MobileNet v1 x0.25, 64x64 images, 16
proposals; --train_and_eval so metrics JSON files are written too) is started again and again
and killed with SIGKILL (no handler can run) at one of these moments, in turn:
  checkpoint_write  while a checkpoint is being written: as soon as the ckpt-N_temp directory
                    appears, after a random 0-60 ms (shard write, merge, index, state file, sweep)
  training          a random 0-2 s after the first logged step of the run
  eval              a random 0-2 s after an evaluation starts (metrics JSON written at its end)
  startup           a random 1-15 s after the start (imports, config write, model build, trace)
then once more to the end. Checked afterwards (docs/reliability.md):
  - each restart resumes at a step >= (highest step logged so far) - checkpoint interval, and
    never below an earlier resume;
  - after each kill the `checkpoint` state file names a complete checkpoint (or none yet);
  - the last run exits 0 at the final step;
  - every checkpoint left in the directory restores into the inference model, and every tensor
    of it (optimizer slots too) reads back with its checksum and is finite;
  - pipeline.config parses and equals the config given; every metrics_<step>.json parses, and
    the final step has one.
Prints a table per run and a summary; exit code 0 when every check passed.
"""
import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

MODES = ('checkpoint_write', 'training', 'checkpoint_write', 'eval', 'training', 'startup')
BASE_CONFIG = os.path.join(REPO, 'pipeline_configs', 'scenes',
                           'faster_rcnn_mobilenet_v1_scenes_mtl.config')
_RESUMED = re.compile(r'Resuming from \S+ \(step (\d+)\)')
_STEP = re.compile(r'Step (\d+)/\d+:')
_EVAL = re.compile(r'Evaluating \S+ \(step (\d+)\)')


def write_tiny_run(work_dir, num_steps):
  """Scenes data (8 train / 2 test images, 64x64) and a tiny pipeline.config; returns its path."""
  from mtl_ssl.config import config_util  # pylint: disable=import-outside-toplevel
  from mtl_ssl.data.scenes import generator  # pylint: disable=import-outside-toplevel
  data_dir = os.path.join(work_dir, 'data')
  generator.write_dataset(generator.SceneConfig(
      height=64, width=64, num_train_images=8, num_test_images=2, min_objects=2, max_objects=3,
      min_object_size=16, max_object_size=40, objects='subset'), data_dir)
  pipeline = config_util.get_pipeline_proto_from_file(BASE_CONFIG)
  model = pipeline.model.faster_rcnn
  model.image_resizer.fixed_shape_resizer.height = 64
  model.image_resizer.fixed_shape_resizer.width = 64
  anchors = model.first_stage_anchor_generator.grid_anchor_generator
  anchors.height, anchors.width = 64, 64
  anchors.scales[:] = [0.25, 0.5, 1.0]
  model.first_stage_box_predictor_depth = 16
  model.first_stage_max_proposals = 16
  model.second_stage_batch_size = 16
  model.initial_crop_size = 4
  mtl = pipeline.model.mtl
  mtl.num_windows, mtl.window_min_size, mtl.foreground_grid_size = 4, 16, 8
  pipeline.train_config.batch_size = 2
  pipeline.train_config.num_steps = num_steps
  schedule = pipeline.train_config.optimizer.momentum_optimizer.learning_rate \
      .cosine_decay_learning_rate
  schedule.total_steps, schedule.warmup_steps = num_steps, max(1, num_steps // 10)
  for reader, name in ((pipeline.train_input_reader, 'train'),
                       (pipeline.eval_input_reader[0], 'test')):
    reader.label_map_path = os.path.join(data_dir, 'scenes_label_map.pbtxt')
    reader.tf_record_input_reader.input_path[:] = [
        os.path.join(data_dir, f'scenes_{name}.record')]
  pipeline.eval_config.batch_size = 2
  pipeline.eval_config.num_visualizations = 0
  return config_util.save_pipeline_config(pipeline, work_dir)


class Run:
  """One model_main_tf2 process; its stderr is saved and scanned for progress lines."""

  def __init__(self, args, log_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3',
               PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    self.start = time.time()
    self.log = open(log_path, 'w', encoding='utf-8')  # pylint: disable=consider-using-with
    self.process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-m', 'mtl_ssl.cli.model_main_tf2', *args], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, env=env)
    self.resumed, self.last_step, self.eval_started = None, None, None
    self.first_step_time = None
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.process.stderr:
      self.log.write(line)
      if (match := _STEP.search(line)):
        self.last_step = int(match.group(1))
        self.first_step_time = self.first_step_time or time.time()
      elif (match := _RESUMED.search(line)):
        self.resumed = int(match.group(1))
      elif _EVAL.search(line):
        self.eval_started = time.time()

  def alive(self):
    return self.process.poll() is None

  def kill(self):
    os.kill(self.process.pid, signal.SIGKILL)
    return self.finish()

  def finish(self, timeout=None):
    code = self.process.wait(timeout)
    self._reader.join(10)
    self.log.close()
    return code


def _wait_for(run, condition, timeout, poll=0.002):
  """Polls until condition() or the process ends; True when the condition was met."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if condition():
      return True
    if not run.alive():
      return False
    time.sleep(poll)
  raise TimeoutError(f'no progress within {timeout} s (hung?)')


def _temp_dirs(model_dir):
  return {p for p in glob.glob(os.path.join(glob.escape(model_dir), 'ckpt-*_temp'))}


def trigger_and_kill(run, mode, model_dir, rng, timeout):
  """Waits for the mode's moment, then SIGKILLs; returns a description or None if it ended."""
  if mode == 'startup':
    delay = rng.uniform(1.0, 15.0)
    if _wait_for(run, lambda: time.time() - run.start >= delay, timeout):
      run.kill()
      return f'{delay:.1f} s after start'
    return None
  if mode == 'training':
    if not _wait_for(run, lambda: run.first_step_time is not None, timeout):
      return None
    delay = rng.uniform(0.0, 2.0)
    if _wait_for(run, lambda: time.time() - run.first_step_time >= delay, timeout):
      run.kill()
      return f'{delay:.2f} s after the first step'
    return None
  if mode == 'eval':
    if not _wait_for(run, lambda: run.eval_started is not None, timeout):
      return None
    delay = rng.uniform(0.0, 2.0)
    if _wait_for(run, lambda: time.time() - run.eval_started >= delay, timeout):
      run.kill()
      return f'{delay:.2f} s into an evaluation'
    return None
  # checkpoint_write: the n-th save of this run (n in 1..3), a random 0-60 ms in. Watched from
  # the first step on (the leftovers of the previous kill are gone by then).
  if not _wait_for(run, lambda: run.first_step_time is not None, timeout):
    return None
  writes, seen = rng.randint(1, 3), {'previous': _temp_dirs(model_dir)}

  def appeared():
    now = _temp_dirs(model_dir)
    fresh, seen['previous'] = now - seen['previous'], now
    return bool(fresh)

  for _ in range(writes):
    if not _wait_for(run, appeared, timeout, poll=0.001):
      return None
  delay = rng.uniform(0.0, 0.06)
  time.sleep(delay)
  if not run.alive():
    return None
  run.kill()
  return f'save #{writes} of the run, {delay * 1000:.0f} ms after its temp dir appeared'


def leftovers(model_dir):
  """What a kill left in model_dir: temp dirs, partial files, atomic-write temp files."""
  from mtl_ssl import io_util  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import checkpoint_recovery  # pylint: disable=import-outside-toplevel
  found = []
  names = os.listdir(model_dir) if os.path.isdir(model_dir) else []
  found += [n for n in names if n.endswith('_temp')]
  prefixes = {n.split('.')[0] for n in names if re.match(r'ckpt-\d+\.(index|data-)', n)}
  for prefix in sorted(prefixes):
    if not checkpoint_recovery.is_complete(os.path.join(model_dir, prefix)):
      found.append(f'incomplete {prefix}')
  for sub in ('', 'eval'):
    directory = os.path.join(model_dir, sub)
    if os.path.isdir(directory):
      found += [os.path.join(sub, n) for n in os.listdir(directory) if io_util.is_temp_file(n)]
  return found


def write_phase(model_dir, left):
  """Where in CheckpointManager.save a checkpoint_write kill landed, from what it left."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import checkpoint_recovery  # pylint: disable=import-outside-toplevel
  if any(name.endswith('_temp') for name in left):
    return 'shard write (ckpt-N_temp left)'
  latest = tf.train.latest_checkpoint(model_dir)
  latest_step = int(latest.rsplit('-', 1)[1]) if latest else -1
  incomplete = [int(x.rsplit('-', 1)[1]) for x in left if x.startswith('incomplete ')]
  if any(step > latest_step for step in incomplete):
    return 'merge (data renamed, index partial or missing)'
  if incomplete:
    return 'max_to_keep sweep (old checkpoint half deleted)'
  complete = [int(p.rsplit('-', 1)[1][:-len('.index')])
              for p in glob.glob(os.path.join(model_dir, 'ckpt-*.index'))
              if checkpoint_recovery.is_complete(p[:-len('.index')])]
  if complete and max(complete) > latest_step:
    return 'before the state file update (complete, not listed)'
  return 'after the save (nothing partial)'


def state_latest_is_complete(model_dir):
  """(latest checkpoint of the state file or None, whether it is complete)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import checkpoint_recovery  # pylint: disable=import-outside-toplevel
  state = tf.train.get_checkpoint_state(model_dir) if os.path.isdir(model_dir) else None
  if state is None:
    return None, True
  return state.model_checkpoint_path, checkpoint_recovery.is_complete(state.model_checkpoint_path)


def final_checks(config_path, model_dir, num_steps, with_metrics=True):
  """The end-of-run checks; returns {check name: (passed, detail)}."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mtl_ssl.config import config_util  # pylint: disable=import-outside-toplevel
  from mtl_ssl.config import num_steps as num_steps_lib  # pylint: disable=import-outside-toplevel
  from mtl_ssl.config import validation  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import eval_loop  # pylint: disable=import-outside-toplevel
  results = {}
  indexes = glob.glob(os.path.join(model_dir, 'ckpt-*.index'))
  prefixes = sorted((p[:-len('.index')] for p in indexes),
                    key=lambda p: int(p.rsplit('-', 1)[1]))
  evaluation = eval_loop.CheckpointEvaluation(
      validation.load_and_validate(config_path, None, mode='eval'),
      os.path.join(model_dir, 'restore_check'))
  failures, tensors = [], 0
  for prefix in prefixes:
    try:
      evaluation.restore(prefix)  # every variable of the inference model must be found
      reader = tf.train.load_checkpoint(prefix)
      for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)  # checksum-verified read
        tensors += 1
        if isinstance(value, np.ndarray) and value.dtype.kind == 'f' and \
            not np.isfinite(value).all():
          failures.append(f'{os.path.basename(prefix)}: {name} not finite')
    except Exception as error:  # pylint: disable=broad-except
      failures.append(f'{os.path.basename(prefix)}: {type(error).__name__}: {error}'[:300])
  results['every remaining checkpoint restores'] = (
      bool(prefixes) and not failures,
      f'{len(prefixes)} checkpoints ({", ".join(os.path.basename(p) for p in prefixes)}), '
      f'{tensors} tensors read' + (f'; FAILED: {failures}' if failures else ''))
  latest = tf.train.latest_checkpoint(model_dir)
  results['run finished at the final step'] = (
      latest is not None and latest.endswith(f'ckpt-{num_steps}'), f'latest {latest}')
  try:
    written = config_util.get_pipeline_proto_from_file(os.path.join(model_dir, 'pipeline.config'))
    expected = config_util.get_pipeline_proto_from_file(config_path)
    # the last run's --num_train_steps is recorded, its learning-rate schedule stretched to it
    num_steps_lib.set_num_steps(expected.train_config, num_steps, True)
    same = written == expected
    results['pipeline.config intact'] = (
        same, 'parses, equal to the given config with the final --num_train_steps' if same
        else 'parses but differs from the given config with the final --num_train_steps')
  except Exception as error:  # pylint: disable=broad-except
    results['pipeline.config intact'] = (False, f'{type(error).__name__}: {error}')
  bad, steps = [], []
  for path in sorted(glob.glob(os.path.join(model_dir, 'eval', 'metrics_*.json'))):
    try:
      with open(path, encoding='utf-8') as f:
        content = json.load(f)
      step = int(re.search(r'metrics_(\d+)\.json$', path).group(1))
      if content['step'] != step or 'PascalBoxes_Precision/mAP@0.5IOU' not in content['metrics']:
        bad.append(os.path.basename(path))
      steps.append(step)
    except (ValueError, KeyError, TypeError) as error:
      bad.append(f'{os.path.basename(path)} ({error})')
  if with_metrics:
    results['metrics JSON files intact'] = (
        not bad and num_steps in steps,
        f'{len(steps)} files, steps {sorted(steps)}' + (f'; BAD: {bad}' if bad else ''))
  shutil.rmtree(os.path.join(model_dir, 'restore_check'), ignore_errors=True)
  return results


def run_harness(work_dir, kills, seed=0, checkpoint_every_n=10, eval_every_n_checkpoints=3,
                modes=MODES, record_summaries=True, train_and_eval=True, timeout=1200,
                final_timeout=3600, out=sys.stdout):
  """Runs the whole experiment; returns a dict with 'ok', 'lives', 'checks' and 'summary'.

  The killed runs train towards a step they never reach (the config's num_steps, 100000); the
  last run gets --num_train_steps = two checkpoint intervals past the furthest step logged.
  """
  rng = random.Random(seed)
  os.makedirs(work_dir, exist_ok=True)
  config_path = write_tiny_run(work_dir, 100000)
  model_dir = os.path.join(work_dir, 'model')
  shutil.rmtree(model_dir, ignore_errors=True)
  args = [f'--pipeline_config_path={config_path}', f'--model_dir={model_dir}',
          f'--checkpoint_every_n={checkpoint_every_n}', '--checkpoint_max_to_keep=3',
          '--log_every_n=1', f'--train_and_eval={train_and_eval}',
          f'--eval_every_n_checkpoints={eval_every_n_checkpoints}', f'--seed={seed}',
          f'--record_summaries={record_summaries}']
  lives, progress, previous_resume, problems = [], 0, 0, []
  print(f'{"run":>3} {"kill moment":<17} {"resumed":>7} {"last step":>9} {"lost":>4} '
        f'{"secs":>5}  when / left behind', file=out, flush=True)
  num_steps = None
  for index in range(kills + 1):
    final = index == kills
    mode = 'none (to the end)' if final else modes[index % len(modes)]
    if final:
      num_steps = (progress // checkpoint_every_n + 2) * checkpoint_every_n
    run = Run(args + ([f'--num_train_steps={num_steps}'] if final else []),
              os.path.join(work_dir, f'run_{index:02d}.log'))
    if final:
      try:
        code, when = run.finish(final_timeout), f'ran to the end (step {num_steps})'
      except subprocess.TimeoutExpired:
        code, when = run.kill(), f'TIMED OUT after {final_timeout} s'
    else:
      try:
        when = trigger_and_kill(run, mode, model_dir, rng, timeout)
      except TimeoutError as error:
        run.kill()
        when = f'ENDED (hung: {error})'
        problems.append(f'run {index}: {when}')
      code = run.finish(timeout) if when is None else -signal.SIGKILL
      if when is None:
        problems.append(f'run {index} ended before its {mode} kill (exit {code})')
        when = f'ENDED before the kill: {_last_line(run.log.name)}'
    resumed = run.resumed if run.resumed is not None else (
        None if run.last_step is None else 0)
    lost = None
    if resumed is not None:
      lost = progress - resumed
      if resumed < progress - checkpoint_every_n:
        problems.append(f'run {index} resumed at {resumed}, more than {checkpoint_every_n} '
                        f'steps before {progress}')
      if resumed < previous_resume:
        problems.append(f'run {index} resumed at {resumed} < earlier resume {previous_resume}')
      previous_resume = resumed
    progress = max(progress, run.last_step or 0)
    left = leftovers(model_dir)
    latest, complete = state_latest_is_complete(model_dir)
    if not complete:
      problems.append(f'after run {index} the state file names incomplete {latest}')
    if mode == 'checkpoint_write' and not when.startswith('ENDED'):
      when += f' -> {write_phase(model_dir, left)}'
    life = {'mode': mode, 'when': when, 'resumed': resumed, 'last_step': run.last_step,
            'lost': lost, 'seconds': time.time() - run.start, 'leftovers': left,
            'exit': code}
    lives.append(life)
    print(f'{index:>3} {mode:<17} {_text(resumed):>7} {_text(run.last_step):>9} '
          f'{_text(lost):>4} {life["seconds"]:>5.0f}  {when}'
          + (f' / {", ".join(left)}' if left else ''), file=out, flush=True)
  if lives[-1]['exit'] != 0:
    problems.append(f'the final run exited with {lives[-1]["exit"]}')
  checks = final_checks(config_path, model_dir, num_steps, with_metrics=train_and_eval)
  checks['resume never lost more than the checkpoint interval'] = (
      not [p for p in problems if 'resumed' in p],
      f'max steps lost {max((l["lost"] or 0) for l in lives)} (interval {checkpoint_every_n})')
  killed = lives[:-1]
  during_write = [l for l in killed if l['mode'] == 'checkpoint_write' and
                  not l['when'].startswith('ENDED')]
  phases = {}
  for life in during_write:
    phase = life['when'].split(' -> ')[-1]
    phases[phase] = phases.get(phase, 0) + 1
  summary = {
      'kills': sum(1 for l in killed if not l['when'].startswith('ENDED')),
      'by_mode': {m: sum(1 for l in killed if l['mode'] == m) for m in sorted(set(modes))},
      'kills_during_checkpoint_write': len(during_write),
      'checkpoint_write_kills_by_phase': phases,
      'num_steps': num_steps, 'checkpoint_every_n': checkpoint_every_n,
      'max_steps_lost': max((l['lost'] or 0) for l in lives),
      'total_seconds': sum(l['seconds'] for l in lives)}
  ok = not problems and all(passed for passed, _ in checks.values())
  print('\nchecks:', file=out)
  for name, (passed, detail) in checks.items():
    print(f'  {"PASS" if passed else "FAIL"}  {name}: {detail}', file=out)
  for problem in problems:
    print(f'  PROBLEM  {problem}', file=out)
  print(f'\nsummary: {json.dumps(summary)}\nresult: {"PASS" if ok else "FAIL"}', file=out,
        flush=True)
  return {'ok': ok, 'lives': lives, 'checks': checks, 'summary': summary,
          'problems': problems}


def _last_line(path):
  with open(path, encoding='utf-8') as f:
    lines = [line.strip() for line in f if line.strip()]
  return lines[-1][:200] if lines else '(no output)'


def _text(value):
  return '-' if value is None else str(value)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--work_dir', required=True, help='data, config, model_dir and run logs')
  parser.add_argument('--kills', type=int, default=24, help='number of SIGKILLs (default 24)')
  parser.add_argument('--seed', type=int, default=0, help='seed of the kill moments')
  parser.add_argument('--checkpoint_every_n', type=int, default=10)
  args = parser.parse_args(argv)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  result = run_harness(args.work_dir, args.kills, seed=args.seed,
                       checkpoint_every_n=args.checkpoint_every_n)
  return 0 if result['ok'] else 1


if __name__ == '__main__':
  sys.exit(main())
