"""tf_example_decoder: real JPEG/PNG tf.Examples -> tensors, error strings, bad-record checker."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import input_records as ir
from mtl_ssl.data import tf_example_decoder as dec

LABEL_MAP = """
item { id: 1 name: 'cat' display_name: 'Cat' }
item { id: 2 name: 'dog' display_name: 'Dog' }
"""


@pytest.fixture
def label_map(tmp_path):
  path = tmp_path / 'label_map.pbtxt'
  path.write_text(LABEL_MAP)
  return str(path)


def _decode(record, label_map_path=''):
  return dec.TfExampleDecoder(label_map_path).decode(tf.constant(record))


def test_png_decodes_exactly_with_boxes_and_defaults():
  boxes = [[0.1, 0.2, 0.5, 0.6], [0.3, 0.0, 0.9, 0.4]]
  image = ir.draw(30, 40, boxes)
  record = ir.example(ir.encode(image, 'png'), 'png', boxes, labels=[2, 1], source_id='id7')
  out = _decode(record)
  np.testing.assert_array_equal(out[dec.IMAGE].numpy(), image)
  assert out[dec.IMAGE].dtype == tf.uint8
  np.testing.assert_array_equal(out[dec.IMAGE_SHAPE].numpy(), [30, 40])
  np.testing.assert_allclose(out[dec.BOXES].numpy(), boxes, atol=1e-7)
  np.testing.assert_array_equal(out[dec.CLASSES].numpy(), [2, 1])
  np.testing.assert_array_equal(out[dec.DIFFICULT].numpy(), [0, 0])
  np.testing.assert_array_equal(out[dec.IS_CROWD].numpy(), [0, 0])
  np.testing.assert_array_equal(out[dec.WEIGHTS].numpy(), [1.0, 1.0])
  assert out[dec.SOURCE_ID].numpy() == b'id7'
  assert out[dec.ERROR].numpy() == b''


def test_jpeg_decodes_close_and_flags_are_read():
  boxes = [[0.0, 0.0, 0.5, 0.5]]
  image = ir.draw(24, 24, boxes)
  record = ir.example(ir.encode(image, 'jpeg'), 'jpeg', boxes, labels=[1], difficult=[1],
                      is_crowd=[1])
  out = _decode(record)
  assert np.abs(out[dec.IMAGE].numpy().astype(int) - image.astype(int)).mean() < 4
  np.testing.assert_array_equal(out[dec.DIFFICULT].numpy(), [1])
  np.testing.assert_array_equal(out[dec.IS_CROWD].numpy(), [1])


@pytest.mark.parametrize('mode', ['L', 'RGBA'])
def test_gray_and_rgba_png_become_rgb(mode):
  buffer = io.BytesIO()
  Image.new(mode, (5, 4), 200 if mode == 'L' else (10, 20, 30, 40)).save(buffer, format='PNG')
  out = _decode(ir.example(buffer.getvalue(), 'png'))
  assert out[dec.IMAGE].shape == (4, 5, 3)
  expected = [200, 200, 200] if mode == 'L' else [10, 20, 30]
  np.testing.assert_array_equal(out[dec.IMAGE].numpy()[0, 0], expected)


def test_source_id_falls_back_to_filename():
  record = ir.example(ir.encode(ir.draw(4, 4, []), 'png'), 'png', skip=('image/source_id',),
                      filename='file.png')
  assert _decode(record)[dec.SOURCE_ID].numpy() == b'file.png'


def test_class_text_is_mapped_through_the_label_map_when_label_is_missing(label_map):
  boxes = [[0.1, 0.1, 0.2, 0.2]] * 3
  record = ir.example(ir.encode(ir.draw(4, 4, []), 'png'), 'png', boxes,
                      texts=['dog', 'cat', 'horse'])
  out = _decode(record, label_map)
  np.testing.assert_array_equal(out[dec.CLASSES].numpy(), [2, 1, -1])  # unknown name -> -1
  assert out[dec.ERROR].numpy() == b''


def test_display_names_can_be_used(label_map):
  record = ir.example(ir.encode(ir.draw(4, 4, []), 'png'), 'png', [[0, 0, 1, 1]], texts=['Dog'])
  decoder = dec.TfExampleDecoder(label_map, use_display_name=True)
  np.testing.assert_array_equal(decoder.decode(tf.constant(record))[dec.CLASSES].numpy(), [2])


def test_class_label_is_preferred_over_text(label_map):
  record = ir.example(ir.encode(ir.draw(4, 4, []), 'png'), 'png', [[0, 0, 1, 1]], labels=[1],
                      texts=['dog'])
  np.testing.assert_array_equal(_decode(record, label_map)[dec.CLASSES].numpy(), [1])


def _error(record, label_map_path=''):
  return dec.TfExampleDecoder(label_map_path).parse(tf.constant(record))[dec.ERROR].numpy().decode()


def test_malformed_records_get_an_error_naming_the_key():
  png = ir.encode(ir.draw(4, 4, []), 'png')
  box = [[0.1, 0.1, 0.5, 0.5]]
  assert 'image/encoded' in _error(ir.example(png, 'png', skip=('image/encoded',)))
  bad_lengths = ir.example(png, 'png', box, labels=[1], extra={
      'image/object/bbox/xmin': tf.train.Feature(float_list=tf.train.FloatList(value=[0.1, 0.2]))})
  assert 'different lengths' in _error(bad_lengths)
  assert 'image/object/class/label' in _error(ir.example(png, 'png', box))
  assert 'label_map_path' in _error(ir.example(png, 'png', box, texts=['cat']))
  assert 'image/object/difficult' in _error(ir.example(png, 'png', box, labels=[1],
                                                         difficult=[0, 1]))
  assert 'image/object/class/label' in _error(ir.example(png, 'png', box, labels=[1, 2]))
  assert _error(ir.example(png, 'png', [], labels=None)) == ''  # no boxes, no classes: fine


def test_check_records_names_file_index_and_problem(tmp_path, capsys):
  png = ir.encode(ir.draw(4, 4, []), 'png')
  path = ir.write(tmp_path / 'x.tfrecord', [
      ir.example(png, 'png'),
      ir.example(b'not an image', 'jpeg'),
      ir.example(png, 'png', skip=('image/encoded',)),
      b'not a tf.Example',
      ir.example(png[:len(png) // 2], 'png'),
  ])
  problems = dec.check_records([path], dec.TfExampleDecoder())
  assert [(p, i) for p, i, _ in problems] == [(path, 1), (path, 2), (path, 3), (path, 4)]
  assert 'cannot be decoded' in problems[0][2]
  assert 'image/encoded' in problems[1][2]
  assert 'tf.Example' in problems[2][2]
  assert dec.main([str(tmp_path / '*.tfrecord')]) == 1
  out = capsys.readouterr().out
  assert f'{path} record 1:' in out and '4 bad record(s) in 1 file(s)' in out


def test_decode_raises_on_bad_image_bytes():
  with pytest.raises(tf.errors.InvalidArgumentError):
    _decode(ir.example(b'\xff\xd8garbage', 'jpeg'))
