"""What MTL-SSL costs on top of the detector, and our detector vs the OD API: one command.

Setting (issue 11): Faster R-CNN ResNet-50 C4 (box-classifier stage with stride 2, as the OD
API TF2 Keras extractor), fixed 320 x 320 images (static shapes), batch 2, 300 proposals,
64 sampled RoIs per image, 20 classes, crop 14 + 2x2 max-pool, random weights, SGD momentum,
gradient clipping 10. Every variant is built in this process and timed ROUND ROBIN (one step
of each per round), so load drift on a shared machine hits all alike; times are medians over
the rounds after two warm-up rounds; ratios are within one run.

  train       a traced train step (forward, losses, backward, clipping, apply) fed like the
              trainer: images preprocessed and the MTL labels made BEFORE the step, as the
              input pipeline does (in parallel with training); the label cost per batch is
              printed separately. Variants: baseline, all tasks + refine as in the paper
              ("paper": own block-4 copies on RoI crops), with refine_top_k 16 in training
              too ("top16 train"), the lean preset ("lean": that and 16
              windows, refine_top_k 16 in training too; also on the paper's shared stage), with
              aux_stage_input 'whole_feature_map' ("fast"), baseline / paper / fast also with
              train_config.use_bfloat16. --train_variants picks a subset.
  OD API      the OD API's own eager_train_step on the same batches, in a child process of
              --odapi_python (or $MTL_SSL_ODAPI_PYTHON), interleaved with the rounds; without
              it the row says "not measured". With and without its TPU-only flags. It trains
              every layer, so its rows are compared with "baseline all layers" (ours with
              conv1 and block 1 trained too; by default they are frozen, as in the paper).
  inference   SavedModels exported by mtl_ssl.export (encoded_image_string_tensor input, so
              one signature serves 1 and 8 images), baseline and all tasks + refine (paper,
              refine_top_k 32 and 16 (= lean), lean on the shared stage, whole feature map, bf16),
              called round robin on 1 and on 8 JPEG images. The paper variant on 8 images needs ~10 GB (1,201 context crops
              per image): --infer_counts / --infer_variants pick a subset.

  PYTHONPATH=. python bench/bench_cost.py [--rounds 20] [--odapi_python PATH] [--json out.json]
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HEAD = _synthetic.HEAD
_ALL_TASKS = ('window: true window_class_loss_weight: 1.0 closeness: true '
              'closeness_loss_weight: 0.3 edgemask: true edgemask_loss_weight: 1.0 '
              'refine: true refine_residue: true refined_classification_loss_weight: 1.0 '
              f'window_box_predictor {{ {_HEAD} }} closeness_box_predictor {{ {_HEAD} }} '
              'edgemask_predictor { kernel_size: 1 }')
_FAST = " aux_stage_input: 'whole_feature_map'"
# the lean preset (docs/performance.md): 16 windows, the refiner and the closeness head on each
# image's 16 best RoIs / proposals in training and at inference; also on the shared stage
_TOP16 = ' refine_top_k: 16 refine_top_k_in_training: true'
_LEAN = ' num_windows: 16' + _TOP16
_SHARED = " shared_feature: 'classifier_feature_maps'"
# name -> (mtl block text or '', use_bfloat16)
VARIANTS = {
    'baseline': ('', False),
    'mtl paper': (_ALL_TASKS, False),
    # inference only: refine the K best of the 300 proposals (training is the paper's)
    'mtl paper top32': (_ALL_TASKS + ' refine_top_k: 32', False),
    'mtl paper top16': (_ALL_TASKS + ' refine_top_k: 16', False),
    'mtl fast': (_ALL_TASKS + _FAST, False),
    'mtl top16 train': (_ALL_TASKS + _TOP16, False),
    'mtl lean': (_ALL_TASKS + _LEAN, False),
    # the scenes study's lean proportions (half the windows and RoIs) on this setting
    'mtl lean32': (_ALL_TASKS + ' num_windows: 32 refine_top_k: 32 refine_top_k_in_training: true',
                   False),
    'mtl shared lean': (_ALL_TASKS + _LEAN + _SHARED, False),
    # the window head's crops at 8 (+ the 2 x 2 pool: 4 x 4 stage inputs) instead of 14 (7 x 7)
    'mtl lean wc8': (_ALL_TASKS + _LEAN + ' window_crop_size: 8', False),
    'mtl lean wc10 cc8': (_ALL_TASKS + _LEAN + ' window_crop_size: 10 closeness_crop_size: 8',
                          False),
    'mtl lean wc8 cc8': (_ALL_TASKS + _LEAN + ' window_crop_size: 8 closeness_crop_size: 8',
                         False),
    # the MTL heads on every second step (the detector alone on the others): one timed
    # "step" is the mean of one MTL step and one detector-only step
    'mtl lean every2': (_ALL_TASKS + _LEAN + ' train_every_n_steps: 2', False),

    'baseline bf16': ('', True),
    # conv1 and block 1 trained too: the OD API's Keras ResNet extractor trains every layer,
    # ours freezes those by default (as the paper), 13 of 278 GFLOP less per step; the OD API
    # rows compare these, so both sides do the same work
    'baseline all layers': ('', False),
    'baseline bf16 all layers': ('', True),
    'mtl paper bf16': (_ALL_TASKS, True),
    'mtl fast bf16': (_ALL_TASKS + _FAST, True),
}
TRAIN_VARIANTS = tuple(name for name in VARIANTS if ' paper top' not in name)
# 'mtl top16 train' and 'mtl lean' infer as 'mtl paper top16' (num_windows and the training
# flag do not matter there); 'mtl lean wc8 cc8' infers as that with its smaller crops
INFER_VARIANTS = ('baseline', 'mtl paper', 'mtl paper top32', 'mtl paper top16',
                  'mtl lean wc8 cc8', 'mtl shared lean', 'mtl fast', 'baseline bf16',
                  'mtl fast bf16')
ODAPI_VARIANTS = {'OD API TF2': [], 'OD API TF2 + TPU flags': ['--tpu_flags']}
ALL_LAYERS = ' all layers'  # variants named so build with num_frozen_blocks 0


def pipeline_text(name):
  mtl, bf16 = VARIANTS[name]
  mtl = f'mtl {{ {mtl} }}' if mtl else ''
  return (f'model {{ {mtl}\n{_synthetic.faster_rcnn_c4_text()} }}\n'
          f'train_config {{ use_bfloat16: {"true" if bf16 else "false"} }}\n')


def _median(values):
  values = sorted(values)
  mid = len(values) // 2
  return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


class TrainVariant:
  """One model + optimizer and its traced step, fed pipeline-made batches."""

  def __init__(self, name, batches):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tf_keras  # pylint: disable=g-import-not-at-top
    from mtl_ssl.builders import model_builder  # pylint: disable=g-import-not-at-top
    from mtl_ssl.config import config_util  # pylint: disable=g-import-not-at-top
    from mtl_ssl.training import model_io  # pylint: disable=g-import-not-at-top
    pipeline = config_util.parse_pipeline_text(pipeline_text(name))
    self.name = name
    overrides = {'num_frozen_blocks': 0} if name.endswith(ALL_LAYERS) else {}
    self.model = model_builder.build(pipeline.model, is_training=True,
                                     max_num_groundtruth_boxes=_synthetic.MAX_BOXES,
                                     use_bfloat16=pipeline.train_config.use_bfloat16,
                                     box_classifier_stride=2, **overrides)
    self.optimizer = tf_keras.optimizers.SGD(1e-3, momentum=0.9)
    self.batches = [self._pipeline_batch(images, labels, pipeline) for images, labels in batches]
    self.times, self._next = [], 0
    model = self.model
    # mtl.train_every_n_steps: N - 1 detector-only steps (as the trainer: MTL heads left out,
    # their variables not updated) per MTL step
    self.every = (int(pipeline.model.mtl.train_every_n_steps) if model.mtl_heads is not None
                  else 1)

    def step(features, labels, mtl_on=True):
      model_io.provide_groundtruth(model, labels)
      with tf.GradientTape() as tape:
        predictions = model.predict(features['image'], features['true_image_shape'],
                                    training=True)
        _, total = model_io.losses_with_total(model, predictions,
                                              features['true_image_shape'])
      model.clear_groundtruth()
      variables = model.trainable_variables
      if not mtl_on:
        heads = {v.ref() for v in model.mtl_heads.trainable_variables}
        variables = [v for v in variables if v.ref() not in heads]
      gradients, _ = tf.clip_by_global_norm(tape.gradient(total, variables), 10.0)
      self.optimizer.apply_gradients(zip(gradients, variables))
      return total

    self._step = tf.function(step, autograph=False)
    self._detector_step = tf.function(lambda f, l: step(f, l, mtl_on=False), autograph=False)

  def _pipeline_batch(self, images, labels, pipeline):
    """What the input pipeline yields: preprocessed images and padded labels incl. MTL."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from mtl_ssl.data import fields  # pylint: disable=g-import-not-at-top
    preprocessed, shapes = self.model.preprocess(tf.constant(images))
    features = {'image': preprocessed, 'true_image_shape': shapes}
    batch_labels = {key: tf.constant(value) for key, value in labels.items()}
    if pipeline.model.HasField('mtl'):
      made = [make_labels(labels, i, pipeline.model.mtl) for i in range(len(images))]
      for key in made[0]:
        batch_labels[fields.MTL_LABEL_KEYS[key]] = tf.stack([m[key] for m in made])
    return features, batch_labels

  def run(self, record=True):
    """One step (with train_every_n_steps N: one cycle of N steps, timed per step)."""
    start = time.perf_counter()
    for index in range(self.every):
      features, labels = self.batches[self._next % len(self.batches)]
      self._next += 1
      if index == 0:  # (first: it creates every variable and the optimizer's slots)
        self._step(features, labels).numpy()
      else:
        with self.model.without_mtl():
          self._detector_step(features, labels).numpy()
    elapsed = (time.perf_counter() - start) * 1000.0 / self.every
    if record:
      self.times.append(elapsed)
    return elapsed


def make_labels(labels, index, mtl_config):
  """The input pipeline's MTL labels of one image (closeness rows padded like the boxes)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mtl_ssl.mtl import labels as mtl_labels  # pylint: disable=g-import-not-at-top
  n = int(labels['num_groundtruth_boxes'][index])
  classes = tf.argmax(labels['groundtruth_classes'][index, :n], -1, output_type=tf.int32) + 1
  made = mtl_labels.make_mtl_labels(
      tf.constant(labels['groundtruth_boxes'][index, :n]), classes, None,
      float(_synthetic.SIZE), float(_synthetic.SIZE), _synthetic.NUM_CLASSES, mtl_config,
      seed=tf.constant([index, 7], tf.int64))
  result = {key: tf.cast(value, tf.float32) for key, value in made.items()}
  if 'mtl_closeness_labels' in result:
    result['mtl_closeness_labels'] = tf.pad(result['mtl_closeness_labels'],
                                            [[0, _synthetic.MAX_BOXES - n], [0, 0]])
  return result


class OdapiChild:
  """The OD API step in a child process, driven one step at a time."""

  def __init__(self, name, python, extra_args):
    self.name, self.times = name, []
    env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='3')
    env.pop('PYTHONPATH', None)  # never mtl_ssl in the OD API's process
    self._process = subprocess.Popen(
        [python, os.path.join(_ROOT, 'bench', 'odapi_train_step.py')] + extra_args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=env)
    self.info = self._read()

  def _read(self):
    for line in self._process.stdout:
      if line.startswith('{'):
        return json.loads(line)
    raise RuntimeError(f'{self.name}: the OD API child process ended without a result')

  def run(self, record=True):
    self._process.stdin.write('1\n')
    self._process.stdin.flush()
    elapsed = self._read()['ms'][0]
    if record:
      self.times.append(elapsed)
    return elapsed

  def close(self):
    if self._process.poll() is None:
      self._process.stdin.write('quit\n')
      self._process.stdin.close()
      self._process.wait(timeout=60)


def bench_train(rounds, odapi_python, names=TRAIN_VARIANTS):
  batches = _synthetic.batches(4)
  variants = []
  for name in names:
    start = time.perf_counter()
    variants.append(TrainVariant(name, batches))
    print(f'  built {name} ({time.perf_counter() - start:.0f} s)', flush=True)
  label_ms = label_cost(batches[0][1])
  children = []
  if odapi_python:
    for name, extra in ODAPI_VARIANTS.items():
      children.append(OdapiChild(name, odapi_python, extra))
      print(f'  started {name} (ready, peak RSS {children[-1].info["rss_mb"]:.0f} MB)',
            flush=True)
  return round_robin(variants + children, rounds), label_ms


def round_robin(steps, rounds):
  """Runs one step of each (variants, OD API children) per round, 2 warm-up rounds + rounds
  timed; closes the children; returns {name: median ms}."""
  try:
    for round_index in range(rounds + 2):
      for step in steps:
        step.run(record=round_index >= 2)
      if round_index >= 2:
        print(f'  round {round_index - 1}/{rounds}: ' + ', '.join(
            f'{s.name} {s.times[-1]:.0f}' for s in steps), flush=True)
  finally:
    for step in steps:
      if isinstance(step, OdapiChild):
        step.close()
  return {s.name: _median(s.times) for s in steps}


def label_cost(labels, repeats=5):
  """ms per batch of the input pipeline's MTL label making (all tasks, eager)."""
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from mtl_ssl.protos import mtl_pb2  # pylint: disable=g-import-not-at-top
  config = text_format.Parse(_ALL_TASKS, mtl_pb2.MTL())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for i in range(len(labels['num_groundtruth_boxes'])):
      make_labels(labels, i, config)
    times.append((time.perf_counter() - start) * 1000.0)
  return _median(times)


def export_variant(name, workdir, save=True):
  """A SavedModel of the variant (random weights) with mtl_ssl.export's serving module and
  signature (as exporter_main_v2; built here to pass box_classifier_stride=2)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mtl_ssl.builders import model_builder  # pylint: disable=g-import-not-at-top
  from mtl_ssl.config import config_util  # pylint: disable=g-import-not-at-top
  from mtl_ssl.export import exporter_lib  # pylint: disable=g-import-not-at-top
  pipeline = config_util.parse_pipeline_text(pipeline_text(name))
  model = model_builder.build(pipeline.model, is_training=False,
                              use_bfloat16=pipeline.train_config.use_bfloat16,
                              box_classifier_stride=2)
  module = exporter_lib.DetectionInferenceModule(model)
  module.run_inference(tf.zeros([1, 64, 64, 3], tf.uint8))  # creates the variables
  concrete = module.signature('encoded_image_string_tensor')
  if not save:  # the same serving graph, called in this process
    return concrete
  directory = os.path.join(workdir, name.replace(' ', '_'))
  tf.saved_model.save(module, directory, signatures={'serving_default': concrete})
  return directory


def bench_infer(repeats, counts=(1, 8), variants=INFER_VARIANTS, save=True):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  images, _ = _synthetic.batches(1, batch=max(counts), seed=1)[0]
  encoded = [tf.io.encode_jpeg(tf.cast(image, tf.uint8)).numpy() for image in images]
  times = {}
  with tempfile.TemporaryDirectory() as workdir:
    served = {}
    for name in variants:
      start = time.perf_counter()
      if save:
        served[name] = tf.saved_model.load(export_variant(name, workdir)).signatures[
            'serving_default']
      else:
        served[name] = export_variant(name, workdir, save=False)
      print(f'  exported {name} ({time.perf_counter() - start:.0f} s)', flush=True)
    for round_index in range(repeats + 1):
      for count in counts:
        inputs = tf.constant(encoded[:count])
        for name, serve in served.items():
          start = time.perf_counter()
          np.asarray(serve(input_tensor=inputs)['detection_scores'])
          if round_index:
            times.setdefault((name, count), []).append((time.perf_counter() - start) * 1000.0)
      print(f'  round {round_index}/{repeats} done' + (' (warm-up)' if not round_index else ''),
            flush=True)
  return {key: _median(value) for key, value in times.items()}


def _machine():
  flags = ''
  try:
    with open('/proc/cpuinfo') as f:
      info = f.read()
    model = next((line.split(':', 1)[1].strip() for line in info.splitlines()
                  if line.startswith('model name')), platform.processor())
    flags = ' '.join(sorted({flag for flag in ('amx_bf16', 'avx512_bf16', 'avx512f')
                             if f' {flag}' in info}))
  except OSError:
    model = platform.processor()
  return f'{model}, {os.cpu_count()} cores, {flags or "no bf16 flags"}'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rounds', type=int, default=20, help='timed train rounds')
  parser.add_argument('--infer_repeats', type=int, default=10)
  parser.add_argument('--odapi_python', default=os.environ.get('MTL_SSL_ODAPI_PYTHON'),
                      help='python of a venv with the OD API TF2 (default '
                           '$MTL_SSL_ODAPI_PYTHON); without it the OD API is not measured')
  parser.add_argument('--skip', choices=('train', 'infer'), action='append', default=[])
  parser.add_argument('--infer_variants', default=','.join(INFER_VARIANTS),
                      help='comma-separated subset of ' + ', '.join(INFER_VARIANTS))
  parser.add_argument('--train_variants', default=','.join(TRAIN_VARIANTS),
                      help='comma-separated subset of ' + ', '.join(TRAIN_VARIANTS))
  parser.add_argument('--infer_counts', default='1,8', help='images per call')
  parser.add_argument('--no_save', action='store_true',
                      help='call the serving functions in this process instead of saving and '
                           'loading SavedModels (the same graphs; less time and memory)')
  parser.add_argument('--json', help='also write the results here')
  args = parser.parse_args()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  print(f'machine: {_machine()}; TensorFlow {tf.__version__}; load average before: '
        f'{" ".join(f"{x:.2f}" for x in os.getloadavg())}', flush=True)
  train, label_ms, infer = {}, None, {}
  if 'train' not in args.skip:
    print('train steps (ms, round robin):', flush=True)
    train, label_ms = bench_train(args.rounds, args.odapi_python,
                                  tuple(v.strip() for v in args.train_variants.split(',')))
  if 'infer' not in args.skip:
    print('SavedModel inference (ms, round robin):', flush=True)
    infer = bench_infer(args.infer_repeats,
                        tuple(int(c) for c in args.infer_counts.split(',')),
                        tuple(v.strip() for v in args.infer_variants.split(',')),
                        save=not args.no_save)
  load_after = ' '.join(f'{x:.2f}' for x in os.getloadavg())
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  print_tables(train, label_ms, infer, load_after, rss)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'machine': _machine(), 'load_after': load_after, 'train_ms': train,
                 'label_ms_per_batch': label_ms,
                 'infer_ms': {f'{n} x{c}': v for (n, c), v in infer.items()}}, f, indent=2)


# the goal table's train rows: (label, variant), each over the baseline of the same run
_TRAIN_GOAL_ROWS = (
    ('paper (roi crops)', 'mtl paper'),
    ('refine_top_k 16 in training too', 'mtl top16 train'),
    ('lean (16 windows, top-16 refine)', 'mtl lean'),
    ('lean, MTL on every second step', 'mtl lean every2'),
    ('lean + window crops 8 (4 x 4)', 'mtl lean wc8'),
    ('lean + window crops 10, closeness 8', 'mtl lean wc10 cc8'),
    ('lean + window and closeness crops 8', 'mtl lean wc8 cc8'),
    ('lean on the shared stage', 'mtl shared lean'),
    ('fast (whole feature map)', 'mtl fast'),
)


def _ratio(table, numerator, denominator):
  if numerator in table and denominator in table:
    return f'{table[numerator] / table[denominator]:.2f}x'
  return 'not measured'


def print_tables(train, label_ms, infer, load_after, rss):
  print(f'\nload average after: {load_after}; peak RSS of this process {rss:.0f} MB')
  if train:
    print('\n| train step (median ms) | ms |\n|---|---|')
    for name, value in train.items():
      print(f'| {name} | {value:.0f} |')
    print(f'| (MTL labels per batch, made in the input pipeline, not in the step) '
          f'| {label_ms:.0f} |')
  if infer:
    print('\n| SavedModel inference (median ms) | 1 image | 8 images |\n|---|---|---|')
    for name in (n for n in INFER_VARIANTS if any((n, c) in infer for c in (1, 8))):
      print(f'| {name} | ' + ' | '.join(f'{infer[(name, c)]:.0f}' if (name, c) in infer
                                         else '-' for c in (1, 8)) + ' |')
  rows = []
  if train:
    rows += [(f'train step, all tasks + refine / baseline: {label}',
              _ratio(train, name, 'baseline'), '<= 1.35x') for label, name in _TRAIN_GOAL_ROWS]
    rows.append(('train step, fast / baseline, both bf16',
                 _ratio(train, 'mtl fast bf16', 'baseline bf16'), '<= 1.35x'))
  if infer:
    for count in (1, 8):
      for label, name, base in (('paper', 'mtl paper', 'baseline'),
                                ('paper, refine_top_k 32', 'mtl paper top32', 'baseline'),
                                ('paper, refine_top_k 16', 'mtl paper top16', 'baseline'),
                                ('lean + window and closeness crops 8', 'mtl lean wc8 cc8',
                                 'baseline'),
                                ('lean on the shared stage', 'mtl shared lean', 'baseline'),
                                ('fast', 'mtl fast', 'baseline'),
                                ('fast, both bf16', 'mtl fast bf16', 'baseline bf16')):
        if (name, count) in infer and (base, count) in infer:
          rows.append((f'SavedModel inference, refine on / baseline, {count} image'
                       f'{"s" if count > 1 else ""}: {label}',
                       f'{infer[(name, count)] / infer[(base, count)]:.2f}x', '<= 1.3x'))
  if train:
    for odapi in ODAPI_VARIANTS:  # the same layers trained on both sides
      rows.append((f'baseline train step / {odapi}',
                   _ratio(train, 'baseline all layers', odapi), '<= 0.8x'))
      rows.append((f'baseline bf16 train step / {odapi}',
                   _ratio(train, 'baseline bf16 all layers', odapi), '<= 0.8x'))
  print('\n| measure | this run | goal |\n|---|---|---|')
  for row in rows:
    print('| %s | %s | %s |' % row)


if __name__ == '__main__':
  main()
