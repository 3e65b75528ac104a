"""The converters as commands on your own data: any VOC-layout folder and set name, any image
format Pillow reads, no silently empty data set, user errors without tracebacks, quiet start."""
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mtl_ssl.data import tf_example_util
from mtl_ssl.data.converters import coco
from mtl_ssl.data.converters import common
from mtl_ssl.data.converters import pascal

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
W, H = 48, 32
LABEL_MAP = 'item { id: 1 name: "apple" }\nitem { id: 2 name: "pear" }\n'


def _pixels(seed, channels=3, dtype=np.uint8, high=255):
  shape = (H, W, channels) if channels > 1 else (H, W)
  return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def _encode(array_or_image, fmt, mode=None):
  image = array_or_image if isinstance(array_or_image, Image.Image) else (
      Image.fromarray(array_or_image, mode) if mode else Image.fromarray(array_or_image))
  buffer = io.BytesIO()
  image.save(buffer, format=fmt)
  return buffer.getvalue()


def _xml(filename, objects):
  body = ''.join(f'<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin>'
                 f'<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>'
                 for name, (x0, y0, x1, y1) in objects)
  return (f'<annotation><filename>{filename}</filename><size><width>{W}</width>'
          f'<height>{H}</height><depth>3</depth></size>{body}</annotation>')


def _own_voc(root, images, sets=None):
  """images: {id: (file name, bytes, objects)}; sets: {name: [ids]} -> ImageSets/Main."""
  for sub in ('Annotations', 'JPEGImages'):
    (root / sub).mkdir(parents=True, exist_ok=True)
  for image_id, (filename, encoded, objects) in images.items():
    (root / 'JPEGImages' / filename).write_bytes(encoded)
    (root / 'Annotations' / f'{image_id}.xml').write_text(_xml(filename, objects))
  for name, ids in (sets or {}).items():
    (root / 'ImageSets' / 'Main').mkdir(parents=True, exist_ok=True)
    (root / 'ImageSets' / 'Main' / f'{name}.txt').write_text(''.join(f'{i}\n' for i in ids))
  label_map = root / 'label_map.pbtxt'
  label_map.write_text(LABEL_MAP)
  return root, str(label_map)


def _read(paths):
  return [tf_example_util.example_to_dict(e) for e in tf_example_util.read_examples(paths)]


def _decoded(record):
  return np.asarray(Image.open(io.BytesIO(record['encoded'])))


BOX = ('apple', (4, 2, 20, 18))


def test_any_folder_without_image_sets_converts_every_annotation_and_re_encodes(tmp_path):
  tiff16 = _pixels(1, channels=1, dtype=np.uint16, high=65535)
  rgba = _pixels(2, channels=4)
  images = {
      'b_tiff': ('b_tiff.tif', _encode(_pixels(0), 'TIFF'), [BOX]),
      'a_tiff16': ('a_tiff16.tiff', _encode(tiff16, 'TIFF'), [('pear', (0, 0, 10, 10))]),
      'c_bmp': ('c_bmp.bmp', _encode(_pixels(3), 'BMP'), [BOX]),
      'd_rgba': ('d_rgba.png', _encode(rgba, 'PNG'), [BOX]),
      'e_jpg': ('e_jpg.jpg', _encode(_pixels(4), 'JPEG'), [BOX]),
  }
  root, label_map = _own_voc(tmp_path / 'my_data', images)
  out = str(tmp_path / 'out.record')
  summary = pascal.convert_pascal(str(root), out, label_map, show_progress=False)
  records = {r['source_id']: r for r in _read(out)}
  assert sorted(records) == ['a_tiff16.tiff', 'b_tiff.tif', 'c_bmp.bmp', 'd_rgba.png',
                             'e_jpg.jpg']
  assert summary.notes['tiff_images_re_encoded_as_png'] == 2
  assert summary.notes['bmp_images_re_encoded_as_png'] == 1
  # lossless re-encoding: the pixels are the original ones (16-bit scaled to 8-bit)
  np.testing.assert_array_equal(_decoded(records['b_tiff.tif']), _pixels(0))
  np.testing.assert_array_equal(_decoded(records['c_bmp.bmp']), _pixels(3))
  np.testing.assert_array_equal(_decoded(records['a_tiff16.tiff']), (tiff16 >> 8).astype(np.uint8))
  assert records['b_tiff.tif']['format'] == 'png' and records['e_jpg.jpg']['format'] == 'jpeg'
  # JPEG and PNG (even RGBA) bytes are copied unchanged
  assert records['e_jpg.jpg']['encoded'] == images['e_jpg'][1]
  assert records['d_rgba.png']['encoded'] == images['d_rgba'][1]
  assert records['a_tiff16.tiff']['labels'].tolist() == [2]
  assert records['a_tiff16.tiff']['texts'] == ['pear']


def test_image_is_found_by_id_when_the_xml_names_another_extension(tmp_path):
  root, label_map = _own_voc(tmp_path / 'd', {'x': ('x.tif', _encode(_pixels(0), 'TIFF'), [BOX])})
  (root / 'Annotations' / 'x.xml').write_text(_xml('x.jpg', [BOX]))  # says .jpg, file is .tif
  summary = pascal.convert_pascal(str(root), str(tmp_path / 'o'), label_map, show_progress=False)
  assert summary.images_written == 1 and _read(str(tmp_path / 'o'))[0]['source_id'] == 'x.tif'


def test_any_set_name_and_any_devkit_folder_name(tmp_path):
  jpg = _encode(_pixels(0), 'JPEG')
  images = {f'im{i}': (f'im{i}.jpg', jpg, [BOX]) for i in range(4)}
  root, label_map = _own_voc(tmp_path / 'devkit' / 'Shop2024', images,
                             sets={'fold_a': ['im0', 'im2'], 'holdout': ['im3']})
  out = str(tmp_path / 'a.record')
  # --data_dir is the data set folder itself, set list of any name
  summary = pascal.convert_pascal(str(root), out, label_map, set_name='fold_a',
                                  show_progress=False)
  assert [r['source_id'] for r in _read(out)] == ['im0.jpg', 'im2.jpg']
  assert 'fold_a' in summary.name
  # or a devkit with --year naming the folder
  summary = pascal.convert_pascal(str(tmp_path / 'devkit'), out, label_map, year='Shop2024',
                                  set_name='holdout', show_progress=False)
  assert [r['source_id'] for r in _read(out)] == ['im3.jpg']
  # ImageSets/Main without train.txt and no --set: refuses to guess, lists the sets
  with pytest.raises(common.ConversionError, match='fold_a, holdout.*--set'):
    pascal.convert_pascal(str(root), out, label_map, show_progress=False)
  with pytest.raises(common.ConversionError, match=r'nope\.txt.*sets found: fold_a, holdout'):
    pascal.convert_pascal(str(root), out, label_map, set_name='nope', show_progress=False)
  with pytest.raises(common.ConversionError, match='pass --year, one of: Shop2024'):
    pascal.convert_pascal(str(tmp_path / 'devkit'), out, label_map, show_progress=False)


def test_every_box_dropped_exits_1_with_the_summary_and_removes_the_output(tmp_path, capsys):
  jpg = _encode(_pixels(0), 'JPEG')
  root, _ = _own_voc(tmp_path / 'd', {'a': ('a.jpg', jpg, [BOX]), 'b': ('b.jpg', jpg, [BOX])})
  out = tmp_path / 'o.record'
  # no --label_map_path: the default PASCAL label map has no 'apple'
  assert pascal.main([f'--data_dir={root}', f'--output_path={out}', '--no_progress']) == 1
  captured = capsys.readouterr()
  assert '0 images written' in captured.out  # the summary is printed
  assert 'classes not in the label map: apple x2' in captured.out
  assert 'error: no image was written' in captured.err
  assert not out.exists()
  # images kept as negatives on request, but still no box at all: refused
  assert pascal.main([f'--data_dir={root}', f'--output_path={out}', '--no_progress',
                      '--keep_unknown_class_images']) == 1
  err = capsys.readouterr().err
  assert 'every box was dropped (2 boxes, none written)' in err and 'apple' in err
  assert '--label_map_path' in err and 'removed' in err and not out.exists()


def test_image_with_only_unknown_classes_is_skipped_unless_asked(tmp_path):
  jpg = _encode(_pixels(0), 'JPEG')
  images = {'known': ('known.jpg', jpg, [BOX, ('plum', (1, 1, 9, 9))]),
            'unknown': ('unknown.jpg', jpg, [('plum', (1, 1, 9, 9))]),
            'empty': ('empty.jpg', jpg, [])}
  root, label_map = _own_voc(tmp_path / 'd', images)
  out = str(tmp_path / 'o.record')
  summary = pascal.convert_pascal(str(root), out, label_map, show_progress=False)
  assert [r['source_id'] for r in _read(out)] == ['empty.jpg', 'known.jpg']
  assert summary.images_skipped == {'only_unknown_class_boxes': 1}
  assert summary.notes['images_without_boxes_kept'] == 1  # truly empty: a negative example
  assert summary.failure() is None
  summary = pascal.convert_pascal(str(root), out, label_map, show_progress=False,
                                  keep_unknown_class_images=True)
  assert [r['source_id'] for r in _read(out)] == ['empty.jpg', 'known.jpg', 'unknown.jpg']
  assert summary.notes['images_without_boxes_kept'] == 2


def _coco_json(path, categories, annotations):
  import json  # pylint: disable=import-outside-toplevel
  path.write_text(json.dumps({
      'images': [{'id': 1, 'file_name': 'a.tif', 'height': H, 'width': W},
                 {'id': 2, 'file_name': 'b.jpg', 'height': H, 'width': W}],
      'categories': categories, 'annotations': annotations}))


def test_coco_re_encodes_skips_unknown_only_images_and_refuses_all_dropped(tmp_path, capsys):
  images = tmp_path / 'images'
  images.mkdir()
  (images / 'a.tif').write_bytes(_encode(_pixels(0), 'TIFF'))
  (images / 'b.jpg').write_bytes(_encode(_pixels(1), 'JPEG'))
  label_map = tmp_path / 'map.pbtxt'
  label_map.write_text(LABEL_MAP)
  annotations = tmp_path / 'ann.json'
  _coco_json(annotations, [{'id': 1, 'name': 'apple'}, {'id': 7, 'name': 'plum'}],
             [{'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [1, 1, 10, 10]},
              {'id': 2, 'image_id': 2, 'category_id': 7, 'bbox': [1, 1, 10, 10]}])
  out = str(tmp_path / 'c.record')
  summary = coco.convert_coco(str(images), str(annotations), out, label_map_path=str(label_map),
                              show_progress=False)
  (record,) = _read(out)
  assert record['source_id'] == '1' and record['format'] == 'png'
  np.testing.assert_array_equal(_decoded(record), _pixels(0))
  assert summary.images_skipped == {'only_unknown_class_boxes': 1}
  # every box unknown -> exit 1, files removed
  _coco_json(annotations, [{'id': 7, 'name': 'plum'}],
             [{'id': 2, 'image_id': 2, 'category_id': 7, 'bbox': [1, 1, 10, 10]}])
  code = coco.main([f'--image_dir={images}', f'--annotations_file={annotations}',
                    f'--output_path={out}', f'--label_map_path={label_map}', '--no_progress',
                    '--keep_unknown_class_images'])
  assert code == 1 and not os.path.exists(out)
  assert 'every box was dropped' in capsys.readouterr().err


def _under_a_file(tmp):
  (tmp / 'file').write_text('x')
  return tmp / 'file' / 'o.record'


@pytest.mark.parametrize('make_output, message', [
    (lambda tmp: tmp, 'is a directory'),
    (_under_a_file, 'cannot create its directory'),
])
def test_bad_output_paths_are_clear_errors(tmp_path, capsys, make_output, message):
  root, label_map = _own_voc(tmp_path / 'd', {'a': ('a.jpg', _encode(_pixels(0), 'JPEG'), [BOX])})
  output = make_output(tmp_path)
  assert pascal.main([f'--data_dir={root}', f'--output_path={output}',
                      f'--label_map_path={label_map}', '--no_progress']) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: --output_path') and message in err


@pytest.mark.skipif(os.geteuid() == 0, reason='root can write anywhere')
def test_unwritable_output_directory_is_a_clear_error(tmp_path, capsys):
  root, label_map = _own_voc(tmp_path / 'd', {'a': ('a.jpg', _encode(_pixels(0), 'JPEG'), [BOX])})
  locked = tmp_path / 'locked'
  locked.mkdir()
  locked.chmod(0o500)
  try:
    assert coco.main(['--image_dir=x', '--annotations_file=y', f'--output_path={locked}/o']) == 2
    assert pascal.main([f'--data_dir={root}', f'--output_path={locked}/o.record',
                        f'--label_map_path={label_map}', '--no_progress']) == 2
  finally:
    locked.chmod(0o700)
  assert 'not writable' in capsys.readouterr().err


def test_python_dash_m_runs_quietly(tmp_path):
  """`python -m` works, and no TensorFlow start-up line reaches the user."""
  root, label_map = _own_voc(tmp_path / 'd', {'a': ('a.jpg', _encode(_pixels(0), 'JPEG'), [BOX])})
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  out = tmp_path / 'o.record'
  done = subprocess.run(
      [sys.executable, '-m', 'mtl_ssl.data.converters.pascal', f'--data_dir={root}',
       f'--output_path={out}', f'--label_map_path={label_map}', '--no_progress'],
      capture_output=True, text=True, timeout=120, env=env, check=False)
  assert done.returncode == 0, done.stderr
  assert '1 images written with 1 boxes' in done.stdout and out.is_file()
  # no TensorFlow C++ start-up line (cuda stub, oneDNN, cpu_feature_guard: "<date> <time>: I ...")
  tf_lines = [line for line in done.stderr.splitlines()
              if re.match(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] ', line)
              or 'oneDNN' in line or 'cuda' in line.lower()]
  assert not tf_lines, done.stderr


def test_console_scripts_are_declared():
  with open(os.path.join(REPO, 'pyproject.toml'), encoding='utf-8') as f:
    text = f.read()
  assert 'mtl_ssl_create_pascal_tf_record = "mtl_ssl.data.converters.pascal:run"' in text
  assert 'mtl_ssl_create_coco_tf_record = "mtl_ssl.data.converters.coco:run"' in text
  assert callable(pascal.run) and callable(coco.run)
