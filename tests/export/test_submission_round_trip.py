"""Ground truth -> converter -> TFRecord -> submission files gives the annotations back exactly.

A stand-in detector returns each image's ground-truth boxes as they are stored in the TFRecord
(float32, normalized by the converter), so the files must hold the original annotation
coordinates: the devkit's 1-based XML integers, COCO's [x, y, w, h] (COCOeval: AP 1.0).
Images of several sizes; the model itself is tested in tests/cli/test_submission.py.
"""
import contextlib
import hashlib
import io
import json
import os

import numpy as np
from PIL import Image
from pycocotools import coco as coco_api
from pycocotools import cocoeval
import pytest
import tensorflow as tf

from mtl_ssl.data import label_map_util
from mtl_ssl.data.converters import coco as coco_converter
from mtl_ssl.data.converters import common
from mtl_ssl.data.converters import pascal
from mtl_ssl.export import submission

SIZES = ((500, 375), (353, 500), (333, 211), (97, 61), (640, 427))  # (width, height)
PASCAL_MAP = common.default_label_map('pascal')
COCO_MAP = common.default_label_map('mscoco')


def _image(width, height, seed, fmt='JPEG'):
  pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


class GroundTruthDetector:
  """detect() returns the boxes and classes stored with the image in the TFRecord(s), scores
  1.0, 0.99, ..., laid out as the export's outputs (padded to 300 rows)."""

  def __init__(self, record_path, num_classes):
    self.num_classes = num_classes
    self.truth = {}
    for record in tf.data.TFRecordDataset(tf.io.gfile.glob(record_path)):
      feature = tf.train.Example.FromString(record.numpy()).features.feature
      boxes = np.stack([np.asarray(feature[f'image/object/bbox/{k}'].float_list.value,
                                   np.float32) for k in ('ymin', 'xmin', 'ymax', 'xmax')], 1)
      classes = np.asarray(feature['image/object/class/label'].int64_list.value)
      encoded = feature['image/encoded'].bytes_list.value[0]
      self.truth[hashlib.sha256(encoded).hexdigest()] = (boxes.reshape(-1, 4), classes)

  def detect(self, image, encoded):
    boxes, classes = self.truth[hashlib.sha256(encoded).hexdigest()]
    count, rows = len(classes), 300
    out = {'detection_boxes': np.zeros([rows, 4], np.float32),
           'detection_scores': np.zeros([rows], np.float32),
           'detection_classes': np.ones([rows], np.float32),
           'num_detections': np.float32(count),
           'detection_multiclass_scores': np.zeros([rows, self.num_classes + 1], np.float32)}
    out['detection_boxes'][:count] = boxes
    out['detection_scores'][:count] = 1.0 - 0.01 * np.arange(count)
    out['detection_classes'][:count] = classes
    assert image.shape[:2] == Image.open(io.BytesIO(encoded)).size[::-1]
    return out


def _voc_xml(image_id, width, height, objects):
  parts = [f'<annotation><filename>{image_id}.jpg</filename><size><width>{width}</width>'
           f'<height>{height}</height><depth>3</depth></size>']
  for name, (xmin, ymin, xmax, ymax) in objects:
    parts.append(f'<object><name>{name}</name><difficult>0</difficult><bndbox>'
                 f'<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>'
                 '</bndbox></object>')
  return ''.join(parts) + '</annotation>'


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
  """A VOC2007-style devkit (1-based integer boxes, touching the borders too) and its record."""
  root = tmp_path_factory.mktemp('voc')
  base = root / 'VOCdevkit' / 'VOC2007'
  for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
    (base / sub).mkdir(parents=True)
  names = list(label_map_util.get_label_map_dict(PASCAL_MAP))
  rng = np.random.default_rng(0)
  truth = {}  # (class name, image id) -> sorted list of XML boxes
  ids = []
  for index, (width, height) in enumerate(SIZES):
    image_id = f'2008_{index + 1:06d}'
    objects = [('person', (1, 1, width, height))]  # the whole image, 1-based
    for _ in range(6):
      x0, x1 = sorted(rng.choice(np.arange(1, width + 1), 2, replace=False).tolist())
      y0, y1 = sorted(rng.choice(np.arange(1, height + 1), 2, replace=False).tolist())
      objects.append((names[rng.integers(len(names))], (x0, y0, x1, y1)))
    for name, box in objects:
      truth.setdefault(name, {}).setdefault(image_id, []).append(box)
    (base / 'Annotations' / f'{image_id}.xml').write_text(
        _voc_xml(image_id, width, height, objects))
    (base / 'JPEGImages' / f'{image_id}.jpg').write_bytes(_image(width, height, index))
    ids.append(image_id)
  (base / 'ImageSets' / 'Main' / 'test.txt').write_text('\n'.join(ids) + '\n')
  record = str(root / 'voc_test.record')
  pascal.convert_pascal(str(root), record, PASCAL_MAP, 'VOC2007', 'test', show_progress=False)
  return {'root': root, 'base': base, 'record': record, 'truth': truth, 'ids': ids,
          'detector': GroundTruthDetector(record, 20)}


def _read_voc(main_dir):
  """{class name: {image id: sorted [(xmin, ymin, xmax, ymax)]}} of the written files."""
  found = {}
  for name in os.listdir(main_dir):
    class_name = name[len('comp4_det_test_'):-len('.txt')]
    for line in (main_dir / name).read_text().splitlines():
      image_id, _, *box = line.split()
      found.setdefault(class_name, {}).setdefault(image_id, []).append(
          tuple(float(v) for v in box))
  return {c: {i: sorted(b) for i, b in images.items()} for c, images in found.items()}


def test_voc_files_give_back_the_xml_coordinates(voc, tmp_path):
  summary = submission.make_submission(
      'voc', str(tmp_path), input_tfrecord=voc['record'], label_map_path=PASCAL_MAP,
      detector=voc['detector'], show_progress=False)
  main_dir = tmp_path / 'results' / 'VOC2012' / 'Main'
  assert len(os.listdir(main_dir)) == 20  # every class has its file, empty or not
  expected = {c: {i: sorted(tuple(float(v) for v in b) for b in boxes)
                  for i, boxes in images.items()} for c, images in voc['truth'].items()}
  assert _read_voc(main_dir) == expected  # exact: 1-based XML integers, nothing shifted
  assert summary['detections'] == 7 * len(SIZES)
  assert summary['archive'].endswith('results.tar.gz')


def test_voc_from_the_image_dir_with_an_image_list(voc, tmp_path):
  image_list = tmp_path / 'test.txt'
  image_list.write_text(f'{voc["ids"][3]}\n{voc["ids"][0]} 1\n')  # devkit lists: first word
  submission.make_submission(
      'voc', str(tmp_path / 'out'), image_dir=str(voc['base'] / 'JPEGImages'),
      image_list=str(image_list), label_map_path=PASCAL_MAP, detector=voc['detector'],
      voc_year='VOC2007', archive=False, show_progress=False)
  found = _read_voc(tmp_path / 'out' / 'results' / 'VOC2007' / 'Main')
  wanted = {voc['ids'][0], voc['ids'][3]}
  expected = {c: {i: sorted(tuple(float(v) for v in b) for b in boxes)
                  for i, boxes in images.items() if i in wanted}
              for c, images in voc['truth'].items()}
  assert found == {c: images for c, images in expected.items() if images}
  assert not os.path.exists(tmp_path / 'out' / 'results.tar.gz')


def test_voc_user_errors_name_the_culprit(voc, tmp_path):
  def run(**kwargs):
    options = dict(label_map_path=PASCAL_MAP, detector=voc['detector'], show_progress=False)
    submission.make_submission('voc', str(tmp_path / 'out'), **dict(options, **kwargs))

  with pytest.raises(ValueError, match='is not a directory'):
    run(image_dir=str(tmp_path / 'nowhere'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='has no'):
    run(image_dir=str(tmp_path / 'empty'))
  with pytest.raises(ValueError, match='no such file'):
    run(input_tfrecord=str(tmp_path / 'missing.record'))
  image_list = tmp_path / 'list.txt'
  image_list.write_text('2008_000001\n2012_999999\n')
  with pytest.raises(ValueError, match='1 listed image.*2012_999999'):
    run(image_dir=str(voc['base'] / 'JPEGImages'), image_list=str(image_list))
  twins = tmp_path / 'twins'
  twins.mkdir()
  (twins / 'a.jpg').write_bytes(_image(10, 10, 0))
  (twins / 'a.png').write_bytes(_image(10, 10, 0, 'PNG'))
  with pytest.raises(ValueError, match="same name 'a'"):
    run(image_dir=str(twins))
  with pytest.raises(ValueError, match='min_score'):
    run(image_dir=str(twins), min_score=1.5)
  with pytest.raises(ValueError, match='saved_model_dir'):
    submission.make_submission('voc', str(tmp_path), image_dir=str(twins),
                               label_map_path=PASCAL_MAP)
  with pytest.raises(ValueError, match="class name 'traffic light'"):
    run(image_dir=str(twins), label_map_path=COCO_MAP)
  with pytest.raises(ValueError, match='predicts 20 classes'):  # a VOC model, the COCO map
    submission.make_submission('coco', str(tmp_path / 'coco_map'), input_tfrecord=voc['record'],
                               label_map_path=COCO_MAP, detector=voc['detector'],
                               show_progress=False)
  assert not os.listdir(tmp_path / 'coco_map')  # no partial file left


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
  """COCO-style GT (0-based float [x, y, w, h], non-contiguous category ids) and its record."""
  root = tmp_path_factory.mktemp('coco')
  (root / 'val2017').mkdir()
  rng = np.random.default_rng(1)
  categories = [{'id': i, 'name': n} for i, n in ((1, 'person'), (18, 'dog'), (44, 'bottle'),
                                                  (90, 'toothbrush'))]
  images, annotations = [], []
  for index, (width, height) in enumerate(SIZES):
    image_id = 1000 + 7 * index
    file_name = f'{image_id:012d}.jpg'
    (root / 'val2017' / file_name).write_bytes(_image(width, height, index))
    images.append({'id': image_id, 'file_name': file_name, 'width': width, 'height': height})
    for _ in range(5):
      x, y = round(rng.uniform(0, width - 5), 2), round(rng.uniform(0, height - 5), 2)
      w = round(rng.uniform(1, width - x), 2)
      h = round(rng.uniform(1, height - y), 2)
      annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                          'category_id': categories[rng.integers(4)]['id'],
                          'bbox': [x, y, w, h], 'area': w * h, 'iscrowd': 0})
  gt_path = root / 'instances_val2017.json'
  gt_path.write_text(json.dumps({'images': images, 'annotations': annotations,
                                 'categories': categories}))
  record = str(root / 'coco_val.record')
  coco_converter.convert_coco(str(root / 'val2017'), str(gt_path), record,
                              label_map_path=COCO_MAP, show_progress=False)
  return {'root': root, 'gt_path': str(gt_path), 'record': record, 'images': images,
          'annotations': annotations, 'detector': GroundTruthDetector(record, 90)}


def _coco_ap(gt_path, results_path):
  with contextlib.redirect_stdout(io.StringIO()):
    ground_truth = coco_api.COCO(gt_path)
    evaluation = cocoeval.COCOeval(ground_truth, ground_truth.loadRes(results_path), 'bbox')
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
  return evaluation.stats[0]


def test_coco_json_gives_back_the_annotations(coco, tmp_path):
  summary = submission.make_submission(
      'coco', str(tmp_path), input_tfrecord=coco['record'], label_map_path=COCO_MAP,
      detector=coco['detector'], coco_split='val2017', alg_name='gt', show_progress=False)
  path = tmp_path / 'detections_val2017_gt_results.json'
  assert summary['files'] == [str(path)]
  results = json.loads(path.read_text())
  found = sorted((r['image_id'], r['category_id'], tuple(r['bbox'])) for r in results)
  expected = sorted((a['image_id'], a['category_id'], tuple(a['bbox']))
                    for a in coco['annotations'])
  assert found == expected  # exact: the annotations' own 2-decimal numbers
  assert _coco_ap(coco['gt_path'], str(path)) == pytest.approx(1.0)
  assert summary['archive'] == str(tmp_path / 'detections_val2017_gt_results.zip')


def test_coco_ids_from_image_info_and_the_options(coco, tmp_path):
  """The image info selects the images and gives their ids (here deliberately not the file
  names' digits); the score floor and max detections take effect."""
  info = {'images': [dict(image, id=image['id'] + 1) for image in coco['images'][:3]]}
  info_path = tmp_path / 'image_info_test-dev2017.json'
  info_path.write_text(json.dumps(info))
  summary = submission.make_submission(
      'coco', str(tmp_path), image_dir=str(coco['root'] / 'val2017'),
      coco_image_info=str(info_path), label_map_path=COCO_MAP, detector=coco['detector'],
      max_detections_per_image=3, min_score=0.985, show_progress=False)
  results = json.loads((tmp_path / 'detections_test-dev2017_mtlssl_results.json').read_text())
  assert summary['images'] == 3
  assert sorted({r['image_id'] for r in results}) == [image['id'] for image in info['images']]
  for image in info['images']:
    scores = [r['score'] for r in results if r['image_id'] == image['id']]
    assert scores == [1.0, 0.99]  # 0.98 is under the floor; at most 3 anyway
  submission.make_submission(
      'coco', str(tmp_path / 'top1'), input_tfrecord=coco['record'], label_map_path=COCO_MAP,
      detector=coco['detector'], max_detections_per_image=1, show_progress=False)
  results = json.loads(
      (tmp_path / 'top1' / 'detections_test-dev2017_mtlssl_results.json').read_text())
  assert len(results) == len(SIZES) and {r['score'] for r in results} == {1.0}
  info['images'][0]['width'] += 1
  info_path.write_text(json.dumps(info))
  with pytest.raises(ValueError, match='not the same image'):
    submission.make_submission(
        'coco', str(tmp_path / 'bad'), image_dir=str(coco['root'] / 'val2017'),
        coco_image_info=str(info_path), label_map_path=COCO_MAP, detector=coco['detector'],
        show_progress=False)
