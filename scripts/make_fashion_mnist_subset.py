r"""Regenerate mtl_ssl/data/scenes/assets/fashion_mnist_subset.npz from the full Fashion-MNIST.

Needs the full set on disk (apt-get install dataset-fashion-mnist, or an existing tf_keras cache):

  python scripts/make_fashion_mnist_subset.py --per_class_train 300 --per_class_test 100
"""
import argparse
import os
import sys

import numpy as np

from mtl_ssl.data.scenes import sources


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', default=None,
                      help='folder with the four *-ubyte.gz files (default: find it)')
  parser.add_argument('--per_class_train', type=int, default=300)
  parser.add_argument('--per_class_test', type=int, default=100)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', default=sources.SUBSET_PATH)
  args = parser.parse_args(argv)
  directory = args.data_dir or sources.find_full_dataset_dir()
  if directory is None:
    print(f'error: full Fashion-MNIST not found in {sources.DEBIAN_DIR} or '
          f'{sources.KERAS_CACHE_DIR}; pass --data_dir', file=sys.stderr)
    return 2
  arrays = sources.make_subset(sources.load_full(directory), args.per_class_train,
                               args.per_class_test, args.seed)
  np.savez_compressed(args.output, **arrays)
  print(f'wrote {args.output} ({os.path.getsize(args.output) / 1e6:.2f} MB): '
        f'{len(arrays["train_images"])} train and {len(arrays["test_images"])} test images '
        f'from {directory}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
