"""FPN Faster R-CNN ResNet-50: mtl-ssl's training step vs the OD API's own, side by side.

Both build the OD API sample model (pipeline_configs/fpn/faster_rcnn_resnet50_fpn_coco17_*.config,
whose model block is faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config's) with a fixed
--size input, train on the same synthetic batches (bench/fpn_synthetic.py) with momentum SGD and
gradient clipping 10, and are timed in round robin in ONE run, so machine load hits all alike:
  mtl-ssl             our step (tf.function): provide_groundtruth, predict, losses, L2, apply
  mtl-ssl + MTL       the same with the mtl { } block of ..._mtl.config (all tasks + refine)
  OD API              model_lib_v2.eager_train_step in a tf.function, sample's TPU flags on
                      (use_static_shapes, use_matmul_crop_and_resize, ... as shipped)
  OD API, no TPU flags  the same config without those flags (its native-op CPU path)
The OD API runs in child processes (bench/odapi_fpn_train_step.py) with --odapi_python, a Python
where `object_detection` imports (e.g. /work/odapi/venv/bin/python, see docs/fpn.md); without it
only the mtl-ssl rows are measured. Prints a markdown table (min / median ms per step, and the
ratio to the OD API's median); nothing is hard-coded.

  PYTHONPATH=. python bench/bench_fpn.py --odapi_python /work/odapi/venv/bin/python
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fpn_synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'pipeline_configs' / 'fpn'
TPU_FLAGS = ('use_static_shapes: true use_matmul_crop_and_resize: true '
             'use_static_balanced_label_sampler: true use_matmul_gather_in_matcher: true')


def _config_text(name, size, tpu_flags):
  text = (CONFIGS / f'faster_rcnn_resnet50_fpn_coco17_{name}.config').read_text()
  text = text.replace(
      '''      keep_aspect_ratio_resizer {
        min_dimension: 640
        max_dimension: 640
        pad_to_max_dimension: true
      }''', f'      fixed_shape_resizer {{ height: {size} width: {size} }}')
  if tpu_flags:
    text = text.replace('    clip_anchors_to_image: true\n',
                        f'    clip_anchors_to_image: true\n    {TPU_FLAGS}\n')
  return text


class _Ours:
  """One mtl-ssl model and its compiled train step."""

  def __init__(self, text, batches_np):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tf_keras  # pylint: disable=g-import-not-at-top
    from mtl_ssl.builders import model_builder  # pylint: disable=g-import-not-at-top
    from mtl_ssl.config import config_util  # pylint: disable=g-import-not-at-top
    from mtl_ssl.training import model_io  # pylint: disable=g-import-not-at-top

    configs = config_util.create_configs_from_pipeline_proto(
        config_util.parse_pipeline_text(text, 'bench'))
    model = model_builder.build(configs['model'], is_training=True)
    num_classes = configs['model'].faster_rcnn.num_classes
    optimizer = tf_keras.optimizers.SGD(1e-3, momentum=0.9)
    self.batches = []
    for images, boxes, classes, counts in batches_np:
      preprocessed, shapes = model.preprocess(tf.constant(images))
      labels = {'groundtruth_boxes': tf.constant(boxes),
                'groundtruth_classes': tf.one_hot(classes - 1, num_classes),
                'groundtruth_weights': tf.ones(boxes.shape[:2]),
                'num_groundtruth_boxes': tf.constant(counts)}
      self.batches.append((preprocessed, shapes, labels))

    @tf.function
    def step(images, shapes, labels):
      model_io.provide_groundtruth(model, labels)
      with tf.GradientTape() as tape:
        prediction = model.predict(images, shapes, training=True)
        _, total = model_io.losses_with_total(model, prediction, shapes)
      variables = model.trainable_variables
      gradients = tape.gradient(total, variables)
      pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
      clipped, _ = tf.clip_by_global_norm([g for g, _ in pairs], 10.0)
      optimizer.apply_gradients(zip(clipped, [v for _, v in pairs]))
      model.clear_groundtruth()
      return total

    self._step = step
    self._count = 0
    self.trainable_variables = None
    self.run(2)  # trace + warm-up
    self.trainable_variables = len(model.trainable_variables)

  def run(self, count):
    times = []
    for _ in range(count):
      images, shapes, labels = self.batches[self._count % len(self.batches)]
      self._count += 1
      start = time.perf_counter()
      self._step(images, shapes, labels).numpy()
      times.append((time.perf_counter() - start) * 1000.0)
    return times


class _OdApi:
  """The OD API in a child process, driven line by line."""

  def __init__(self, python, text, args):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}  # keep mtl_ssl out
    env['TF_USE_LEGACY_KERAS'] = '1'
    self._process = subprocess.Popen(
        [python, str(pathlib.Path(__file__).with_name('odapi_fpn_train_step.py'))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    self._send({'config': text, 'batch': args.batch, 'size': args.size,
                'batches': args.batches, 'seed': args.seed})
    ready = self._receive()
    if not ready.get('ready'):
      raise RuntimeError(f'the OD API child did not start: {ready}')
    self.trainable_variables = ready['trainable_variables']

  def _send(self, message):
    self._process.stdin.write(json.dumps(message) + '\n')
    self._process.stdin.flush()

  def _receive(self):
    line = self._process.stdout.readline()
    if not line:
      raise RuntimeError('the OD API child exited (see its stderr above)')
    return json.loads(line)

  def run(self, count):
    self._send({'steps': count})
    return self._receive()['times_ms']

  def close(self):
    """Asks the child to quit; a child slow to tear TensorFlow down is killed (its times are in)."""
    try:
      self._send({'quit': True})
      self._process.wait(timeout=60)
    except (subprocess.TimeoutExpired, BrokenPipeError):
      self._process.kill()
      self._process.wait()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--odapi_python', default=os.environ.get('MTL_SSL_ODAPI_PYTHON'),
                      help='Python of a venv with the OD API TF2 (object_detection)')
  parser.add_argument('--size', type=int, default=320, help='input size (the sample: 640)')
  parser.add_argument('--batch', type=int, default=2)
  parser.add_argument('--batches', type=int, default=3, help='distinct synthetic batches')
  parser.add_argument('--rounds', type=int, default=4)
  parser.add_argument('--steps_per_round', type=int, default=2)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--no_mtl', action='store_true', help='skip the mtl-ssl + MTL row')
  args = parser.parse_args()

  batches_np = fpn_synthetic.batches(args.batches, args.batch, args.size, 90, args.seed)
  runners = {}
  load_start = os.getloadavg()[0]
  runners['mtl-ssl'] = _Ours(_config_text('baseline', args.size, False), batches_np)
  if not args.no_mtl:
    runners['mtl-ssl + MTL'] = _Ours(_config_text('mtl', args.size, False), batches_np)
  if args.odapi_python:
    runners['OD API'] = _OdApi(args.odapi_python, _config_text('baseline', args.size, True), args)
    runners['OD API, no TPU flags'] = _OdApi(
        args.odapi_python, _config_text('baseline', args.size, False), args)
  times = {name: [] for name in runners}
  for _ in range(args.rounds):
    for name, runner in runners.items():
      times[name] += runner.run(args.steps_per_round)
  reference = statistics.median(times['OD API']) if 'OD API' in times else None
  print(f'\nFPN Faster R-CNN ResNet-50 train step, {args.size}x{args.size}, batch {args.batch}, '
        f'{args.rounds} rounds x {args.steps_per_round} steps (load avg {load_start:.1f} -> '
        f'{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n')
  print('| implementation | trainable variables | min ms/step | median ms/step | median / OD API |')
  print('|---|---|---|---|---|')
  for name, values in times.items():
    ratio = f'{statistics.median(values) / reference:.2f}' if reference else 'n/a'
    print(f'| {name} | {runners[name].trainable_variables} | {min(values):.0f} | '
          f'{statistics.median(values):.0f} | {ratio} |', flush=True)
  for runner in runners.values():  # after the table: a slow child exit loses nothing
    if isinstance(runner, _OdApi):
      runner.close()


if __name__ == '__main__':
  main()
