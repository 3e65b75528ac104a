"""Two-worker MultiWorkerMirroredStrategy training on localhost vs one process.

Starts two `model_main_tf2 --num_workers=2` processes with TF_CONFIG (two ports on 127.0.0.1,
one CPU each) on the tiny test pipeline (tests/training/tiny_pipeline.py: 64x64 scenes,
MobileNet v1 Faster R-CNN with every MTL task), global batch 2 = 1 image per worker, then the
same steps in one process, and prints the logged losses of both side by side, the wall time of
each and whether only the chief's checkpoint survived.

The workers read the record file in shards (worker k: records k, k+2, ...), so their global
batch holds the same images as the single process's. Two things differ slightly: the initial
weights (the strategies create the seeded random initial values in a different order; see
Loss/regularization_loss at step 1) and the Task-1 windows (seeded per input pipeline).
Measured (3 steps, loaded 2-core machine): every detector loss equal to 4 digits at steps 1-3,
Loss/total_loss 9.43 vs 9.42 at step 3; only the chief's ckpt-3 is left in the model dir.

  PYTHONPATH=. python bench/bench_multiworker.py [--steps 3] [--workdir /tmp/mw]
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.join(REPO, 'tests', 'training'))
import tiny_pipeline  # pylint: disable=wrong-import-position

STEP_LINE = re.compile(r'Step (\d+)/\d+: (.*) \| ETA')


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def command(config, model_dir, steps, extra=()):
  return [sys.executable, '-m', 'mtl_ssl.cli.model_main_tf2', f'--pipeline_config_path={config}',
          f'--model_dir={model_dir}', f'--num_train_steps={steps}', f'--checkpoint_every_n={steps}',
          '--log_every_n=1', '--norecord_summaries', '--seed=1', *extra]


def logged_losses(stderr):
  losses = {}
  for step, values in STEP_LINE.findall(stderr):
    losses[int(step)] = dict(item.split('=') for item in values.split())
  return losses


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--workdir', default=None)
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix='mtl_ssl_multiworker_')
  data_dir = tiny_pipeline.write_scenes(os.path.join(root, 'scenes'))
  config = tiny_pipeline.write_pipeline(root, data_dir, batch_size=2)
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))

  ports = free_ports(2)
  cluster = {'worker': [f'127.0.0.1:{port}' for port in ports]}
  model_dir = os.path.join(root, 'two_workers')
  start = time.time()
  workers = []
  for index in range(2):
    worker_env = dict(env, TF_CONFIG=json.dumps({'cluster': cluster,
                                                 'task': {'type': 'worker', 'index': index}}))
    workers.append(subprocess.Popen(command(config, model_dir, args.steps, ['--num_workers=2']),
                                    env=worker_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True))
  outputs = [w.communicate(timeout=1800) for w in workers]
  multi_seconds = time.time() - start

  start = time.time()
  single = subprocess.run(command(config, os.path.join(root, 'one_process'), args.steps),
                          env=env, capture_output=True, text=True, timeout=1800, check=False)
  single_seconds = time.time() - start

  for index, (worker, (_, stderr)) in enumerate(zip(workers, outputs)):
    print(f'worker {index}: exit code {worker.returncode}')
    if worker.returncode:
      print(stderr[-3000:])
  print(f'one process: exit code {single.returncode}')
  if single.returncode:
    print(single.stderr[-3000:])
  chief_losses, single_losses = logged_losses(outputs[0][1]), logged_losses(single.stderr)
  names = sorted({k for v in chief_losses.values() for k in v if k.startswith('Loss/')})
  print(f'\n{"step":>4} {"loss":<45} {"2 workers":>10} {"1 process":>10}')
  for step in sorted(chief_losses):
    for name in names:
      print(f'{step:>4} {name:<45} {chief_losses[step].get(name, "-"):>10} '
            f'{single_losses.get(step, {}).get(name, "-"):>10}')
  kept = sorted(n for n in os.listdir(model_dir) if n.startswith(('ckpt', 'workertemp')))
  print(f'\nwall time: 2 workers {multi_seconds:.1f} s, 1 process {single_seconds:.1f} s')
  print(f'{model_dir}: {kept}')


if __name__ == '__main__':
  main()
