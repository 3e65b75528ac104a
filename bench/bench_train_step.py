"""Times a traced Faster R-CNN train step (forward + backward + apply).

Settings (random weights, synthetic batch, each in a fresh subprocess so the
peak RSS is its own):
  resnet50   ResNet-50 C4, 320x320, batch 2, 300 proposals, 64 RoIs/image,
             box-classifier stage with stride 2 as the OD API TF2 extractor;
             also with the paper's stride 1 (4x the box-classifier FLOPs)
  mobilenet  MobileNet v1 C4, 256x256, batch 2, same proposal settings
  floor      the same convolutions alone (backbone on the images + the
             box-classifier stage on random crops, fwd + bwd + apply): what
             any implementation pays; train/floor is our detection overhead
With the MTL heads installed (mtl_ssl.mtl.heads), the ResNet-50 setting is
also timed with +T1 (window), +T2 (closeness), +T3 (foreground), +refine and
all tasks (train step), and baseline vs all tasks + refine inference, as
ratios. The machine's current matmul speed is printed first: other processes
on the 2 cores slow every row alike, ratios stay meaningful.
NOTE: the step gets boxes and classes only, so the MTL rows also pay for the
MTL labels, made inside the step by the model's fallback (training makes
them in the input pipeline instead). bench_cost.py feeds pipeline-made labels,
times the variants round robin and measures the OD API itself: use it for
the MTL / baseline / OD API ratios.

  PYTHONPATH=. python bench/bench_train_step.py [--steps 5] [--only NAME]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position

_MTL_TASKS = {
    'baseline': '',
    '+T1': 'window: true window_class_loss_weight: 1.0',
    '+T2': 'closeness: true closeness_loss_weight: 0.3',
    '+T3': 'edgemask: true edgemask_loss_weight: 1.0',
    '+refine': 'refine: true refine_residue: true '
               'refined_classification_loss_weight: 1.0',
    'all': 'window: true window_class_loss_weight: 1.0 closeness: true '
           'closeness_loss_weight: 0.3 edgemask: true edgemask_loss_weight: 1.0 '
           'refine: true refine_residue: true '
           'refined_classification_loss_weight: 1.0',
}


def _model_text(extractor, size, tasks=''):
  mtl = 'mtl { %s }' % tasks if tasks else ''
  return f'{_synthetic.faster_rcnn_c4_text(extractor, size)}\n{mtl}\n'



def _synthetic_batch(tf, batch, size, num_classes, seed=0):
  rng = tf.random.Generator.from_seed(seed)
  images = rng.uniform([batch, size, size, 3], 0, 255)
  boxes, classes = [], []
  for i in range(batch):
    n = 3 + i
    yx = rng.uniform([n, 2], 0.0, 0.6)
    hw = rng.uniform([n, 2], 0.15, 0.4)
    boxes.append(tf.concat([yx, tf.minimum(yx + hw, 1.0)], 1))
    classes.append(tf.one_hot(rng.uniform([n], 0, num_classes, tf.int32),
                              num_classes))
  return images, boxes, classes


def run_one(extractor, size, tasks, mode, steps, batch=2, overrides=None):
  """Returns (ms per step, peak RSS MB) for one setting in this process."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from mtl_ssl.builders import model_builder  # pylint: disable=g-import-not-at-top
  from mtl_ssl.protos import model_pb2  # pylint: disable=g-import-not-at-top
  config = text_format.Parse(_model_text(extractor, size, tasks),
                             model_pb2.DetectionModel())
  is_training = mode != 'infer'
  model = model_builder.build(config, is_training=is_training,
                              **(overrides or {}))
  images, boxes, classes = _synthetic_batch(tf, batch, size, 20)
  optimizer = tf_keras.optimizers.SGD(1e-3, momentum=0.9)

  @tf.function
  def train_step(images):
    preprocessed, shapes = model.preprocess(images)
    model.provide_groundtruth(boxes, classes)
    with tf.GradientTape() as tape:
      predictions = model.predict(preprocessed, shapes, training=True)
      loss_dict = model.loss(predictions, shapes)
      total = tf.add_n(list(loss_dict.values()) +
                       model.regularization_losses())
    variables = model.trainable_variables
    grads = tape.gradient(total, variables)
    optimizer.apply_gradients(zip(grads, variables))
    return total

  @tf.function
  def infer_step(images):
    preprocessed, shapes = model.preprocess(images)
    predictions = model.predict(preprocessed, shapes, training=False)
    return model.postprocess(predictions, shapes)['detection_scores']

  @tf.function
  def floor_step(images):
    # the convolutions alone: backbone on the images + box-classifier stage on
    # random crops of the same count/size, forward + backward + apply
    preprocessed, _ = model.preprocess(images)
    crops_shape = [batch * model.max_num_proposals, crop, crop, depth]
    with tf.GradientTape() as tape:
      features = model._proposal_model(preprocessed, training=True)
      crops = tf.random.uniform(crops_shape) + 0.0 * tf.reduce_mean(features)
      out = model._box_classifier_model(crops, training=True)
      total = tf.reduce_mean(features) + tf.reduce_mean(out)
    variables = (model._proposal_model.trainable_variables +
                 model._box_classifier_model.trainable_variables)
    grads = tape.gradient(total, variables)
    optimizer.apply_gradients(zip(grads, variables))
    return total

  crop = config.faster_rcnn.initial_crop_size // config.faster_rcnn.maxpool_stride
  depth = model._proposal_model.output_shape[-1]
  step = {'train': train_step, 'infer': infer_step, 'floor': floor_step}[mode]
  step(images)  # trace + warm-up
  step(images)
  start = time.perf_counter()
  for _ in range(steps):
    out = step(images)
  _ = out.numpy()
  ms = (time.perf_counter() - start) / steps * 1000.0
  rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  return ms, rss_mb


def _subprocess(args):
  cmd = [sys.executable, __file__, '--child', json.dumps(args)]
  env = dict(os.environ)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
  out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       check=False)
  if out.returncode != 0:
    raise RuntimeError('setting %s failed:\n%s' % (args, out.stderr[-3000:]))
  return json.loads(out.stdout.strip().splitlines()[-1])


def _have_mtl():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.exists(os.path.join(root, 'mtl_ssl', 'mtl', 'heads.py'))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--only', choices=('resnet50', 'mobilenet', 'mtl'))
  parser.add_argument('--child', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child = json.loads(args.child)
    if child.get('gflops'):
      print(json.dumps({'gflops': _gflops()}))
      return
    ms, rss = run_one(child['extractor'], child['size'], child['tasks'],
                      child['mode'], child['steps'],
                      overrides=child.get('overrides'))
    print(json.dumps({'ms': ms, 'rss_mb': rss}))
    return

  # box stride 2 = the OD API TF2 Keras ResNet extractor (conv5 unchanged),
  # the setting of the OD API reference number; stride 1 = the paper's TF1
  resnet = ('faster_rcnn_resnet50_keras', 320, {'box_classifier_stride': 2})
  resnet_s1 = ('faster_rcnn_resnet50_keras', 320, {'box_classifier_stride': 1})
  mobilenet = ('faster_rcnn_mobilenet_v1_keras', 256, {})
  base_r, base_i = 'resnet50 320px b2 train', 'resnet50 infer baseline'
  rows = []  # (label, setting, mtl tasks, mode, label of the ratio's base)
  if args.only in (None, 'resnet50', 'mtl'):
    rows.append((base_r, resnet, '', 'train', base_r))
  if args.only in (None, 'resnet50'):
    rows.append(('  convolutions only (floor)', resnet, '', 'floor', base_r))
    rows.append(('resnet50 box-stride-1 train', resnet_s1, '', 'train', base_r))
  if args.only in (None, 'mobilenet'):
    base_m = 'mobilenet_v1 256px b2 train'
    rows.append((base_m, mobilenet, '', 'train', base_m))
    rows.append(('  convolutions only (floor) ', mobilenet, '', 'floor', base_m))
  if args.only in (None, 'mtl') and _have_mtl():
    for name, tasks in _MTL_TASKS.items():
      if name != 'baseline':
        rows.append(('resnet50 train ' + name, resnet, tasks, 'train', base_r))
    rows.append((base_i, resnet, '', 'infer', base_i))
    rows.append(('resnet50 infer all tasks+refine', resnet, _MTL_TASKS['all'],
                 'infer', base_i))
  print('machine now: %.0f GFLOP/s (2048^2 matmul; other load lowers it)' %
        _subprocess({'gflops': True})['gflops'])
  results = {}
  print('%-34s %10s %12s %8s' % ('setting', 'ms/step', 'peak RSS MB', 'ratio'))
  for label, (extractor, size, overrides), tasks, mode, base in rows:
    r = _subprocess({'extractor': extractor, 'size': size, 'tasks': tasks,
                     'mode': mode, 'steps': args.steps,
                     'overrides': overrides})
    results[label] = r
    ratio = ('%.2f' % (r['ms'] / results[base]['ms'])
             if base in results else '-')
    print('%-34s %10.0f %12.0f %8s' % (label, r['ms'], r['rss_mb'], ratio))
    sys.stdout.flush()
  print('MTL rows include making the MTL labels inside the step (model fallback); '
        'bench/bench_cost.py measures the OD API and pipeline-fed MTL steps')


def _gflops():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  a = tf.random.uniform([2048, 2048])
  matmul = tf.function(tf.matmul)
  matmul(a, a).numpy()
  start = time.perf_counter()
  for _ in range(10):
    out = matmul(a, a)
  out.numpy()
  return 2 * 2048 ** 3 * 10 / (time.perf_counter() - start) / 1e9


if __name__ == '__main__':
  main()
