"""MirroredStrategy over 2 logical CPU devices matches one device at the same global batch.

Runs in a subprocess: the CPU must be split into logical devices before TensorFlow starts.
Both runs resume from the same 1-step checkpoint and read the same data in the same order; the
tiny pipeline samples deterministically (see tiny_pipeline), so the only differences are float
summation orders.
"""
import json
import os
import subprocess
import sys

import pytest

import tiny_pipeline

SCRIPT = r'''
import json, os, shutil, sys
from mtl_ssl.training import strategies
devices = strategies.split_cpu(2)
import numpy as np
import tensorflow as tf
from mtl_ssl.training import train_loop

config, root = sys.argv[1], sys.argv[2]
start = os.path.join(root, 'start')
train_loop.train_loop(config, start, train_steps=1, checkpoint_every_n=1,
                      record_summaries=False, seed=3)
runs = {'one_device': tf.distribute.OneDeviceStrategy('/cpu:0'),
        'mirrored': tf.distribute.MirroredStrategy(devices)}
out = {'devices': devices}
for name, strategy in runs.items():
  model_dir = os.path.join(root, name)
  shutil.copytree(start, model_dir)
  out[name] = train_loop.train_loop(config, model_dir, train_steps=4, strategy=strategy,
                                    checkpoint_every_n=10, log_every_n=1,
                                    record_summaries=False, seed=3)
  out[name + '_replicas'] = strategy.num_replicas_in_sync
readers = [tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(root, n)))
           for n in runs]
keys = [k for k in readers[0].get_variable_to_shape_map()
        if k.startswith('model/') and 'OPTIMIZER_SLOT' not in k]
out['num_weights'] = len(keys)
out['max_weight_difference'] = max(
    float(np.max(np.abs(readers[0].get_tensor(k) - readers[1].get_tensor(k)))) for k in keys)
out['max_weight_change'] = max(
    float(np.max(np.abs(readers[0].get_tensor(k) -
                        tf.train.load_variable(os.path.join(start, 'ckpt-1'), k)))) for k in keys)
print('RESULT ' + json.dumps(out))
'''


def test_mirrored_two_cpus_matches_one_device(tmp_path):
  data_dir = tiny_pipeline.write_scenes(tmp_path / 'scenes')
  config = tiny_pipeline.write_pipeline(tmp_path, data_dir, batch_size=2)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  done = subprocess.run([sys.executable, '-c', SCRIPT, config, str(tmp_path)], env=env,
                        capture_output=True, text=True, timeout=900, check=False)
  lines = [l for l in done.stdout.splitlines() if l.startswith('RESULT ')]
  assert done.returncode == 0 and lines, done.stderr[-3000:]
  out = json.loads(lines[-1][len('RESULT '):])
  assert out['one_device_replicas'] == 1 and out['mirrored_replicas'] == 2
  one, mirrored = out['one_device'], out['mirrored']
  assert [h['step'] for h in one] == [h['step'] for h in mirrored] == [2, 3, 4]
  for a, b in zip(one, mirrored):
    for name in a:
      if name.startswith('Loss/'):
        assert b[name] == pytest.approx(a[name], rel=1e-5, abs=1e-6), (a['step'], name)
  # the runs really trained (weights moved ~0.1) and moved the same way (measured: 3e-8)
  assert out['max_weight_change'] > 1e-2
  assert out['max_weight_difference'] < 1e-5
  assert out['num_weights'] > 50
