"""Decodes OD API detection tf.Examples (image/encoded JPEG or PNG, image/object/bbox/*, ...).

The decoder never raises inside the graph for a malformed record: it returns an 'error' string
('' when fine) that names the offending key, so the input pipeline can stop with a message naming
the TFRecord file and record index (an error raised inside tf.data knows neither). Undecodable image
bytes are handled by the pipeline (record dropped and logged, see docs/data.md).

Class ids: image/object/class/label when present; otherwise image/object/class/text mapped through
the label map (unknown names -> -1, dropped and counted downstream). The OD API prefers the text
when a label map is given; the label is preferred here because the converters write both and the
id is what the label map was built from.

Run `python -m mtl_ssl.data.tf_example_decoder [--label_map_path P] FILE_OR_GLOB...` to list every
bad record of a data set (file, record index, problem) without training.
"""
import argparse
import sys

import tensorflow as tf

from mtl_ssl.data import label_map_util
from mtl_ssl.data.fields import BOX_COORDINATE_KEYS, TfExampleFields as K

# Keys of the decoded dict (unbatched, variable number of boxes n).
IMAGE = 'image'  # uint8 [h, w, 3]
IMAGE_SHAPE = 'original_image_spatial_shape'  # int32 [2]
SOURCE_ID = 'source_id'  # string scalar
BOXES = 'boxes'  # float32 [n, 4] as stored (not yet validated)
CLASSES = 'classes'  # int32 [n]; -1 for a class text not in the label map
DIFFICULT = 'difficult'  # int32 [n]
IS_CROWD = 'is_crowd'  # int32 [n]
WEIGHTS = 'weights'  # float32 [n]
ERROR = 'error'  # string scalar, '' when the record is well formed
RECORD_FILE = 'record_file'  # string scalar: the TFRecord path
RECORD_INDEX = 'record_index'  # int64 scalar: index of the record in its file


def _feature_spec():
  fixed = lambda dtype, default: tf.io.FixedLenFeature((), dtype, default_value=default)
  spec = {
      K.image_encoded: fixed(tf.string, ''),
      K.image_format: fixed(tf.string, ''),
      K.filename: fixed(tf.string, ''),
      K.source_id: fixed(tf.string, ''),
      K.height: fixed(tf.int64, 0),
      K.width: fixed(tf.int64, 0),
      K.object_class_label: tf.io.VarLenFeature(tf.int64),
      K.object_class_text: tf.io.VarLenFeature(tf.string),
      K.object_difficult: tf.io.VarLenFeature(tf.int64),
      K.object_is_crowd: tf.io.VarLenFeature(tf.int64),
      K.object_weight: tf.io.VarLenFeature(tf.float32),
  }
  for key in BOX_COORDINATE_KEYS:
    spec[key] = tf.io.VarLenFeature(tf.float32)
  return spec


def _first_error(checks):
  """The message of the first (bad, message) pair whose `bad` is True, else ''."""
  error = tf.constant('')
  for bad, message in reversed(checks):
    error = tf.where(bad, tf.constant(message), error)
  return error


class TfExampleDecoder:
  """Parses serialized tf.Examples into the dict above (keys are module constants)."""

  def __init__(self, label_map_path='', use_display_name=False):
    self._spec = _feature_spec()
    self._label_map_path = label_map_path
    self._table = None
    if label_map_path:
      name_to_id = label_map_util.get_label_map_dict(label_map_path,
                                                     use_display_name=use_display_name)
      keys = tf.constant(list(name_to_id.keys()), tf.string)
      values = tf.constant(list(name_to_id.values()), tf.int64)
      self._table = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)

  def parse(self, serialized):
    """Everything but the image decoding; the image stays encoded under IMAGE."""
    parsed = tf.io.parse_single_example(serialized, self._spec)
    dense = {key: tf.sparse.to_dense(value) if isinstance(value, tf.SparseTensor) else value
             for key, value in parsed.items()}
    coords = [dense[key] for key in BOX_COORDINATE_KEYS]
    num_boxes = tf.size(coords[0])
    same_length = tf.reduce_all(tf.stack([tf.equal(tf.size(c), num_boxes) for c in coords]))
    boxes = tf.cond(same_length, lambda: tf.stack(coords, axis=1),
                    lambda: tf.zeros([0, 4], tf.float32))
    num_boxes = tf.shape(boxes)[0]

    labels = dense[K.object_class_label]
    texts = dense[K.object_class_text]
    has_labels = tf.size(labels) > 0
    has_texts = tf.size(texts) > 0
    if self._table is not None:
      from_texts = self._table.lookup(texts)
    else:
      from_texts = -tf.ones_like(texts, tf.int64)
    classes = tf.cond(has_labels, lambda: labels, lambda: from_texts)
    # int64 ids beyond int32 would wrap around (2**32 + 1 -> 1) in the cast: make them unknown
    classes = tf.cast(tf.where((classes < 0) | (classes > 2**31 - 1), tf.constant(-1, tf.int64),
                               classes), tf.int32)

    def optional(key, default, dtype):
      values = tf.cast(dense[key], dtype)
      return tf.cond(tf.size(values) > 0, lambda: values,
                     lambda: tf.fill([num_boxes], tf.constant(default, dtype)))

    difficult = optional(K.object_difficult, 0, tf.int32)
    is_crowd = optional(K.object_is_crowd, 0, tf.int32)
    weights = optional(K.object_weight, 1.0, tf.float32)

    def wrong_length(values):
      return tf.not_equal(tf.shape(values)[0], num_boxes)

    checks = [
        (tf.equal(dense[K.image_encoded], ''),
         f'missing required key {K.image_encoded} (or empty)'),
        (tf.logical_not(same_length),
         'image/object/bbox/{ymin,xmin,ymax,xmax} have different lengths'),
        ((num_boxes > 0) & ~has_labels & ~has_texts,
         f'boxes without classes: missing required key {K.object_class_label} '
         f'(or {K.object_class_text} with a label map)'),
    ]
    if self._table is None:
      checks.append(((num_boxes > 0) & ~has_labels & has_texts,
                     f'has {K.object_class_text} but no {K.object_class_label}, and the input '
                     'reader has no label_map_path to map the texts to ids'))
    checks += [
        (wrong_length(classes), f'{K.object_class_label}/{K.object_class_text} length differs '
                                'from the number of boxes'),
        (wrong_length(difficult), f'{K.object_difficult} length differs from the number of boxes'),
        (wrong_length(is_crowd), f'{K.object_is_crowd} length differs from the number of boxes'),
        (wrong_length(weights), f'{K.object_weight} length differs from the number of boxes'),
    ]
    error = _first_error(checks)
    ok = tf.equal(error, '')

    def rows(values):  # keeps shapes consistent when a length is wrong (the record is fatal anyway)
      return tf.cond(ok, lambda: values, lambda: tf.zeros([num_boxes], values.dtype))

    source_id = dense[K.source_id]
    source_id = tf.where(tf.equal(source_id, ''), dense[K.filename], source_id)
    return {
        IMAGE: dense[K.image_encoded],
        SOURCE_ID: source_id,
        BOXES: boxes,
        CLASSES: rows(classes),
        DIFFICULT: rows(difficult),
        IS_CROWD: rows(is_crowd),
        WEIGHTS: rows(weights),
        ERROR: error,
    }

  @staticmethod
  def decode_image(parsed):
    """Decodes IMAGE (JPEG, PNG, GIF or BMP; gray and RGBA become RGB). Raises on bad bytes."""
    out = dict(parsed)
    encoded = parsed[IMAGE]
    # A record flagged as missing its image gets a 1x1 stand-in; the pipeline stops on its error.
    encoded = tf.where(tf.equal(encoded, ''), _ONE_PIXEL_PNG, encoded)
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    out[IMAGE] = image
    out[IMAGE_SHAPE] = tf.shape(image)[:2]
    return out

  def decode(self, serialized):
    return self.decode_image(self.parse(serialized))


# The 1x1 black PNG used as a stand-in for a record whose image is missing.
_ONE_PIXEL_PNG = (b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02'
                  b'\x00\x00\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc```\x00\x00\x00\x04\x00\x01'
                  b'\xf6\x178U\x00\x00\x00\x00IEND\xaeB`\x82')


def check_records(paths, decoder, max_records=None):
  """Eagerly decodes records; returns [(file, record index, problem)] for every bad one.

  Used by the pipeline's pre-flight check (first record) and by this module's command line.
  """
  problems = []
  for path in paths:
    dataset = tf.data.TFRecordDataset(path)
    if max_records is not None:
      dataset = dataset.take(max_records)
    index = 0
    try:
      for index, serialized in enumerate(dataset):
        try:
          parsed = decoder.parse(serialized)
        except tf.errors.InvalidArgumentError as e:
          problems.append((path, index, f'not a parsable tf.Example: {e.message.splitlines()[0]}'))
          continue
        error = parsed[ERROR].numpy().decode()
        if error:
          problems.append((path, index, error))
          continue
        try:
          decoder.decode_image(parsed)
        except tf.errors.InvalidArgumentError as e:
          problems.append((path, index,
                           f'image bytes cannot be decoded: {e.message.splitlines()[0]}'))
    except tf.errors.OpError as e:  # a truncated or corrupted TFRecord file
      problems.append((path, index, f'unreadable TFRecord data: {e.message.splitlines()[0]}'))
  return problems


def main(argv=None):
  parser = argparse.ArgumentParser(description='List the bad records of OD API TFRecord files.')
  parser.add_argument('paths', nargs='+', help='TFRecord files or glob patterns')
  parser.add_argument('--label_map_path', default='')
  args = parser.parse_args(argv)
  files = sorted({f for pattern in args.paths for f in tf.io.gfile.glob(pattern)})
  if not files:
    print(f'no files match {args.paths}', file=sys.stderr)
    return 2
  problems = check_records(files, TfExampleDecoder(args.label_map_path))
  for path, index, problem in problems:
    print(f'{path} record {index}: {problem}')
  print(f'{len(problems)} bad record(s) in {len(files)} file(s)')
  return 1 if problems else 0


if __name__ == '__main__':
  sys.exit(main())
