"""PASCAL VOC and COCO converters on fuzzed data sets (hypothesis, fixed budget).

Broken XML or JSON, bad numbers, NaN/inverted/outside boxes, unknown classes, corrupt, truncated,
zero-byte, odd-mode and size-bomb images. A conversion either raises ConversionError (a data-set
level problem) or returns a summary whose counts add up; every record it wrote decodes and holds
exactly the boxes an independent oracle expects from the annotations and the image size.
"""
import io
import json
import math
import os
import shutil
import struct
import tempfile
import xml.etree.ElementTree as ElementTree
import zlib

from hypothesis import HealthCheck, Phase, event, given, settings, strategies as st
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from mtl_ssl.data import tf_example_decoder
from mtl_ssl.data import tf_example_util
from mtl_ssl.data.converters import coco
from mtl_ssl.data.converters import common
from mtl_ssl.data.converters import pascal

LABEL_MAP = {'dog': 1, 'cat': 2, 'person': 3}
FUZZ_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))


@pytest.fixture(scope='module')
def label_map(tmp_path_factory):
  """(label map path, the input pipeline's decoder for it, compiled once)."""
  path = tmp_path_factory.mktemp('label_map') / 'label_map.pbtxt'
  path.write_text(''.join(f'item {{ id: {i} name: "{n}" }}\n' for n, i in LABEL_MAP.items()))
  decoder = tf_example_decoder.TfExampleDecoder(str(path))
  return str(path), tf.function(decoder.decode)


def _png_claiming(side):
  def chunk(tag, data):
    return (struct.pack('>I', len(data)) + tag + data +
            struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff))
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 8, 2, 0, 0, 0))
          + chunk(b'IDAT', zlib.compress(b'\x00' * 31)) + chunk(b'IEND', b''))


@st.composite
def images(draw):
  """(bytes or None for a missing file, (height, width) when decodable as JPEG/PNG, else None;
  'other' for a decodable image of another format)."""
  kind = draw(st.sampled_from(['jpeg', 'png'] * 3 + ['png16', 'gray', 'rgba', 'gif', 'missing',
                                                     'empty', 'random', 'truncated', 'bomb']))
  if kind == 'missing':
    return None, None
  if kind == 'empty':
    return b'', None
  if kind == 'random':
    return b'\x00' + draw(st.binary(max_size=30)), None
  if kind == 'bomb':
    return _png_claiming(draw(st.sampled_from([100_000, 30_000]))), None
  side = st.one_of(st.integers(8, 30), st.integers(1, 30))
  height, width = draw(side), draw(side)
  rng = np.random.default_rng(height * 31 + width)
  if kind == 'png16':
    image = Image.fromarray(rng.integers(0, 65535, (height, width)).astype(np.uint16))
  elif kind == 'gray':
    image = Image.fromarray(rng.integers(0, 255, (height, width)).astype(np.uint8))
  elif kind == 'rgba':
    image = Image.fromarray(rng.integers(0, 255, (height, width, 4)).astype(np.uint8))
  else:
    image = Image.fromarray(rng.integers(0, 255, (height, width, 3)).astype(np.uint8))
  buffer = io.BytesIO()
  image.save(buffer, format={'jpeg': 'JPEG', 'gif': 'GIF'}.get(kind, 'PNG'))
  encoded = buffer.getvalue()
  if kind == 'truncated':
    return encoded[:draw(st.integers(0, len(encoded) // 3))], None
  return encoded, ('other' if kind == 'gif' else (height, width))


_NUMBERS = st.one_of(st.integers(-10, 40).map(str), st.floats(-10, 40).map(repr),
                     st.sampled_from(['nan', 'inf', '-inf', '1e400', '', 'abc', '12px', ' 7 ']))
_NAMES = st.sampled_from(['dog', 'cat', 'person'] * 3 + ['Dog', ' cat ', 'unicorn', '', 'DOG'])
_FLAGS = st.sampled_from(['0', '1', '', 'yes', '2', 'nan', 'inf', '-1e400', '1.0'])


@st.composite
def voc_annotations(draw):
  """XML text or None (no annotation file)."""
  kind = draw(st.sampled_from(['ok'] * 8 + ['truncated', 'not_xml', 'empty', 'missing',
                                          'entity']))
  if kind == 'missing':
    return None
  if kind == 'empty':
    return ''
  if kind == 'not_xml':
    return draw(st.text(max_size=30))
  parts = ['<annotation><filename>IMAGE</filename>']
  if draw(st.booleans()):
    parts.append(f'<size><width>{draw(_NUMBERS)}</width><height>{draw(_NUMBERS)}</height>'
                 '</size>')
  for _ in range(draw(st.integers(0, 4))):
    name = '&d;' if kind == 'entity' else draw(_NAMES)
    if draw(st.integers(0, 2)):  # a plausible box around a small image
      x0, y0 = draw(st.integers(-3, 12)), draw(st.integers(-3, 12))
      x1, y1 = x0 + draw(st.integers(1, 20)), y0 + draw(st.integers(1, 20))
      values = [str(x0), str(y0), str(x1), str(y1)]
    else:
      values = [draw(_NUMBERS) for _ in range(4)]
    tags = {tag: value for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), values)
            if draw(st.integers(0, 19))}  # sometimes a coordinate tag is missing
    box = ''.join(f'<{t}>{v}</{t}>' for t, v in tags.items())
    bndbox = f'<bndbox>{box}</bndbox>' if draw(st.integers(0, 15)) else ''
    flags = ''.join(f'<{t}>{draw(_FLAGS)}</{t}>' for t in ('difficult', 'truncated')
                    if draw(st.booleans()))
    parts.append(f'<object><name>{name}</name>{flags}{bndbox}</object>')
  parts.append('</annotation>')
  text = ''.join(parts)
  if kind == 'entity':
    text = '<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY d "dog">]>' + text
  if kind == 'truncated':
    text = text[:draw(st.integers(0, len(text) - 1))]
  return text


def _float(text):
  try:
    return float(text)
  except (TypeError, ValueError):
    return None


def expected_box(xmin, ymin, xmax, ymax, height, width):
  """Normalized [ymin, xmin, ymax, xmax] clipped to the image, or None when dropped."""
  values = [xmin, ymin, xmax, ymax]
  if any(v is None or not math.isfinite(v) for v in values) or xmax <= xmin or ymax <= ymin:
    return None
  x0, x1 = min(max(xmin, 0.0), width), min(max(xmax, 0.0), width)
  y0, y1 = min(max(ymin, 0.0), height), min(max(ymax, 0.0), height)
  if x1 <= x0 or y1 <= y0:
    return None
  return [y0 / height, x0 / width, y1 / height, x1 / width]


def voc_expected(xml_text, size):
  """(boxes, ids) the converter must write for an image of `size`, or None when the annotation
  cannot be parsed (the image must then be skipped)."""
  try:
    root = ElementTree.fromstring(xml_text)
  except ElementTree.ParseError:
    return None
  boxes, ids = [], []
  for obj in root.findall('object'):
    name = (obj.findtext('name') or '').strip()
    label = LABEL_MAP.get(name, LABEL_MAP.get(name.lower()))
    bndbox = obj.find('bndbox')
    if label is None or bndbox is None:
      continue
    box = expected_box(*(_float(bndbox.findtext(t)) for t in ('xmin', 'ymin', 'xmax', 'ymax')),
                       *size)
    if box is not None:
      boxes.append(box)
      ids.append(label)
  return boxes, ids


def _check_summary_and_records(summary, num_listed, decode):
  """Counts add up; every record decodes with the pipeline's decoder; boxes are sane."""
  assert summary.images_seen == num_listed
  assert summary.images_written + sum(summary.images_skipped.values()) == num_listed
  records = {}
  for example in tf_example_util.read_examples(summary.output_paths):
    decoded = decode(tf.constant(example.SerializeToString()))  # raises on undecodable images
    assert decoded[tf_example_decoder.ERROR].numpy() == b''
    record = tf_example_util.example_to_dict(example)
    assert tuple(decoded[tf_example_decoder.IMAGE].shape) == (record['height'], record['width'],
                                                             3)
    records[record['source_id']] = record
  assert len(records) == summary.images_written
  assert summary.boxes_written == sum(len(r['boxes']) for r in records.values())
  for record in records.values():
    boxes = record['boxes']
    assert np.isfinite(boxes).all() and (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert set(record['labels'].tolist()) <= set(LABEL_MAP.values())
    assert [LABEL_MAP.get(t.strip().lower()) for t in record['texts']] == record['labels'].tolist()
  return records


def _check_written(record, expected, size):
  boxes, ids = expected
  assert (record['height'], record['width']) == size
  np.testing.assert_allclose(record['boxes'], np.array(boxes, np.float32).reshape(-1, 4),
                             atol=1e-6)
  assert record['labels'].tolist() == ids


@FUZZ_SETTINGS
@given(entries=st.lists(st.tuples(images(), voc_annotations()), min_size=1, max_size=5))
def test_pascal_converter_on_fuzzed_devkits(label_map, entries):
  label_map, decode = label_map
  root = tempfile.mkdtemp()
  try:
    base = os.path.join(root, 'VOCdevkit', 'VOC2007')
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
      os.makedirs(os.path.join(base, sub))
    ids = [f'{i:06d}' for i in range(len(entries))]
    for image_id, ((encoded, _), xml_text) in zip(ids, entries):
      if encoded is not None:
        with open(os.path.join(base, 'JPEGImages', image_id + '.jpg'), 'wb') as f:
          f.write(encoded)
      if xml_text is not None:
        with open(os.path.join(base, 'Annotations', image_id + '.xml'), 'w',
                  encoding='utf-8') as f:
          f.write(xml_text.replace('IMAGE', image_id + '.jpg'))
    with open(os.path.join(base, 'ImageSets', 'Main', 'train.txt'), 'w', encoding='utf-8') as f:
      f.write(''.join(i + '\n' for i in ids))
    summary = pascal.convert_pascal(root, os.path.join(root, 'out', 'voc.record'), label_map,
                                    year='VOC2007', set_name='train', show_progress=False)
    records = _check_summary_and_records(summary, len(ids), decode)
    for image_id, ((_, size), xml_text) in zip(ids, entries):
      record = records.get(image_id + '.jpg')
      expected = None if xml_text is None else voc_expected(
          xml_text.replace('IMAGE', image_id + '.jpg'), size if size not in (None, 'other')
          else (1, 1))
      if size is None or expected is None:
        assert record is None, image_id  # no image, undecodable image or no parsable annotation
      elif size == 'other':
        assert record is None or record['format'] == 'png'  # skipped, or re-encoded as PNG
      elif expected[0]:
        event('image with boxes')
        assert record is not None, (image_id, summary.format())
        _check_written(record, expected, size)
      elif record is not None:  # no box survives: a negative example, or skipped
        _check_written(record, expected, size)
  finally:
    shutil.rmtree(root)


# ids compare as Python values (2.0 == 2, True == 1: duplicates); lists are unhashable
_IDS = st.one_of(st.integers(0, 4), st.sampled_from(['7', 2.0, None, True, [1], {'a': 1}]))
_PLAUSIBLE_BBOX = st.tuples(st.integers(-3, 12), st.integers(-3, 12), st.integers(-2, 20),
                           st.floats(-2, 20)).map(list)
_HOSTILE_BBOXES = st.one_of(
    st.lists(st.one_of(st.floats(-5, 40), st.integers(-5, 40)), min_size=4, max_size=4),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=6),
    st.sampled_from([None, 'x', [1, 2, 3, 'a'], [True, 1, 2, 3], {'x': 1}]))


@st.composite
def coco_data(draw):
  """(json dict, {file name: image bytes or None})."""
  files, images_json = {}, []
  for index in range(draw(st.integers(2, 5))):
    name = f'im{index}.jpg'
    files[name] = draw(images())
    entry = {'id': index if draw(st.integers(0, 9)) else draw(_IDS), 'file_name': name}
    if draw(st.integers(0, 9)) == 0:
      entry = draw(st.sampled_from([{'file_name': name}, {'id': index}, {'id': index,
                                                                          'file_name': 7}, 'x']))
    images_json.append(entry)
  annotations = []
  for _ in range(draw(st.integers(0, 12))):
    image_id = draw(st.integers(0, len(images_json) - 1))
    ann = {'image_id': image_id if draw(st.integers(0, 4)) else draw(_IDS),
           'category_id': draw(st.sampled_from([1, 2, 3] * 3 + [0, 4, '1', None, [1], True])),
           'bbox': draw(_PLAUSIBLE_BBOX if draw(st.integers(0, 3)) else _HOSTILE_BBOXES)}
    if draw(st.booleans()):
      ann['iscrowd'] = draw(st.sampled_from([0, 1, 'yes', None]))
    if draw(st.booleans()):
      ann['area'] = draw(st.sampled_from([10.0, 'big', None, float('nan')]))
    if draw(st.integers(0, 19)) == 0:
      ann = draw(st.sampled_from([{'bbox': [0, 0, 1, 1]}, 'x', None]))
    annotations.append(ann)
  data = {'images': images_json, 'annotations': annotations,
          'categories': [{'id': i, 'name': n} for n, i in LABEL_MAP.items()]}
  return data, files


def _hashable(value):
  try:
    hash(value)
  except TypeError:
    return False
  return True


def coco_expected(data, image, size):
  """(boxes, ids) the converter must write for one valid image entry."""
  boxes, ids = [], []
  for ann in data['annotations']:
    if not isinstance(ann, dict) or 'category_id' not in ann or not _hashable(ann.get('image_id')):
      continue
    if ann['image_id'] != image['id']:  # Python equality, as the converter's index
      continue
    category = ann['category_id']
    bbox = ann.get('bbox')
    if not _hashable(category) or category not in LABEL_MAP.values():
      continue
    if not (isinstance(bbox, list) and len(bbox) == 4 and
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
      continue
    x, y, w, h = (float(v) for v in bbox)
    box = expected_box(x, y, x + w, y + h, *size)
    if box is not None:
      boxes.append(box)
      ids.append(int(category))
  return boxes, ids


@FUZZ_SETTINGS
@given(case=coco_data(), use_label_map=st.booleans())
def test_coco_converter_on_fuzzed_json(label_map, case, use_label_map):
  label_map, decode = label_map
  data, files = case
  root = tempfile.mkdtemp()
  try:
    image_dir = os.path.join(root, 'images')
    os.makedirs(image_dir)
    for name, (encoded, _) in files.items():
      if encoded is not None:
        with open(os.path.join(image_dir, name), 'wb') as f:
          f.write(encoded)
    annotations_file = os.path.join(root, 'instances.json')
    with open(annotations_file, 'w', encoding='utf-8') as f:
      json.dump(data, f)  # NaN/Infinity written as JSON extensions, which json.load reads
    valid = [image for image in data['images'] if isinstance(image, dict) and 'id' in image and
             isinstance(image.get('file_name'), str)]
    valid_ids = [image['id'] for image in valid]
    valid = [image for image in valid if _hashable(image['id'])]  # others: skipped entries
    valid_ids = [image['id'] for image in valid]
    unique = len(set(valid_ids)) == len(valid_ids)
    try:
      summary = coco.convert_coco(image_dir, annotations_file, os.path.join(root, 'c.record'),
                                  label_map_path=label_map if use_label_map else None,
                                  show_progress=False)
    except common.ConversionError as error:
      event('ConversionError')
      assert not unique, error  # the only data-set level problem generated here
      assert 'image ids' in str(error)
      return
    assert unique, 'duplicate or unusable image ids must stop the conversion'
    records = _check_summary_and_records(summary, len(data['images']), decode)
    for image in valid:
      record = records.get(str(image['id']))
      size = files[image['file_name']][1]
      if size is None:
        assert record is None
      elif size == 'other':
        assert record is None or record['format'] == 'png'
      else:
        expected = coco_expected(data, image, size)
        if expected[0]:
          event('image with boxes')
          assert record is not None, (image, summary.format())
        if record is not None:
          _check_written(record, expected, size)
  finally:
    shutil.rmtree(root)
