"""Hostile tf.Examples, fuzzed (hypothesis, fixed budget), through the real input pipeline.

Each example is a list of generated records between two good ones in a TFRecord file that one
pipeline (built once) reads again for every example. An independent Python oracle (docs/data.md,
"Bad input") predicts the outcome of each record: dropped and reported (unparsable, wrong feature
types, undecodable image), the pipeline stops with an error naming file, record and key
(structural problems), or kept with exactly the boxes that survive cleaning, the drops counted on
stderr.
"""
import contextlib
import io
import os
import struct
import tempfile
import warnings
import zlib

from hypothesis import HealthCheck, Phase, event, given, settings, strategies as st
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from google.protobuf import message as pb_message
from google.protobuf import text_format

import input_records as ir
from mtl_ssl.builders import dataset_builder
from mtl_ssl.data import inputs
from mtl_ssl.data.fields import InputDataFields as F
from mtl_ssl.protos import pipeline_pb2

LABEL_MAP_IDS = {'a': 1, 'b': 2, 'c': 3}  # num_classes 4: id 4 is valid for the model, not here
MAX_BOXES = 3
FIXED = ('image/encoded', 'image/format', 'image/filename', 'image/source_id', 'image/height',
         'image/width')
KIND = {'image/encoded': 'bytes', 'image/format': 'bytes', 'image/filename': 'bytes',
        'image/source_id': 'bytes', 'image/height': 'int', 'image/width': 'int',
        'image/object/class/label': 'int', 'image/object/class/text': 'bytes',
        'image/object/difficult': 'int', 'image/object/is_crowd': 'int',
        'image/object/weight': 'float'}
COORDS = [f'image/object/bbox/{c}' for c in ('ymin', 'xmin', 'ymax', 'xmax')]
KIND.update({key: 'float' for key in COORDS})
# Fixed budget, same examples every run, no shrinking (a failure prints its example as drawn).
FUZZ_SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------ generators

def _feature(kind, values):
  if kind == 'bytes':
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
  if kind == 'int':
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _png_claiming(width, height):
  """A PNG whose header claims width x height but holds one row: a decompression bomb."""
  def chunk(tag, data):
    return (struct.pack('>I', len(data)) + tag + data +
            struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff))
  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) +
          chunk(b'IDAT', zlib.compress(b'\x00' * 31)) + chunk(b'IEND', b''))


@st.composite
def images(draw):
  """(bytes or None for a missing key, 'ok' | 'undecodable' | 'empty')."""
  kind = draw(st.sampled_from(['png'] * 8 + ['jpeg'] * 3 + ['gif', 'bmp', 'missing', 'empty',
                                                             'random', 'truncated', 'bomb']))
  if kind == 'missing':
    return None, 'empty'
  if kind == 'empty':
    return b'', 'empty'
  if kind == 'random':
    return b'\x00' + draw(st.binary(min_size=0, max_size=40)), 'undecodable'
  if kind == 'bomb':
    side = draw(st.sampled_from([100_000, 30_000]))
    return _png_claiming(side, side), 'undecodable'
  height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
  mode = draw(st.sampled_from(['RGB', 'L', 'RGBA', 'I;16']))
  if kind in ('jpeg', 'bmp', 'gif') or (kind == 'truncated' and mode == 'RGBA'):
    mode = mode if mode in ('RGB', 'L') else 'RGB'
  pixels = np.random.default_rng(height * 10 + width).integers(
      0, 65535 if mode == 'I;16' else 255, (height, width, 3 if mode == 'RGB' else 1))
  if mode == 'RGBA':
    pixels = np.concatenate([pixels] * 4, axis=-1)
  array = pixels.astype(np.uint16 if mode == 'I;16' else np.uint8)
  image = Image.fromarray(array[..., 0] if mode in ('L', 'I;16') else array)  # mode from dtype
  buffer = io.BytesIO()
  image.save(buffer, format={'truncated': 'PNG'}.get(kind, kind.upper()))
  encoded = buffer.getvalue()
  if kind == 'truncated':
    return encoded[:draw(st.integers(1, len(encoded) // 3))], 'undecodable'
  return encoded, 'ok'


_FLOATS = st.one_of(st.floats(-0.5, 1.5, width=32), st.sampled_from(
    [0.0, 1.0, float('nan'), float('inf'), -float('inf'), 1e39, -1e39, 0.5]))
_LABELS = st.one_of(st.integers(1, 4), st.integers(1, 4), st.sampled_from(
    [-2, 0, 5, 2**32 + 1, 2**32 + 2, -2**40, 2**62]))  # 4: a model class, not in the label map


@st.composite
def _box(draw):
  """Mostly a plausible box (min < max, around the image), sometimes anything."""
  if draw(st.integers(0, 2)):
    ymin, xmin = draw(st.floats(-0.3, 1.0)), draw(st.floats(-0.3, 1.0))
    return [ymin, xmin, ymin + draw(st.floats(0.01, 1.0)), xmin + draw(st.floats(0.01, 1.0))]
  return [draw(_FLOATS) for _ in range(4)]


@st.composite
def examples(draw):
  """(serialized record, tf.train.Example it parses to or None, image status)."""
  feature = {}
  encoded, status = draw(images())
  if encoded is not None:
    feature['image/encoded'] = _feature('bytes', [encoded])
  feature['image/source_id'] = _feature('bytes', [b'fuzz'])
  n = draw(st.integers(0, 5))

  def listed(values):  # usually n values, sometimes one more or less (wrong box list lengths)
    size = max(0, n + draw(st.sampled_from([0] * 25 + [-1, 1])))
    return draw(st.lists(values, min_size=size, max_size=size))

  boxes = np.array(listed(_box()), np.float64).reshape(-1, 4)
  for column, key in enumerate(COORDS):
    values = list(boxes[:, column])
    if draw(st.integers(0, 40)) == 0:
      values = values[:-1] if values and draw(st.booleans()) else values + [0.5]
    feature[key] = _feature('float', values)
  has_labels = draw(st.integers(0, 4)) > 0
  if has_labels:
    feature['image/object/class/label'] = _feature('int', listed(_LABELS))
  if has_labels:
    with_texts = draw(st.integers(0, 5)) == 0  # sometimes both (the label wins)
  else:
    with_texts = draw(st.integers(0, 5)) > 0  # usually texts alone, sometimes no class at all
  if with_texts:
    feature['image/object/class/text'] = _feature('bytes', [
        t.encode() for t in listed(st.sampled_from(['a', 'b', 'c', 'zebra', '']))])
  for key, kind, values in (('image/object/difficult', 'int', st.integers(-1, 2)),
                            ('image/object/is_crowd', 'int', st.integers(0, 1)),
                            ('image/object/weight', 'float', _FLOATS)):
    if draw(st.integers(0, 3)) == 0:
      feature[key] = _feature(kind, listed(values))
  for key in ('image/height', 'image/width'):  # never used: huge or negative is fine
    if draw(st.booleans()):
      feature[key] = _feature('int', [draw(st.sampled_from([0, -7, 2**62, 480]))])
  if draw(st.integers(0, 5)) == 0:  # a feature of the wrong type or count
    key = draw(st.sampled_from(sorted(KIND)))
    kind = draw(st.sampled_from(['bytes', 'int', 'float']))
    count = draw(st.integers(0, 2))
    values = {'bytes': [b'x'] * count, 'int': [1] * count, 'float': [0.5] * count}[kind]
    feature[key] = _feature(kind, values)
    if key == 'image/encoded':
      status = 'undecodable'  # b'x' when it parses at all
  serialized = tf.train.Example(
      features=tf.train.Features(feature=feature)).SerializeToString()
  if draw(st.integers(0, 6)) == 0:  # truncated record bytes
    serialized = serialized[:draw(st.integers(0, max(0, len(serialized) - 1)))]
  try:
    parsed = tf.train.Example.FromString(serialized)
  except pb_message.DecodeError:
    parsed = None
  return serialized, parsed, status


# ------------------------------------------------------------------------------ the oracle

def _values(example, key):
  """(kind or None, list of values) of a feature."""
  if key not in example.features.feature:
    return None, []
  feature = example.features.feature[key]
  kind = feature.WhichOneof('kind')
  if kind is None:
    return None, []
  values = list(getattr(feature, kind).value)
  return {'bytes_list': 'bytes', 'int64_list': 'int', 'float_list': 'float'}[kind], values


def predict(parsed, status):
  """('dropped', None) | ('fatal', message fragment) | ('kept', expectation dict), or
  ('dropped_or_fatal', '') for record bytes that are not a valid tf.Example proto: TensorFlow's
  parser reads some truncated ones as an example without features (-> missing image/encoded)."""
  if parsed is None:
    return 'dropped_or_fatal', ''
  for key, kind in KIND.items():
    got, values = _values(parsed, key)
    if got is not None and (got != kind or (key in FIXED and len(values) != 1)):
      return 'dropped', None  # the tf.Example parser rejects the record
  _, encoded = _values(parsed, 'image/encoded')
  if encoded and encoded[0] and status != 'ok':
    return 'dropped', None  # the image bytes cannot be decoded (status of the generated bytes)
  if not encoded or not encoded[0]:
    return 'fatal', 'missing required key image/encoded'
  coords = [np.array(_values(parsed, key)[1], np.float32) for key in COORDS]
  n = len(coords[0])
  if any(len(c) != n for c in coords):
    return 'fatal', 'image/object/bbox/{ymin,xmin,ymax,xmax} have different lengths'
  labels = _values(parsed, 'image/object/class/label')[1]
  texts = _values(parsed, 'image/object/class/text')[1]
  if n and not labels and not texts:
    return 'fatal', 'boxes without classes'
  classes = labels if labels else [LABEL_MAP_IDS.get(t.decode(), -1) for t in texts]
  if len(classes) != n:
    return 'fatal', 'image/object/class/label/image/object/class/text length differs'
  optional = {}
  for key, default in (('image/object/difficult', 0), ('image/object/is_crowd', 0),
                       ('image/object/weight', 1.0)):
    values = _values(parsed, key)[1]
    if values and len(values) != n:
      return 'fatal', f'{key} length differs'
    optional[key] = np.array(values if values else [default] * n, np.float32)
  boxes = np.stack(coords, axis=1).reshape(-1, 4)
  known = np.array([c in LABEL_MAP_IDS.values() for c in classes], bool).reshape(-1)
  finite = np.isfinite(boxes).all(axis=1) & np.isfinite(optional['image/object/weight'])
  with np.errstate(invalid='ignore'):
    degenerate = ~finite | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
  clipped = np.clip(np.where(np.isfinite(boxes), boxes, 0.0), 0.0, 1.0)
  outside = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
  keep = known & ~degenerate & ~outside
  kept = np.flatnonzero(keep)
  return 'kept', {
      'boxes': clipped[kept][:MAX_BOXES], 'classes': np.array(classes)[kept][:MAX_BOXES],
      'weights': optional['image/object/weight'][kept][:MAX_BOXES],
      'dropped': {inputs.STAT_UNKNOWN_CLASS: int((~known).sum()),
                  inputs.STAT_DEGENERATE: int((known & degenerate).sum()),
                  inputs.STAT_OUTSIDE: int((known & ~degenerate & outside).sum()),
                  inputs.STAT_TRUNCATED: max(0, len(kept) - MAX_BOXES)}}


# ------------------------------------------------------------------------------ the pipeline

@contextlib.contextmanager
def captured_stderr():
  """Everything written to file descriptor 2 (tf.print writes there from C++)."""
  sys_stderr = os.dup(2)
  with tempfile.TemporaryFile(mode='w+b') as sink:
    os.dup2(sink.fileno(), 2)
    result = {}
    try:
      yield result
    finally:
      os.dup2(sys_stderr, 2)
      os.close(sys_stderr)
      sink.seek(0)
      result['text'] = sink.read().decode('utf-8', 'replace')


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
  """(record path, dataset) built once; the file is rewritten for every example."""
  root = tmp_path_factory.mktemp('fuzz')
  label_map = root / 'label_map.pbtxt'
  label_map.write_text(''.join(f'item {{ id: {i} name: "{n}" }}\n'
                               for n, i in LABEL_MAP_IDS.items()))
  path = str(root / 'records.tfrecord')
  _write(path, _good('good0'))
  config = text_format.Parse(f"""
    model {{ faster_rcnn {{ num_classes: 4 image_resizer {{ fixed_shape_resizer {{
      height: 16 width: 16 }} }} }} }}
    train_input_reader {{ label_map_path: "{label_map}" shuffle: false num_epochs: 1
      max_number_of_boxes: {MAX_BOXES} tf_record_input_reader {{ input_path: "{path}" }} }}""",
                             pipeline_pb2.TrainEvalPipelineConfig())
  dataset = dataset_builder.build(config.train_input_reader, 1, model_config=config.model,
                                  is_training=False)
  return path, dataset


def _good(source_id):
  return ir.drawn_example(8, 8, [[0.1, 0.1, 0.6, 0.6]], [1], source_id=source_id)


def _write(path, *records):
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)


def _run(path, dataset, records):
  _write(path, _good('good0'), *records, _good('good_last'))
  elements, error = [], None
  with captured_stderr() as err:
    try:
      for features, labels in dataset.as_numpy_iterator():
        elements.append(({k: v[0] for k, v in features.items()},
                         {k: v[0] for k, v in labels.items()}))
    except tf.errors.OpError as e:
      error = e
  return elements, error, err['text']


def _expected_source_id(parsed, path, index):
  source_id = _values(parsed, 'image/source_id')[1]
  return source_id[0] if source_id and source_id[0] else f'{path}:{index}'.encode()


def _check_kept(labels, expected):
  count = len(expected['boxes'])
  assert labels[F.num_groundtruth_boxes] == count
  np.testing.assert_allclose(labels[F.groundtruth_boxes][:count], expected['boxes'], atol=1e-6)
  assert not labels[F.groundtruth_boxes][count:].any()
  np.testing.assert_array_equal(np.argmax(labels[F.groundtruth_classes][:count], axis=1) + 1,
                                expected['classes'])
  np.testing.assert_allclose(labels[F.groundtruth_weights][:count], expected['weights'])


@FUZZ_SETTINGS
@given(cases=st.lists(examples(), min_size=4, max_size=16))
def test_hostile_records_are_dropped_stopped_or_cleaned_as_documented(pipeline, cases):
  """Records 1..k of the file: those the oracle keeps or drops, then at most one that stops the
  pipeline (nothing after it would be read)."""
  path, dataset = pipeline
  predicted = [(case, predict(case[1], case[2])) for case in cases]
  stopping = [p for p in predicted if p[1][0] in ('fatal', 'dropped_or_fatal')]
  predicted = [p for p in predicted if p[1][0] in ('kept', 'dropped')] + stopping[:1]
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    elements, error, err = _run(path, dataset, [case[0] for case, _ in predicted])
  ids = [f[F.source_id] for f, _ in elements]
  assert ids[0] == b'good0'
  position, dropped = 1, 0
  for index, ((_, parsed, _), (outcome, expected)) in enumerate(predicted, start=1):
    event(outcome)  # --hypothesis-show-statistics: how often each path ran
    if outcome == 'dropped_or_fatal':
      outcome = 'fatal' if error is not None else 'dropped'
    if outcome == 'fatal':
      assert isinstance(error, tf.errors.InvalidArgumentError), (error, ids)
      assert f'mtl_ssl input: TFRecord file {path} record {index}: ' in error.message, (
          error.message)
      assert expected in error.message, error.message
      assert position == len(elements), ids  # everything before it came through
      return
    if outcome == 'dropped':
      dropped += 1
      assert f'mtl_ssl input: dropped {path} record {index}: ' in err, err
      assert f'records dropped so far: {dropped}' in err
      continue
    features, labels = elements[position]
    assert features[F.source_id] == _expected_source_id(parsed, path, index), ids
    _check_kept(labels, expected)
    assert np.isfinite(features[F.image]).all()
    line = [l for l in err.splitlines() if f'{path} record {index}:' in l]
    drops = {key: value for key, value in expected['dropped'].items() if value}
    assert len(line) == (1 if drops else 0), (index, err)
    for key, value in drops.items():
      assert f' {value} {key};' in line[0], (line[0], drops)
    position += 1
  assert error is None, error
  assert ids[position:] == [b'good_last'], ids
