"""Frozen batch norm: the fused inference kernel vs x * a + b (what FrozenBatchNormalization
computes in float32), on the ResNet-50 C4 baseline of bench_cost.py: train step and inference.

  PYTHONPATH=. python bench/bench_frozen_bn.py [--rounds 8]

Both forms are built in one process (the layer's call is swapped while each model traces) and
timed round robin; prints medians and the ratio x*a+b / fused. Inference calls use the fused
kernel in both (the layer takes x * a + b in training calls only), so that row checks that
inference is unchanged.
"""
import argparse
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_cost  # pylint: disable=g-import-not-at-top,wrong-import-position


def _fused_call(layer, inputs, training=None):
  import tf_keras  # pylint: disable=g-import-not-at-top
  del training
  return tf_keras.layers.BatchNormalization.call(layer, inputs, training=False)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rounds', type=int, default=8)
  args = parser.parse_args()
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mtl_ssl.backbones import base  # pylint: disable=g-import-not-at-top
  affine_call = base.FrozenBatchNormalization.call
  batches = bench_cost._synthetic.batches(4)  # pylint: disable=protected-access
  images, _ = bench_cost._synthetic.batches(1, batch=1, seed=1)[0]  # pylint: disable=protected-access
  image = tf.constant([tf.io.encode_jpeg(tf.cast(images[0], tf.uint8)).numpy()])
  train, serve = {}, {}
  try:
    for label, call in (('fused', _fused_call), ('x*a+b', affine_call)):
      base.FrozenBatchNormalization.call = call
      train[label] = bench_cost.TrainVariant('baseline', batches)
      train[label].run(record=False)  # traces with this call
      serve[label] = bench_cost.export_variant('baseline', None, save=False)
      serve[label](input_tensor=image)  # (a concrete function: traced already)
  finally:
    base.FrozenBatchNormalization.call = affine_call
  infer = {label: [] for label in serve}
  for round_index in range(args.rounds + 1):
    for label in train:
      train[label].run(record=round_index > 0)
      start = time.perf_counter()
      np.asarray(serve[label](input_tensor=image)['detection_scores'])
      if round_index:
        infer[label].append((time.perf_counter() - start) * 1000.0)
  median = bench_cost._median  # pylint: disable=protected-access
  print(f'load average after: {" ".join(f"{x:.2f}" for x in os.getloadavg())}')
  print('\n| ResNet-50 C4 baseline (median ms) | fused | x*a+b | ratio |\n|---|---|---|---|')
  for what, fused, affine in (
      ('train step (batch 2)', median(train['fused'].times), median(train['x*a+b'].times)),
      ('inference (1 image)', median(infer['fused']), median(infer['x*a+b']))):
    print(f'| {what} | {fused:.0f} | {affine:.0f} | {affine / fused:.3f} |')


if __name__ == '__main__':
  main()
