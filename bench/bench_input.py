"""Input pipeline throughput (images/s): online MTL labels off vs on, same data, same config.

  python bench/bench_input.py              # writes 200 JPEGs 320x320, 2-20 boxes, to a temp dir
  python bench/bench_input.py --data 'train.record-*' --num_classes 20 --images 500

Each row builds the training pipeline (keep-aspect resize, horizontal flip, shuffle) with the given
`model.mtl` tasks. Rows are timed round-robin, one live pipeline at a time, after a warm-up:
--repeats rounds of --images images each; the median rate is shown. The pipeline repeats the data.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
import tensorflow as tf  # pylint: disable=g-import-not-at-top
from google.protobuf import text_format  # pylint: disable=g-import-not-at-top

from mtl_ssl.builders import dataset_builder  # pylint: disable=g-import-not-at-top
from mtl_ssl.data import tf_example_util  # pylint: disable=g-import-not-at-top
from mtl_ssl.protos import pipeline_pb2  # pylint: disable=g-import-not-at-top

VARIANTS = [
    ('no MTL labels', ''),
    ('window (64 windows)', 'window: true'),
    ('closeness', 'closeness: true'),
    ('edgemask (64x64)', 'edgemask: true'),
    ('all three', 'window: true closeness: true edgemask: true'),
]


def write_synthetic(directory, num_images, size, num_classes, seed=0):
  """num_images JPEGs of size x size with 2-20 random boxes of random colours."""
  rng = np.random.default_rng(seed)
  path = os.path.join(directory, 'bench.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(num_images):
      image = rng.integers(0, 255, [size, size, 3], dtype=np.uint8) // 4 + 96
      n = int(rng.integers(2, 21))
      corners = np.sort(rng.uniform(0, 1, [n, 2, 2]), axis=1)  # [n, (min, max), (y, x)]
      boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], 1)
      classes = rng.integers(1, num_classes + 1, n)
      for (y0, x0, y1, x1), c in zip((boxes * size).astype(int), classes):
        image[y0:y1, x0:x1] = (37 * c) % 255
      encoded = tf.io.encode_jpeg(image, quality=90).numpy()
      example = tf_example_util.make_tf_example(
          encoded, 'jpeg', size, size, f'{i}.jpg', str(i), boxes, classes,
          [f'class{c}' for c in classes])
      writer.write(example.SerializeToString())
  return path


def _config(data, num_classes, mtl, resizer):
  text = f"""
    model {{ {('mtl { ' + mtl + ' }') if mtl else ''}
      faster_rcnn {{ num_classes: {num_classes} image_resizer {{ {resizer} }} }} }}
    train_config {{ data_augmentation_options {{ random_horizontal_flip {{}} }} }}
    train_input_reader {{ tf_record_input_reader {{ input_path: "{data}" }}
      shuffle: true shuffle_buffer_size: 64 num_prefetch_batches: 2 }}"""
  return text_format.Parse(text, pipeline_pb2.TrainEvalPipelineConfig())


def timed_rate(iterator, batch_size, num_images):
  num_batches = max(1, num_images // batch_size)
  start = time.perf_counter()
  for _ in range(num_batches):
    features, _ = next(iterator)
  features['image'].numpy()
  return num_batches * batch_size / (time.perf_counter() - start)


def build_iterator(config, batch_size, warmup_batches):
  dataset = dataset_builder.build(config.train_input_reader, batch_size, model_config=config.model,
                                  train_config=config.train_config, is_training=True, seed=0)
  iterator = iter(dataset)
  for _ in range(warmup_batches):
    next(iterator)
  return iterator


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default='', help='TFRecord glob (default: synthetic data)')
  parser.add_argument('--num_classes', type=int, default=20)
  parser.add_argument('--synthetic_images', type=int, default=200)
  parser.add_argument('--synthetic_size', type=int, default=320)
  parser.add_argument('--images', type=int, default=400, help='images per timed round')
  parser.add_argument('--batch_size', type=int, default=4)
  parser.add_argument('--warmup_batches', type=int, default=10)
  parser.add_argument('--repeats', type=int, default=3, help='timed rounds per row (median shown)')
  parser.add_argument('--resizer', default='keep_aspect_ratio_resizer { min_dimension: 320 '
                      'max_dimension: 512 }')
  args = parser.parse_args(argv)

  with tempfile.TemporaryDirectory() as tmp:
    data = args.data or write_synthetic(tmp, args.synthetic_images, args.synthetic_size,
                                        args.num_classes)
    print(f'data: {args.data or f"{args.synthetic_images} synthetic JPEGs {args.synthetic_size}px"}'
          f', batch {args.batch_size}, {args.images} images per row, '
          f'{os.cpu_count()} CPU cores, resizer: {args.resizer}')
    configs = [_config(data, args.num_classes, mtl, args.resizer) for _, mtl in VARIANTS]
    rates = [[] for _ in VARIANTS]
    # Round-robin, one live pipeline at a time (an idle pipeline keeps prefetching in the
    # background), so a change of load on the machine hits every row alike.
    for _ in range(args.repeats):
      for i, config in enumerate(configs):
        iterator = build_iterator(config, args.batch_size, args.warmup_batches)
        rates[i].append(timed_rate(iterator, args.batch_size, args.images))
        del iterator
    base = float(np.median(rates[0]))
    print(f'{"online labels":<22} {"images/s":>9} {"min":>7} {"max":>7} {"vs none":>8}')
    for (name, _), row in zip(VARIANTS, rates):
      median = float(np.median(row))
      print(f'{name:<22} {median:9.1f} {min(row):7.1f} {max(row):7.1f} {median / base:8.2f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
