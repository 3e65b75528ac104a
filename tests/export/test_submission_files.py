"""Submission files on hand-made detections: exact lines, the options, the id rules, errors."""
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest

from mtl_ssl.export import image_sources
from mtl_ssl.export import submission_files as files


def _outputs(boxes, scores, classes, pad=2, num_classes=20):
  """Detector outputs of one image, padded as the export pads them (rows past num_detections)."""
  count = len(scores)
  boxes = np.concatenate([np.asarray(boxes, np.float32).reshape(-1, 4),
                          np.full([pad, 4], 0.5, np.float32)])
  return {'detection_boxes': boxes,
          'detection_scores': np.concatenate([np.asarray(scores, np.float32),
                                              np.full([pad], 0.99, np.float32)]),
          'detection_classes': np.concatenate([np.asarray(classes, np.float32),
                                               np.ones([pad], np.float32)]),
          'num_detections': np.float32(count),
          'detection_multiclass_scores': np.zeros([count + pad, num_classes + 1], np.float32)}


def test_select_detections_drops_unknown_classes_then_floor_then_keeps_the_best():
  outputs = _outputs([[0, 0, 1, 1], [-0.1, 0.2, 0.5, 1.2], [0, 0, 0.5, 0.5], [0, 0, 0.1, 0.1],
                      [0.1, 0.1, 0.2, 0.2]],
                     [0.2, 0.9, 0.95, 0.05, 0.5], [1, 3, 12, 1, 1])
  boxes, scores, classes, dropped = files.select_detections(outputs, 0.1, 2, {1, 2, 3})
  assert dropped == {12: 1}  # the 0.95 detection of class 12 is not in the label map
  np.testing.assert_allclose(scores, [0.9, 0.5], rtol=1e-6)  # padding rows never show up
  assert classes.tolist() == [3, 1]
  np.testing.assert_allclose(boxes, [[0.0, 0.2, 0.5, 1.0], [0.1, 0.1, 0.2, 0.2]], atol=1e-7)
  _, scores, _, _ = files.select_detections(outputs, 0.0, None, {1, 2, 3})
  np.testing.assert_allclose(scores, [0.9, 0.5, 0.2, 0.05], rtol=1e-6)  # all, best first
  _, scores, _, dropped = files.select_detections(outputs, 0.0, None, None)
  assert len(scores) == 5 and not dropped


def test_pixel_corners_voc_line_and_coco_entry_exact_text():
  corners = files.pixel_corners([[0.1, 0.2, 0.5, 1.0]], height=375, width=500)
  assert corners.tolist() == [[100.0, 37.5, 500.0, 187.5]]
  assert files.voc_line('2008_000001', 0.123456789, (48.0, 240.0, 195.0, 371.0)) == \
      '2008_000001 0.123457 48.00 240.00 195.00 371.00'
  assert files.coco_entry(139, 18, 0.98765432, (473.07, 395.93, 511.23, 427.0)) == {
      'image_id': 139, 'category_id': 18, 'bbox': [473.07, 395.93, 38.16, 31.07],
      'score': 0.987654}


def test_float32_boxes_of_integer_coordinates_come_back_exact():
  """The worst case of the rounding: every integer coordinate of images up to 2000 pixels."""
  for size in (61, 333, 375, 500, 1023, 2000):
    coordinates = np.arange(0, size + 1, dtype=np.float64)
    normalized = (coordinates / size).astype(np.float32)  # as a TFRecord / the model stores it
    back = files.pixel_corners(np.stack([normalized] * 4, axis=1), size, size)
    np.testing.assert_array_equal(back, np.stack([coordinates] * 4, axis=1))


def test_voc_writer_writes_every_class_file_with_the_exact_lines(tmp_path):
  names = {1: 'aeroplane', 2: 'bicycle', 3: 'bird'}
  with files.VocResultsWriter(str(tmp_path), names, 'comp4', 'test', 'VOC2012') as writer:
    writer.add('2008_000001', 375, 500, [[0.1, 0.2, 0.5, 1.0], [0, 0, 1, 1]], [0.5, 0.25],
               [3, 1])
    writer.add('2008_000002', 100, 200, [[0.01, 0.005, 0.02, 0.01]], [0.75], [3])
  paths = writer.paths  # closed (renamed) when the with block ends
  main = tmp_path / 'results' / 'VOC2012' / 'Main'
  assert sorted(os.listdir(main)) == ['comp4_det_test_aeroplane.txt',
                                      'comp4_det_test_bicycle.txt', 'comp4_det_test_bird.txt']
  assert (main / 'comp4_det_test_bird.txt').read_text() == (
      '2008_000001 0.500000 100.00 37.50 500.00 187.50\n'
      '2008_000002 0.750000 1.00 1.00 2.00 2.00\n')
  assert (main / 'comp4_det_test_aeroplane.txt').read_text() == \
      '2008_000001 0.250000 0.00 0.00 500.00 375.00\n'
  assert (main / 'comp4_det_test_bicycle.txt').read_text() == ''
  assert writer.num_detections == 3
  archive = files.write_voc_archive(str(tmp_path), paths)
  with tarfile.open(archive) as tar:
    assert sorted(tar.getnames()) == [f'results/VOC2012/Main/comp4_det_test_{n}.txt'
                                      for n in ('aeroplane', 'bicycle', 'bird')]


def test_writers_leave_no_file_when_interrupted(tmp_path):
  with pytest.raises(RuntimeError):
    with files.VocResultsWriter(str(tmp_path), {1: 'cat'}) as writer:
      writer.add('a', 10, 10, [[0, 0, 1, 1]], [0.5], [1])
      raise RuntimeError('interrupted')
  assert os.listdir(tmp_path / 'results' / 'VOC2012' / 'Main') == []
  path = str(tmp_path / files.coco_results_name('val2017', 'x'))
  with pytest.raises(RuntimeError):
    with files.CocoResultsWriter(path) as writer:
      writer.add(1, 10, 10, [[0, 0, 1, 1]], [0.5], [1])
      raise RuntimeError('interrupted')
  assert sorted(os.listdir(tmp_path)) == ['results']


def test_coco_writer_json_and_zip(tmp_path):
  path = str(tmp_path / files.coco_results_name('test-dev2017', 'mtlssl'))
  assert path.endswith('detections_test-dev2017_mtlssl_results.json')
  with files.CocoResultsWriter(path) as writer:
    writer.add(139, 375, 500, [[0.1, 0.2, 0.5, 1.0]], [0.5], [90])
    writer.add(140, 10, 10, [], [], [])
    writer.add(141, 100, 200, [[0.0, 0.0, 0.25, 0.5], [0.5, 0.5, 1.0, 1.0]], [0.75, 0.125],
               [1, 18])
  assert json.loads(open(path, encoding='utf-8').read()) == [
      {'image_id': 139, 'category_id': 90, 'bbox': [100.0, 37.5, 400.0, 150.0], 'score': 0.5},
      {'image_id': 141, 'category_id': 1, 'bbox': [0.0, 0.0, 100.0, 25.0], 'score': 0.75},
      {'image_id': 141, 'category_id': 18, 'bbox': [100.0, 50.0, 100.0, 50.0],
       'score': 0.125}]
  with zipfile.ZipFile(files.write_coco_zip(path)) as zipped:
    assert zipped.namelist() == [os.path.basename(path)]
  empty = str(tmp_path / 'empty.json')
  with files.CocoResultsWriter(empty):
    pass
  assert json.loads(open(empty, encoding='utf-8').read()) == []


def test_coco_results_name_rules():
  with pytest.raises(ValueError, match='split'):
    files.coco_results_name('test2017', 'x')
  with pytest.raises(ValueError, match='alg_name'):
    files.coco_results_name('test-dev2017', 'my_alg')  # the server splits at '_'


def _ref(file_name, source_id=''):
  return image_sources.ImageRef(os.path.splitext(file_name)[0], file_name, source_id,
                                f'/x/{file_name}')


def test_coco_image_ids_from_names_source_ids_and_image_info(tmp_path):
  ids = files.CocoImageIds()
  assert ids.image_id(_ref('000000000139.jpg')) == 139
  assert ids.image_id(_ref('COCO_val2014_000000000042.jpg')) == 42
  assert ids.image_id(_ref('000000000139.jpg', source_id='7')) == 7  # the record's id wins
  assert ids.image_id(_ref('2008_000001.jpg', source_id='2008_000001.jpg')) == 1
  with pytest.raises(ValueError, match='coco_image_info'):
    ids.image_id(_ref('cat.jpg'))
  info = tmp_path / 'image_info_test-dev2017.json'
  info.write_text(json.dumps({'images': [
      {'id': 5, 'file_name': 'cat.jpg', 'height': 20, 'width': 30},
      {'id': 9, 'file_name': '000000000139.jpg', 'height': 20, 'width': 30}]}))
  ids = files.CocoImageIds(str(info))
  assert ids.file_names() == ['cat.jpg', '000000000139.jpg']
  assert ids.image_id(_ref('cat.jpg')) == 5
  assert ids.image_id(_ref('000000000139.jpg')) == 9  # the JSON wins over the name
  ids.check_size(_ref('cat.jpg'), 20, 30)
  with pytest.raises(ValueError, match='20x30'):
    ids.check_size(_ref('cat.jpg'), 30, 20)
  info.write_text(json.dumps({'images': [{'id': '5', 'file_name': 'cat.jpg'}]}))
  with pytest.raises(ValueError, match=r'images\[0\]'):
    files.CocoImageIds(str(info))


def test_voc_class_names_must_make_file_names():
  assert files.check_voc_class_names({1: 'aeroplane', 2: 'tvmonitor'}, 'm.pbtxt') == []
  assert files.check_voc_class_names({1: 'dog', 2: 'ankle_boot'}, 'm.pbtxt') == ['ankle_boot']
  with pytest.raises(ValueError, match="m.pbtxt: class name 'potted plant'"):
    files.check_voc_class_names({1: 'potted plant'}, 'm.pbtxt')
  with pytest.raises(ValueError, match='VOC2012'):
    files.VocResultsWriter('out', {1: 'dog'}, year='2012')
