"""Object and background sources for the scenes: Fashion-MNIST items and real photos.

Objects come from the Fashion-MNIST subset shipped in `assets/` (works offline anywhere), or from
the full set when it is already on the machine (Debian's dataset-fashion-mnist package, or the
tf_keras download cache). Nothing is ever downloaded here. The train split of the scenes uses the
Fashion-MNIST train images and the test split its t10k images, so object instances are disjoint.
Backgrounds are the two photos that scikit-learn ships (china.jpg, flower.jpg).
"""
import gzip
import os

import numpy as np

CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
               'Sneaker', 'Bag', 'Ankle boot')
# Label map names (snake case, OD API style); display names are CLASS_NAMES. Label id = index + 1.
LABEL_NAMES = ('t_shirt_top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt',
               'sneaker', 'bag', 'ankle_boot')
NUM_CLASSES = len(CLASS_NAMES)

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets')
SUBSET_PATH = os.path.join(ASSETS_DIR, 'fashion_mnist_subset.npz')
DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
KERAS_CACHE_DIR = os.path.join(os.path.expanduser('~'), '.keras', 'datasets', 'fashion-mnist')
_FILES = {'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
          'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')}


def _read_idx(path, expected_dims):
  """Reads a (gzipped) IDX file of unsigned bytes, as distributed by (Fashion-)MNIST."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f'{path}: not an IDX file of unsigned bytes')
  dims = data[3]
  if dims != expected_dims:
    raise ValueError(f'{path}: {dims} dimensions, expected {expected_dims}')
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(dims))
  offset = 4 + 4 * dims
  array = np.frombuffer(data, dtype=np.uint8, offset=offset)
  if array.size != int(np.prod(shape)):
    raise ValueError(f'{path}: {array.size} values, header says {shape}')
  return array.reshape(shape)


def find_full_dataset_dir():
  """Folder holding the four Fashion-MNIST .gz files, or None. Never downloads."""
  for directory in (DEBIAN_DIR, KERAS_CACHE_DIR):
    if all(os.path.isfile(os.path.join(directory, name))
           for pair in _FILES.values() for name in pair):
      return directory
  return None


def load_full(directory):
  """{'train': (images [N,28,28] uint8, labels [N] uint8), 'test': (...)} from IDX files."""
  result = {}
  for split, (images_name, labels_name) in _FILES.items():
    images = _read_idx(os.path.join(directory, images_name), 3)
    labels = _read_idx(os.path.join(directory, labels_name), 1)
    if len(images) != len(labels):
      raise ValueError(f'{directory}: {len(images)} {split} images but {len(labels)} labels')
    result[split] = (images, labels)
  return result


def load_subset(path=SUBSET_PATH):
  """The shipped subset (same structure as load_full; instance ids index the full set)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: the Fashion-MNIST subset is missing; regenerate it with '
                            'scripts/make_fashion_mnist_subset.py')
  with np.load(path) as data:
    return {split: (data[f'{split}_images'], data[f'{split}_labels']) for split in _FILES}


def load_objects(source='auto'):
  """Returns (objects dict as load_full, kind 'full'|'subset', path it was loaded from).

  source: 'subset' (shipped, reproducible everywhere), 'full' (error if not installed), or 'auto'
  (full when present, else subset).
  """
  if source not in ('auto', 'subset', 'full'):
    raise ValueError(f'objects source must be auto, subset or full, got {source!r}')
  directory = find_full_dataset_dir() if source in ('auto', 'full') else None
  if directory is not None:
    return load_full(directory), 'full', directory
  if source == 'full':
    raise FileNotFoundError(f'full Fashion-MNIST not found in {DEBIAN_DIR} or {KERAS_CACHE_DIR} '
                            '(apt-get install dataset-fashion-mnist)')
  return load_subset(), 'subset', SUBSET_PATH


def make_subset(full, per_class_train, per_class_test, seed=0):
  """Picks a class-balanced random subset of each split (sorted indices, so stable)."""
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, per_class in (('train', per_class_train), ('test', per_class_test)):
    images, labels = full[split]
    chosen = []
    for class_id in range(NUM_CLASSES):
      candidates = np.flatnonzero(labels == class_id)
      if len(candidates) < per_class:
        raise ValueError(f'{split}: class {class_id} has {len(candidates)} images < {per_class}')
      chosen.append(np.sort(rng.choice(candidates, size=per_class, replace=False)))
    index = np.sort(np.concatenate(chosen))
    arrays[f'{split}_images'] = images[index]
    arrays[f'{split}_labels'] = labels[index]
    arrays[f'{split}_source_index'] = index.astype(np.int32)
  return arrays


def load_backgrounds():
  """The real photos used as backgrounds: list of uint8 [H, W, 3] arrays (sklearn's samples)."""
  try:
    from sklearn.datasets import load_sample_image  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError('scenes need scikit-learn for their background photos '
                      '(pip install scikit-learn)') from e
  return [np.asarray(load_sample_image(name), dtype=np.uint8)
          for name in ('china.jpg', 'flower.jpg')]
