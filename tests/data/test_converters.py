"""PASCAL VOC and COCO converters on small fixtures with bad input of every kind."""
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from mtl_ssl.data import tf_example_util
from mtl_ssl.data.converters import coco
from mtl_ssl.data.converters import common
from mtl_ssl.data.converters import pascal

W, H = 40, 30


def _image_bytes(fmt='JPEG', size=(W, H), seed=0):
  pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


def _voc_xml(filename, objects, size=(W, H)):
  parts = [f'<annotation><folder>VOC</folder><filename>{filename}</filename>',
           f'<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>']
  for name, (xmin, ymin, xmax, ymax), difficult in objects:
    parts.append(f'<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>'
                 f'<difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>'
                 f'<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>')
  parts.append('</annotation>')
  return ''.join(parts)


def _make_voc_year(root, year, entries, list_name='train'):
  """entries: (image id, image bytes or None, objects or None for a missing xml)."""
  base = root / 'VOCdevkit' / year
  for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
    (base / sub).mkdir(parents=True, exist_ok=True)
  for image_id, image, objects in entries:
    if image is not None:
      (base / 'JPEGImages' / f'{image_id}.jpg').write_bytes(image)
    if objects is not None:
      (base / 'Annotations' / f'{image_id}.xml').write_text(_voc_xml(f'{image_id}.jpg', objects))
  (base / 'ImageSets' / 'Main' / f'{list_name}.txt').write_text(
      ''.join(f'{image_id}\n' for image_id, _, _ in entries))


@pytest.fixture()
def voc_root(tmp_path):
  _make_voc_year(tmp_path, 'VOC2007', [
      ('000001', _image_bytes(), [('dog', (5, 3, 20, 15), 0), ('person', (10, 10, 30, 28), 1)]),
      ('000002', b'\xff\xd8\xff\xe0 definitely not a jpeg', [('dog', (1, 1, 5, 5), 0)]),
      ('000003', _image_bytes(seed=1), [('cat', (20, 3, 10, 15), 0),  # inverted
                                        ('unicorn', (1, 1, 9, 9), 0),  # not in the label map
                                        ('car', (30, 20, 50, 40), 0),  # clipped to the image
                                        ('bus', (45, 35, 60, 50), 0)]),  # fully outside
      ('000004', _image_bytes(seed=2), []),  # no objects: kept
      ('000005', _image_bytes(seed=3), None),  # no annotation file
  ])
  _make_voc_year(tmp_path, 'VOC2012', [
      ('2008_000001', _image_bytes(seed=4), [('cat', (0, 0, 40, 30), 0)])])
  return tmp_path


def _read(paths):
  return [tf_example_util.example_to_dict(e) for e in tf_example_util.read_examples(paths)]


def test_pascal_records_and_summary(voc_root, tmp_path):
  out = str(tmp_path / 'out' / 'voc.record')
  summary = pascal.convert_pascal(str(voc_root), out, common.default_label_map('pascal'),
                                  year='VOC2007', set_name='train', show_progress=False)
  records = _read(out)
  assert [r['source_id'] for r in records] == ['000001.jpg', '000003.jpg', '000004.jpg']
  first = records[0]
  assert (first['height'], first['width'], first['format']) == (H, W, 'jpeg')
  np.testing.assert_allclose(first['boxes'], [[3 / H, 5 / W, 15 / H, 20 / W],
                                              [10 / H, 10 / W, 28 / H, 30 / W]], rtol=1e-6)
  assert first['labels'].tolist() == [12, 15] and first['texts'] == ['dog', 'person']
  assert first['difficult'].tolist() == [0, 1]
  assert first['encoded'] == (voc_root / 'VOCdevkit/VOC2007/JPEGImages/000001.jpg').read_bytes()
  third = records[1]
  np.testing.assert_allclose(third['boxes'], [[20 / H, 30 / W, 1.0, 1.0]], rtol=1e-6)
  assert third['labels'].tolist() == [7] and third['difficult'].tolist() == [0]
  assert records[2]['boxes'].shape == (0, 4) and records[2]['labels'].size == 0

  assert summary.images_seen == 5 and summary.images_written == 3
  assert summary.boxes_written == 3
  assert dict(summary.images_skipped) == {'corrupt_image': 1, 'missing_annotation_file': 1}
  assert dict(summary.boxes_dropped) == {'invalid_box_inverted_or_zero_area': 1,
                                         'unknown_class': 1, 'box_outside_image': 1}
  assert dict(summary.notes) == {'box_clipped_to_image': 1, 'images_without_boxes_kept': 1,
                                 'difficult_boxes_kept': 1}
  assert dict(summary.unknown_classes) == {'unicorn': 1}
  text = summary.format()
  assert '3 images written with 3 boxes' in text and 'unicorn x1' in text
  assert '000002.jpg' in text  # the corrupt file is named


def test_pascal_merged_shards_and_ignore_difficult(voc_root, tmp_path):
  out = str(tmp_path / 'merged.record')
  summary = pascal.convert_pascal(str(voc_root / 'VOCdevkit'), out,
                                  common.default_label_map('pascal'), year='merged',
                                  num_shards=2, ignore_difficult_instances=True,
                                  show_progress=False)
  paths = [out + '-00000-of-00002', out + '-00001-of-00002']
  assert summary.output_paths == paths and all(os.path.isfile(p) for p in paths)
  assert [len(_read(p)) for p in paths] == [2, 2]  # round robin over 4 written images
  assert sorted(r['source_id'] for r in _read(paths)) == [
      '000001.jpg', '000003.jpg', '000004.jpg', '2008_000001.jpg']
  assert summary.boxes_dropped['difficult_ignored'] == 1 and summary.boxes_written == 3


def test_pascal_fatal_errors_name_the_path(voc_root, tmp_path):
  label_map = common.default_label_map('pascal')
  with pytest.raises(common.ConversionError, match='val.txt'):
    pascal.convert_pascal(str(voc_root), str(tmp_path / 'x'), label_map, set_name='val',
                          show_progress=False)
  missing = str(tmp_path / 'nowhere')
  with pytest.raises(common.ConversionError, match=missing):
    pascal.convert_pascal(missing, str(tmp_path / 'x'), label_map, show_progress=False)
  bad_map = tmp_path / 'bad.pbtxt'
  bad_map.write_text('item { name: "a" id: 0 }')
  with pytest.raises(common.ConversionError, match='bad.pbtxt'):
    pascal.convert_pascal(str(voc_root), str(tmp_path / 'x'), str(bad_map), show_progress=False)


def test_pascal_main_prints_summary(voc_root, tmp_path, capsys):
  out = str(tmp_path / 'cli.record')
  code = pascal.main([f'--data_dir={voc_root}', '--year=VOC2012', '--set=train',
                      f'--output_path={out}', '--no_progress'])
  assert code == 0 and len(_read(out)) == 1
  assert '1 images written with 1 boxes' in capsys.readouterr().out
  assert pascal.main([f'--data_dir={tmp_path / "none"}', f'--output_path={out}',
                      '--no_progress']) == 2
  assert 'error:' in capsys.readouterr().err


@pytest.fixture()
def coco_files(tmp_path):
  image_dir = tmp_path / 'images'
  image_dir.mkdir()
  (image_dir / 'a.jpg').write_bytes(_image_bytes())
  (image_dir / 'b.png').write_bytes(_image_bytes('PNG', seed=5))
  (image_dir / 'c.jpg').write_bytes(b'corrupt')
  data = {
      'images': [{'id': 4, 'file_name': 'missing.jpg', 'height': H, 'width': W},
                 {'id': 2, 'file_name': 'b.png', 'height': H, 'width': W},
                 {'id': 1, 'file_name': 'a.jpg', 'height': H, 'width': W},
                 {'id': 3, 'file_name': 'c.jpg', 'height': H, 'width': W}],
      'categories': [{'id': 1, 'name': 'person'}, {'id': 18, 'name': 'dog'}],
      'annotations': [
          {'id': 10, 'image_id': 1, 'category_id': 1, 'bbox': [4, 3, 10, 6], 'iscrowd': 0,
           'area': 55.0},
          {'id': 11, 'image_id': 1, 'category_id': 18, 'bbox': [0, 0, 20, 20], 'iscrowd': 1},
          {'id': 12, 'image_id': 1, 'category_id': 1, 'bbox': [30, 20, 20, 20], 'iscrowd': 0},
          {'id': 13, 'image_id': 1, 'category_id': 1, 'bbox': [5, 5, 0, 4], 'iscrowd': 0},
          {'id': 14, 'image_id': 1, 'category_id': 1, 'bbox': [50, 40, 5, 5], 'iscrowd': 0},
          {'id': 15, 'image_id': 1, 'category_id': 999, 'bbox': [1, 1, 5, 5], 'iscrowd': 0},
          {'id': 16, 'image_id': 77, 'category_id': 1, 'bbox': [1, 1, 5, 5], 'iscrowd': 0},
          {'id': 17, 'image_id': 1, 'category_id': 1, 'bbox': 'oops', 'iscrowd': 0},
      ]}
  annotations = tmp_path / 'instances.json'
  annotations.write_text(json.dumps(data))
  return image_dir, annotations


def test_coco_records_and_summary(coco_files, tmp_path):
  image_dir, annotations = coco_files
  out = str(tmp_path / 'coco.record')
  summary = coco.convert_coco(str(image_dir), str(annotations), out, show_progress=False)
  records = _read(out)
  assert [r['source_id'] for r in records] == ['1', '2']  # sorted by id; 3, 4 skipped
  first, second = records
  np.testing.assert_allclose(first['boxes'], [[3 / H, 4 / W, 9 / H, 14 / W],
                                              [0.0, 0.0, 20 / H, 20 / W],
                                              [20 / H, 30 / W, 1.0, 1.0]], rtol=1e-6)
  assert first['labels'].tolist() == [1, 18, 1]  # COCO category ids kept
  assert first['texts'] == ['person', 'dog', 'person']
  assert first['is_crowd'].tolist() == [0, 1, 0]
  np.testing.assert_allclose(first['area'], [55.0, 400.0, 100.0])  # given, else clipped w*h
  assert second['format'] == 'png' and second['boxes'].shape == (0, 4)
  assert summary.images_seen == 4 and summary.images_written == 2
  assert summary.boxes_written == 3
  assert dict(summary.images_skipped) == {'corrupt_image': 1, 'missing_image': 1}
  assert dict(summary.boxes_dropped) == {
      'invalid_box_inverted_or_zero_area': 1, 'box_outside_image': 1, 'unknown_category': 1,
      'annotation_for_unknown_image': 1, 'bad_bbox_value': 1}
  assert summary.notes['box_clipped_to_image'] == 1
  assert summary.notes['images_without_boxes_kept'] == 1
  assert summary.notes['crowd_boxes_kept'] == 1
  assert dict(summary.unknown_classes) == {999: 1}


def test_coco_label_map_names_and_cli(coco_files, tmp_path, capsys):
  image_dir, annotations = coco_files
  out = str(tmp_path / 'coco_lm.record')
  code = coco.main([f'--image_dir={image_dir}', f'--annotations_file={annotations}',
                    f'--output_path={out}', '--num_shards=3', '--no_progress',
                    f'--label_map_path={common.default_label_map("mscoco")}'])
  assert code == 0
  paths = [f'{out}-{i:05d}-of-00003' for i in range(3)]
  assert [len(_read(p)) for p in paths] == [1, 1, 0]
  assert _read(paths[0])[0]['texts'] == ['person', 'dog', 'person']
  assert '2 images written with 3 boxes' in capsys.readouterr().out


def test_coco_fatal_errors(tmp_path, coco_files):
  image_dir, _ = coco_files
  bad = tmp_path / 'bad.json'
  bad.write_text('{"images": [\n  {"id": 1,}\n]}')
  with pytest.raises(common.ConversionError, match=r'bad\.json:2:'):
    coco.convert_coco(str(image_dir), str(bad), str(tmp_path / 'x'), show_progress=False)
  with pytest.raises(common.ConversionError, match='no such file'):
    coco.convert_coco(str(image_dir), str(tmp_path / 'none.json'), str(tmp_path / 'x'))
  not_coco = tmp_path / 'list.json'
  not_coco.write_text('[1, 2]')
  with pytest.raises(common.ConversionError, match='no "images" list'):
    coco.convert_coco(str(image_dir), str(not_coco), str(tmp_path / 'x'), show_progress=False)


def test_clean_box_cases():
  assert common.clean_box(0, 0, 4, 3, 4, 3) == ((0.0, 0.0, 1.0, 1.0), None)
  assert common.clean_box(-2, 1, 2, 2, 4, 3) == ((1 / 3, 0.0, 2 / 3, 0.5), 'clipped')
  assert common.clean_box(3, 0, 1, 2, 4, 3) == (None, 'invalid_box_inverted_or_zero_area')
  assert common.clean_box(1, 1, 1, 2, 4, 3) == (None, 'invalid_box_inverted_or_zero_area')
  assert common.clean_box(5, 0, 7, 2, 4, 3) == (None, 'box_outside_image')
  assert common.clean_box(float('nan'), 0, 1, 1, 4, 3) == (None, 'box_not_finite')
