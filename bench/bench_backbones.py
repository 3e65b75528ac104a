"""Forward time of the C4 feature extractors: F (proposal model) + the box classifier.

Per row: images [batch, size, size, 3] -> F at stride 16 -> crops of F (crop_and_resize to
14x14, then 2x2 max-pool -> 7x7, as the paper's configs) -> box classifier, all in one
tf.function, inference mode, random weights. Each type runs in its own subprocess so the
peak resident memory (ru_maxrss) belongs to that row only.

Run: TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=. python bench/bench_backbones.py
       [--types faster_rcnn_resnet50_keras faster_rcnn_mobilenet_v1_keras]
       [--size 320] [--batch 2] [--crops 64] [--repeats 3] [--box_classifier_stride 1]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
import types

DEFAULT_TYPES = ['faster_rcnn_resnet50_keras', 'faster_rcnn_mobilenet_v1_keras']


def _measure(type_name, size, batch, crops_per_image, repeats, box_stride):
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mtl_ssl import backbones  # pylint: disable=import-outside-toplevel

  start = time.perf_counter()
  overrides = ({'box_classifier_stride': box_stride}
               if type_name.startswith('faster_rcnn_resnet') else {})
  extractor = backbones.build(types.SimpleNamespace(type=type_name), is_training=False,
                              **overrides)
  proposal = extractor.get_proposal_feature_extractor_model()
  box = extractor.get_box_classifier_feature_extractor_model()
  build_s = time.perf_counter() - start

  rng = tf.random.Generator.from_seed(0)
  images = rng.uniform([batch, size, size, 3], 0.0, 255.0)
  corners = rng.uniform([batch * crops_per_image, 2], 0.0, 0.7)
  boxes = tf.concat([corners, corners + 0.3], axis=1)
  box_indices = tf.repeat(tf.range(batch), crops_per_image)

  @tf.function
  def forward(images):
    features = proposal(extractor.preprocess(images), training=False)
    crops = tf.image.crop_and_resize(features, boxes, box_indices, [14, 14])
    crops = tf.nn.max_pool2d(crops, 2, 2, 'VALID')
    return features, box(crops, training=False)

  features, box_features = forward(images)  # trace + warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    features, box_features = forward(images)
    box_features.numpy()
    times.append(time.perf_counter() - start)
  return {
      'type': type_name, 'build_s': build_s, 'forward_s': min(times),
      'F': list(features.shape), 'box': list(box_features.shape),
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--types', nargs='+', default=DEFAULT_TYPES)
  parser.add_argument('--size', type=int, default=320)
  parser.add_argument('--batch', type=int, default=2)
  parser.add_argument('--crops', type=int, default=64, help='crops per image')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--box_classifier_stride', type=int, default=1,
                      help='ResNet conv5 first-block stride (1: paper / TF1, 2: OD API TF2)')
  parser.add_argument('--one', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    print(json.dumps(_measure(args.one, args.size, args.batch, args.crops, args.repeats,
                              args.box_classifier_stride)))
    return
  print(f'images {args.batch}x{args.size}x{args.size}, {args.crops} crops/image '
        f'(14x14 -> max-pool -> 7x7), best of {args.repeats}, '
        f'ResNet box_classifier_stride {args.box_classifier_stride}')
  print(f'{"type":40s} {"build s":>8s} {"forward s":>10s} {"F shape":>18s} '
        f'{"box shape":>20s} {"peak RSS MB":>12s}')
  for type_name in args.types:
    command = [sys.executable, __file__, '--one', type_name, '--size', str(args.size),
               '--batch', str(args.batch), '--crops', str(args.crops),
               '--repeats', str(args.repeats),
               '--box_classifier_stride', str(args.box_classifier_stride)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
      print(f'{type_name:40s} FAILED: {done.stderr.strip().splitlines()[-1:]}')
      continue
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f'{row["type"]:40s} {row["build_s"]:8.1f} {row["forward_s"]:10.3f} '
          f'{str(row["F"]):>18s} {str(row["box"]):>20s} {row["peak_rss_mb"]:12.0f}')


if __name__ == '__main__':
  main()
