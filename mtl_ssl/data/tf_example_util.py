"""Build OD API detection tf.Examples and write them to (sharded) TFRecord files.

Keys are the OD API ones (image/encoded, image/object/bbox/ymin, image/object/class/label, ...),
so the records written here are read by `tf_example_decoder` and by OD API tools alike.
TensorFlow is imported lazily: building scenes or parsing annotations needs no TF.
"""
import hashlib
import os

import numpy as np

_BOX_KEYS = ('ymin', 'xmin', 'ymax', 'xmax')


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def _bytes(values):
  tf = _tf()
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int64(values):
  tf = _tf()
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values):
  tf = _tf()
  return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _utf8(value):
  return value if isinstance(value, bytes) else str(value).encode('utf-8')


def make_tf_example(encoded, fmt, height, width, filename, source_id, boxes_normalized,
                    class_ids, class_texts, difficult=None, is_crowd=None, area=None,
                    truncated=None):
  """Returns a tf.train.Example with the OD API detection keys.

  Args:
    encoded: encoded image bytes (JPEG or PNG).
    fmt: 'jpeg' or 'png' (stored as image/format).
    height, width: image size in pixels.
    filename, source_id: strings (source_id identifies the image in evaluation).
    boxes_normalized: [N, 4] float [ymin, xmin, ymax, xmax] in [0, 1].
    class_ids: [N] int label ids (1-based, as in the label map).
    class_texts: [N] class names.
    difficult, is_crowd, truncated: optional [N] 0/1 flags; area: optional [N] pixel areas.
  """
  tf = _tf()
  boxes = np.asarray(boxes_normalized, dtype=np.float64).reshape(-1, 4)
  num_boxes = boxes.shape[0]
  if len(class_ids) != num_boxes or len(class_texts) != num_boxes:
    raise ValueError(f'{filename}: {num_boxes} boxes but {len(class_ids)} class ids and '
                     f'{len(class_texts)} class texts')
  if num_boxes and (np.any(boxes < 0.0) or np.any(boxes > 1.0) or
                    np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1])):
    raise ValueError(f'{filename}: boxes must be normalized [ymin, xmin, ymax, xmax] in [0, 1] '
                     f'with min <= max, got {boxes.tolist()}')
  feature = {
      'image/height': _int64([height]),
      'image/width': _int64([width]),
      'image/filename': _bytes([_utf8(filename)]),
      'image/source_id': _bytes([_utf8(source_id)]),
      'image/key/sha256': _bytes([hashlib.sha256(encoded).hexdigest().encode('utf-8')]),
      'image/encoded': _bytes([encoded]),
      'image/format': _bytes([_utf8(fmt)]),
      'image/object/class/label': _int64(class_ids),
      'image/object/class/text': _bytes([_utf8(t) for t in class_texts]),
  }
  for column, key in enumerate(_BOX_KEYS):
    feature['image/object/bbox/' + key] = _float(boxes[:, column])
  optional = {'image/object/difficult': difficult, 'image/object/is_crowd': is_crowd,
              'image/object/truncated': truncated}
  for key, values in optional.items():
    if values is not None:
      if len(values) != num_boxes:
        raise ValueError(f'{filename}: {num_boxes} boxes but {len(values)} values for {key}')
      feature[key] = _int64(values)
  if area is not None:
    if len(area) != num_boxes:
      raise ValueError(f'{filename}: {num_boxes} boxes but {len(area)} areas')
    feature['image/object/area'] = _float(area)
  return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_paths(output_path, num_shards):
  """Output file names: the path itself for one shard, else `path-%05d-of-%05d` (OD API)."""
  if num_shards < 1:
    raise ValueError(f'num_shards must be >= 1, got {num_shards}')
  if num_shards == 1:
    return [output_path]
  return ['%s-%05d-of-%05d' % (output_path, i, num_shards) for i in range(num_shards)]


class ShardedTFRecordWriter:
  """Writes records round-robin over shards (record i goes to shard i % num_shards)."""

  def __init__(self, output_path, num_shards=1):
    self.paths = shard_paths(output_path, num_shards)
    self._writers = []
    self._count = 0

  def __enter__(self):
    tf = _tf()
    directory = os.path.dirname(os.path.abspath(self.paths[0]))
    os.makedirs(directory, exist_ok=True)
    self._writers = [tf.io.TFRecordWriter(path) for path in self.paths]
    return self

  def write(self, record):
    """Writes a tf.train.Example or serialized bytes."""
    if not isinstance(record, bytes):
      record = record.SerializeToString()
    self._writers[self._count % len(self._writers)].write(record)
    self._count += 1

  @property
  def count(self):
    return self._count

  def __exit__(self, *exc_info):
    for writer in self._writers:
      writer.close()
    self._writers = []
    return False


def read_examples(path_or_paths):
  """Yields parsed tf.train.Examples from one or more TFRecord files (for tools and tests)."""
  tf = _tf()
  paths = [path_or_paths] if isinstance(path_or_paths, str) else list(path_or_paths)
  for path in paths:
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      yield tf.train.Example.FromString(record)


def example_to_dict(example):
  """Flattens a detection tf.train.Example to numpy values (boxes as [N, 4] ymin,xmin,ymax,xmax)."""
  feature = example.features.feature

  def values(key):
    if key not in feature:
      return None
    kind = feature[key].WhichOneof('kind')
    return list(getattr(feature[key], kind).value) if kind else []

  boxes = np.stack([np.asarray(values('image/object/bbox/' + k) or [], np.float32)
                    for k in _BOX_KEYS], axis=-1).reshape(-1, 4)
  result = {
      'height': values('image/height')[0],
      'width': values('image/width')[0],
      'filename': values('image/filename')[0].decode('utf-8'),
      'source_id': values('image/source_id')[0].decode('utf-8'),
      'format': values('image/format')[0].decode('utf-8'),
      'encoded': values('image/encoded')[0],
      'boxes': boxes,
      'labels': np.asarray(values('image/object/class/label') or [], np.int64),
      'texts': [t.decode('utf-8') for t in values('image/object/class/text') or []],
  }
  for name in ('difficult', 'is_crowd', 'truncated'):
    v = values('image/object/' + name)
    result[name] = None if v is None else np.asarray(v, np.int64)
  v = values('image/object/area')
  result['area'] = None if v is None else np.asarray(v, np.float32)
  return result
