"""One run of the study, in its own process: train (resuming), evaluate, write result.json.

  python -m bench.study.runner --spec <run_dir>/spec.json

The scheduler starts it with stdout and stderr in <run_dir>/log.txt. Training resumes from the
latest checkpoint of the run directory (model_main_tf2's resume); every checkpoint of
spec['eval_steps'] is evaluated once (its <run_dir>/eval/metrics_<step>.json is reused after).
SIGTERM saves a checkpoint and exits with 143: the next start goes on from there. Each process
start appends its wall time, CPU time and load average to <run_dir>/sessions.json.
"""
import argparse
import json
import os
import resource
import signal
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

PASCAL_MAP = 'PascalBoxes_Precision/mAP@0.5IOU'
COCO_AP = 'DetectionBoxes_Precision/mAP'
COCO_AP50 = 'DetectionBoxes_Precision/mAP@.50IOU'
CURVE_KEYS = {'pascal_map': PASCAL_MAP, 'coco_ap': COCO_AP, 'coco_ap50': COCO_AP50,
              'tide_ap50': 'TIDE/AP50'}
EXIT_STOPPED = 143


def _cpu_seconds():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def _write_json(path, value):
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(value, f, indent=2, sort_keys=True)
  os.replace(tmp, path)  # a result is complete or absent, never half written


def _read_json(path, default=None):
  if not os.path.isfile(path):
    return default
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def _set_threads(threads):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def checkpoint_for_step(run_dir, step):
  prefix = os.path.join(run_dir, f'ckpt-{step}')
  return prefix if os.path.isfile(prefix + '.index') else None


def train(spec, pipeline_config, marks):
  """Trains to spec['num_steps']; returns (steps trained in this process, train seconds).
  Appends (step, CPU seconds, wall time) at every checkpoint to `marks`: the slope between two
  of them is the steady cost of a step, without the model build and tracing."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import checkpoints  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import train_loop  # pylint: disable=import-outside-toplevel
  latest = tf.train.latest_checkpoint(spec['run_dir'])
  start_step = checkpoints.checkpoint_step(latest) if latest else 0
  if start_step >= spec['num_steps']:
    return 0, 0.0
  print(f'{spec["name"]}: training from step {start_step} to {spec["num_steps"]}', flush=True)
  started = time.time()
  train_loop.train_loop(
      pipeline_config, spec['run_dir'], train_steps=spec['num_steps'],
      checkpoint_every_n=spec['checkpoint_every_n'], checkpoint_max_to_keep=None,
      record_summaries=True, log_every_n=max(1, min(100, spec['num_steps'] // 20)),
      seed=spec['seed'],
      on_checkpoint=lambda path, step: marks.append((int(step), _cpu_seconds(), time.time())))
  seconds = time.time() - started
  latest = tf.train.latest_checkpoint(spec['run_dir'])
  end_step = checkpoints.checkpoint_step(latest) if latest else 0
  return end_step - start_step, seconds


def evaluate(spec, pipeline_config):
  """Metrics of every eval step ({step: metrics}); evaluates the missing ones."""
  from mtl_ssl.config import validation  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import eval_loop  # pylint: disable=import-outside-toplevel
  results, evaluation = {}, None
  for step in spec['eval_steps']:
    path = os.path.join(spec['run_dir'], 'eval', f'metrics_{step}.json')
    saved = _read_json(path)
    if saved is not None:
      results[step] = saved['metrics']
      continue
    checkpoint = checkpoint_for_step(spec['run_dir'], step)
    if checkpoint is None:
      print(f'{spec["name"]}: no checkpoint at step {step}; that curve point stays empty',
            flush=True)
      continue
    if evaluation is None:
      configs = validation.load_and_validate(pipeline_config, mode='eval')
      evaluation = eval_loop.CheckpointEvaluation(configs, spec['run_dir'])
    results[step] = evaluation.evaluate_checkpoint(checkpoint, step)
  return results


def _last(sessions, key):
  values = [s[key] for s in sessions if s.get(key) is not None]
  return values[-1] if values else None


def summarize(spec, metrics_by_step, sessions):
  """The result.json dict."""
  final_step = spec['num_steps']
  if final_step not in metrics_by_step:
    raise RuntimeError(f'{spec["name"]}: the final checkpoint (step {final_step}) has no metrics')
  final = metrics_by_step[final_step]
  curve = [dict({'step': step}, **{name: metrics_by_step[step].get(key)
                                   for name, key in CURVE_KEYS.items()})
           for step in sorted(metrics_by_step)]
  trained = [s for s in sessions if s.get('steps_trained')]
  train_seconds = sum(s['train_seconds'] for s in trained)
  return {
      'fingerprint': spec['fingerprint'], 'name': spec['name'], 'dataset': spec['dataset'],
      'variant': spec['variant'], 'variant_label': spec['variant_label'], 'seed': spec['seed'],
      'num_steps': spec['num_steps'], 'batch_size': spec['batch_size'],
      'pascal_map': final.get(PASCAL_MAP), 'coco_ap': final.get(COCO_AP),
      'coco_ap50': final.get(COCO_AP50),
      'tide': {k[len('TIDE/'):]: v for k, v in final.items() if k.startswith('TIDE/')},
      'per_class_ap': {k.rsplit('/', 1)[-1]: v for k, v in final.items()
                       if k.startswith('PascalBoxes_PerformanceByCategory/')},
      'mtl_metrics': {k: v for k, v in final.items() if k.startswith('MTL/')},
      'curve': curve,
      'timing': {
          'train_seconds': round(train_seconds, 1),
          'steps_trained': sum(s['steps_trained'] for s in trained),
          'train_steps_per_sec': (round(sum(s['steps_trained'] for s in trained) / train_seconds,
                                        3) if train_seconds else None),
          'wall_seconds': round(sum(s['wall_seconds'] for s in sessions), 1),
          'cpu_seconds': round(sum(s['cpu_seconds'] for s in sessions), 1),
          'eval_cpu_seconds': round(sum(s.get('eval_cpu_seconds', 0) for s in sessions), 1),
          'steady_cpu_seconds_per_step': _last(sessions, 'steady_cpu_seconds_per_step'),
          'steady_seconds_per_step': _last(sessions, 'steady_seconds_per_step'),
          'sessions': len(sessions),
          'threads': spec.get('threads'),
          'load_average': [s['load_average_start'] for s in sessions],
      },
  }


PID_FILE = 'runner.pid'


def _exit_stopped(signum, frame):
  del signum, frame
  raise SystemExit(EXIT_STOPPED)


def process_alive(pid):
  """True when process pid exists and is a runner of the study (not a reused pid)."""
  try:
    with open(f'/proc/{int(pid)}/cmdline', 'rb') as f:
      return b'bench.study.runner' in f.read()
  except (OSError, ValueError):
    return False


def running_pid(run_dir):
  """The pid of a live runner of run_dir, else None."""
  try:
    with open(os.path.join(run_dir, PID_FILE), encoding='utf-8') as f:
      pid = int(f.read().strip())
  except (OSError, ValueError):
    return None
  return pid if pid != os.getpid() and process_alive(pid) else None


def run(spec):
  started, cpu_started = time.time(), _cpu_seconds()
  load_start = round(os.getloadavg()[0], 2)
  os.makedirs(spec['run_dir'], exist_ok=True)
  other = running_pid(spec['run_dir'])
  if other:
    print(f'{spec["name"]}: process {other} runs it already; not starting a second one',
          flush=True)
    return 1
  with open(os.path.join(spec['run_dir'], PID_FILE), 'w', encoding='utf-8') as f:
    f.write(str(os.getpid()))
  # outside the training loop (which saves a checkpoint first), SIGTERM ends the run at once
  signal.signal(signal.SIGTERM, _exit_stopped)
  try:
    return _run(spec, started, cpu_started, load_start)
  finally:
    os.remove(os.path.join(spec['run_dir'], PID_FILE))


def _run(spec, started, cpu_started, load_start):
  pipeline_config = os.path.join(spec['run_dir'], 'pipeline.config')
  if not os.path.isfile(pipeline_config):
    with open(pipeline_config, 'w', encoding='utf-8') as f:
      f.write(spec['config_text'])
  _set_threads(spec.get('threads'))
  from mtl_ssl import cli  # pylint: disable=import-outside-toplevel
  cli.init_logging()
  sessions_path = os.path.join(spec['run_dir'], 'sessions.json')
  sessions = _read_json(sessions_path, [])
  session = {'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'load_average_start': load_start}
  code, marks = 0, []
  try:
    steps, seconds = train(spec, pipeline_config, marks)
    session.update(steps_trained=steps, train_seconds=round(seconds, 1),
                   train_cpu_seconds=round(_cpu_seconds() - cpu_started, 1))
    if len(marks) >= 2 and marks[-1][0] > marks[0][0]:
      steps_between = marks[-1][0] - marks[0][0]
      session['steady_cpu_seconds_per_step'] = round(
          (marks[-1][1] - marks[0][1]) / steps_between, 4)
      session['steady_seconds_per_step'] = round((marks[-1][2] - marks[0][2]) / steps_between, 4)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mtl_ssl.training import checkpoints  # pylint: disable=import-outside-toplevel
    latest = tf.train.latest_checkpoint(spec['run_dir'])
    if not latest or checkpoints.checkpoint_step(latest) < spec['num_steps']:
      print(f'{spec["name"]}: stopped before step {spec["num_steps"]}; run the study again to '
            'resume', flush=True)
      code = EXIT_STOPPED
    else:
      eval_started, eval_cpu_started = time.time(), _cpu_seconds()
      metrics = evaluate(spec, pipeline_config)
      session.update(eval_seconds=round(time.time() - eval_started, 1),
                     eval_cpu_seconds=round(_cpu_seconds() - eval_cpu_started, 1))
  finally:
    session.update(wall_seconds=round(time.time() - started, 1),
                   cpu_seconds=round(_cpu_seconds() - cpu_started, 1),
                   load_average_end=round(os.getloadavg()[0], 2))
    sessions.append(session)
    _write_json(sessions_path, sessions)
  if code:
    return code
  result = summarize(spec, metrics, sessions)
  _write_json(os.path.join(spec['run_dir'], 'result.json'), result)
  print(f'{spec["name"]}: PASCAL mAP@0.5 {result["pascal_map"]:.4f}, COCO AP '
        f'{result["coco_ap"]:.4f} at step {spec["num_steps"]}', flush=True)
  return 0


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--spec', required=True, help='the run spec JSON written by the scheduler')
  args = parser.parse_args(argv)
  with open(args.spec, encoding='utf-8') as f:
    spec = json.load(f)
  try:
    return run(spec)
  except KeyboardInterrupt:
    return 130


if __name__ == '__main__':
  sys.exit(main())
