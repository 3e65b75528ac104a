"""mtl_ssl_submission on a real (tiny, untrained) exported model and generated images.

The expected boxes come from calling the SavedModel's signature directly and scaling with numpy;
the files must hold them in pixels of each original image (several sizes, none the model's
64x64 input). Also: the in-process checkpoint path gives the same files, the console command
with its flags, --helpfull and a user error without a traceback.
"""
import contextlib
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image
from pycocotools import coco as coco_api
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'training'))
import tiny_pipeline  # pylint: disable=wrong-import-position

from mtl_ssl.builders import model_builder  # pylint: disable=wrong-import-position
from mtl_ssl.config import config_util  # pylint: disable=wrong-import-position
from mtl_ssl.data import label_map_util  # pylint: disable=wrong-import-position
from mtl_ssl.data.scenes import generator  # pylint: disable=wrong-import-position
from mtl_ssl.export import exporter_lib  # pylint: disable=wrong-import-position
from mtl_ssl.export import submission  # pylint: disable=wrong-import-position

SIZES = ((50, 80), (120, 90), (47, 33), (200, 64))  # (width, height)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """The tiny pipeline's model with its initial weights, checkpointed and exported; a directory
  of generated images named as COCO names them."""
  root = tmp_path_factory.mktemp('submission')
  data_dir = root / 'data'
  data_dir.mkdir()
  label_map = label_map_util.write_labelmap(str(data_dir / generator.LABEL_MAP_NAME),
                                            generator.label_map_entries())
  # not next to the export: the label map must come from the export's own pipeline.config
  config = tiny_pipeline.write_pipeline(root / 'config', str(data_dir))
  model = model_builder.build(config_util.get_configs_from_pipeline_file(config)['model'],
                              is_training=False)
  exporter_lib.DetectionInferenceModule(model).run_inference(tf.zeros([1, 64, 64, 3], tf.uint8))
  tf.train.Checkpoint(model=model).save(str(root / 'model' / 'ckpt'))
  output = str(root / 'exported')
  exporter_lib.export_inference_graph('image_tensor', config, str(root / 'model'), output)
  image_dir = root / 'images'
  image_dir.mkdir()
  rng = np.random.default_rng(0)
  for index, (width, height) in enumerate(SIZES):
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image_dir / f'{index + 1:012d}.png')
  return {'root': root, 'config': config, 'model_dir': str(root / 'model'),
          'saved_model': os.path.join(output, 'saved_model'), 'image_dir': str(image_dir),
          'label_map': label_map}


def _expected(exported):
  """{image stem: (boxes in pixels [K, 4] xmin, ymin, xmax, ymax; scores; classes)} from the
  signature itself, best first."""
  serve = tf.saved_model.load(exported['saved_model']).signatures['serving_default']
  expected = {}
  for name in sorted(os.listdir(exported['image_dir'])):
    image = np.asarray(Image.open(os.path.join(exported['image_dir'], name)).convert('RGB'))
    out = {k: v.numpy()[0] for k, v in serve(input_tensor=tf.constant(image[None])).items()}
    count = int(out['num_detections'])
    order = np.argsort(-out['detection_scores'][:count], kind='stable')
    height, width = image.shape[:2]
    boxes = np.clip(out['detection_boxes'][:count][order].astype(np.float64), 0, 1)
    pixels = boxes[:, [1, 0, 3, 2]] * [width, height, width, height]
    expected[os.path.splitext(name)[0]] = (pixels, out['detection_scores'][:count][order],
                                           out['detection_classes'][:count][order].astype(int))
  return expected


def _read_voc(main_dir, names):
  """{image id: [(class id, score, xmin, ymin, xmax, ymax)]} of the written files."""
  rows = {}
  for class_id, name in names.items():
    with open(os.path.join(main_dir, f'comp4_det_test_{name}.txt'), encoding='utf-8') as f:
      for line in f:
        image_id, *numbers = line.split()
        rows.setdefault(image_id, []).append((class_id, *map(float, numbers)))
  return rows


def _assert_voc_matches(rows, expected, atol):
  """Every expected detection is in the files once (same class, score, box within atol) and
  nothing else is; matched one by one, since scores of an untrained model tie."""
  assert sorted(rows) == sorted(expected)
  for image_id, (pixels, scores, classes) in expected.items():
    left = list(rows[image_id])
    assert len(left) == len(scores) > 0  # all the model returned (20 max in the tiny config)
    for box, score, class_id in zip(pixels, scores, classes):
      match = next((row for row in left if row[0] == class_id and abs(row[1] - score) <= 2e-6
                    and np.allclose(row[2:], box, rtol=0, atol=atol)), None)
      assert match is not None, (image_id, class_id, score, box, left)
      left.remove(match)


def test_voc_files_hold_the_models_boxes_in_original_pixels(exported, tmp_path):
  expected = _expected(exported)
  submission.make_submission('voc', str(tmp_path), saved_model_dir=exported['saved_model'],
                             image_dir=exported['image_dir'], show_progress=False)
  names = {i: n for n, i in label_map_util.get_label_map_dict(exported['label_map']).items()}
  rows = _read_voc(tmp_path / 'results' / 'VOC2012' / 'Main', names)
  _assert_voc_matches(rows, expected, atol=0.005 + 1e-9)  # only the 2-decimal rounding

  # the same model built in process from the config and the training checkpoint
  submission.make_submission('voc', str(tmp_path / 'ckpt'),
                             pipeline_config_path=exported['config'],
                             checkpoint_dir=exported['model_dir'],
                             image_dir=exported['image_dir'], show_progress=False)
  _assert_voc_matches(_read_voc(tmp_path / 'ckpt' / 'results' / 'VOC2012' / 'Main', names),
                      expected, atol=0.02)


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, '-m', 'mtl_ssl.cli.submission', *args], env=env,
                        capture_output=True, text=True, timeout=300, check=False)


def test_console_command_writes_a_coco_json_that_loadres_accepts(exported, tmp_path):
  expected = _expected(exported)
  export_dir = os.path.dirname(exported['saved_model'])  # the export, not its saved_model/
  result = _run_cli('--format=coco', f'--saved_model_dir={export_dir}',
                    f'--image_dir={exported["image_dir"]}', f'--output_dir={tmp_path}',
                    '--max_detections_per_image=3', '--min_score=0.05', '--alg_name=tiny',
                    '--coco_split=val2017', '--noprogress')
  assert result.returncode == 0, result.stderr
  assert 'Traceback' not in result.stderr
  path = tmp_path / 'detections_val2017_tiny_results.json'
  with zipfile.ZipFile(tmp_path / 'detections_val2017_tiny_results.zip') as zipped:
    assert zipped.namelist() == [path.name]
  results = json.loads(path.read_text())
  for index, (stem, (pixels, scores, classes)) in enumerate(sorted(expected.items())):
    image_id = int(stem)
    assert image_id == index + 1  # 000000000001.png -> 1
    mine = [r for r in results if r['image_id'] == image_id]
    keep = np.flatnonzero(scores >= 0.05)[:3]
    assert 0 < len(mine) == len(keep) <= 3
    np.testing.assert_allclose([r['score'] for r in mine], scores[keep], atol=2e-6)
    xywh = np.concatenate([pixels[keep, :2], pixels[keep, 2:] - pixels[keep, :2]], axis=1)
    np.testing.assert_allclose([r['bbox'] for r in mine], xywh, atol=0.01 + 1e-9)
    assert [r['category_id'] for r in mine] == classes[keep].tolist()

  ground_truth = {
      'images': [{'id': i + 1, 'file_name': f'{i + 1:012d}.png', 'width': w, 'height': h}
                 for i, (w, h) in enumerate(SIZES)],
      'categories': [{'id': i, 'name': n} for i, n, _ in generator.label_map_entries()],
      'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [1, 2, 10, 20],
                       'area': 200, 'iscrowd': 0}]}
  with contextlib.redirect_stdout(io.StringIO()):
    coco = coco_api.COCO()
    coco.dataset = ground_truth
    coco.createIndex()
    loaded = coco.loadRes(str(path))
  assert len(loaded.getAnnIds()) == len(results)


def test_console_command_help_and_user_errors(exported, tmp_path):
  result = _run_cli('--helpfull')
  assert result.returncode == 1 and not result.stderr  # absl exits 1 after printing help
  for flag in ('--max_detections_per_image', '--min_score', '--coco_image_info',
               '--voc_competition', '--input_tfrecord'):
    assert flag in result.stdout
  result = _run_cli('--format=voc', f'--saved_model_dir={exported["saved_model"]}',
                    f'--image_dir={tmp_path / "nowhere"}', f'--output_dir={tmp_path}')
  assert result.returncode == 1
  assert f'error: --image_dir {tmp_path / "nowhere"} is not a directory' in result.stderr
  assert 'Traceback' not in result.stderr
