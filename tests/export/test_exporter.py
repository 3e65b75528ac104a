"""Export -> reload -> same detections as the in-process model; every input type; the infer CLI."""
import io
import json
import os
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'training'))
import tiny_pipeline  # pylint: disable=wrong-import-position

from mtl_ssl.cli import infer  # pylint: disable=wrong-import-position
from mtl_ssl.config import config_util  # pylint: disable=wrong-import-position
from mtl_ssl.export import exporter_lib  # pylint: disable=wrong-import-position
from mtl_ssl.training import train_loop  # pylint: disable=wrong-import-position


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """A 1-step training checkpoint (with optimizer slots) exported with image_tensor input."""
  root = tmp_path_factory.mktemp('export')
  data_dir = tiny_pipeline.write_scenes(root / 'scenes', num_train=2, num_test=2)
  config = tiny_pipeline.write_pipeline(root, data_dir)
  model_dir = str(root / 'model')
  train_loop.train_loop(config, model_dir, train_steps=1, record_summaries=False, seed=0)
  output = str(root / 'exported')
  exporter_lib.export_inference_graph('image_tensor', config, model_dir, output)
  return {'root': root, 'config': config, 'model_dir': model_dir, 'output': output,
          'data_dir': data_dir}


@pytest.fixture(scope='module')
def image(exported):
  """A real scenes test image, resized to 80x100 (not the model's 64x64 input size)."""
  record = next(iter(tf.data.TFRecordDataset(
      os.path.join(exported['data_dir'], 'scenes_test.record'))))
  example = tf.train.Example.FromString(record.numpy())
  encoded = example.features.feature['image/encoded'].bytes_list.value[0]
  return np.asarray(Image.open(io.BytesIO(encoded)).convert('RGB').resize((100, 80)))


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


def test_export_layout(exported):
  output = exported['output']
  assert tf.saved_model.contains_saved_model(os.path.join(output, 'saved_model'))
  assert tf.train.latest_checkpoint(os.path.join(output, 'checkpoint')).endswith('ckpt-0')
  written = config_util.get_configs_from_pipeline_file(os.path.join(output, 'pipeline.config'))
  source = config_util.get_configs_from_pipeline_file(exported['config'])
  assert written['model'] == source['model']
  # the exported checkpoint holds the model only (no optimizer, no step)
  keys = tf.train.list_variables(tf.train.latest_checkpoint(os.path.join(output, 'checkpoint')))
  assert not [k for k, _ in keys if k.startswith(('optimizer', 'step'))]


def test_reloaded_saved_model_matches_in_process_model(exported, image):
  loaded = tf.saved_model.load(os.path.join(exported['output'], 'saved_model'))
  serve = loaded.signatures['serving_default']
  spec = serve.structured_input_signature[1]['input_tensor']
  assert spec.dtype == tf.uint8 and spec.shape.as_list() == [1, None, None, 3]
  got = {k: v.numpy() for k, v in serve(input_tensor=tf.constant(image[None])).items()}
  assert set(got) == set(exporter_lib.OUTPUT_KEYS)

  configs = config_util.get_configs_from_pipeline_file(exported['config'])
  model = exporter_lib.build_and_restore(configs['model'],
                                         tf.train.latest_checkpoint(exported['model_dir']))
  expected = exporter_lib.DetectionInferenceModule(model).run_inference(tf.constant(image[None]))
  for key in exporter_lib.OUTPUT_KEYS:
    assert got[key].shape == expected[key].shape, key
    assert np.max(np.abs(got[key] - expected[key].numpy())) <= 1e-4, key
  count = int(got['num_detections'][0])
  assert count > 0
  classes = got['detection_classes'][0, :count]
  assert classes.min() >= 1 and classes.max() <= 10  # 1-based label-map ids
  assert got['detection_multiclass_scores'].shape[-1] == 11


def _serving_op_names(exported):
  serve = tf.saved_model.load(os.path.join(exported['output'], 'saved_model')).signatures[
      'serving_default']
  graph = serve.graph.as_graph_def()
  return [n.name for n in graph.node] + [
      n.name for function in graph.library.function for n in function.node_def]


def test_serving_graph_runs_the_refinement_heads(exported):
  names = _serving_op_names(exported)
  assert [n for n in names if n.startswith('MTLClassRefiner')]  # refine: on
  assert [n for n in names if n.startswith('WindowBoxPredictor')]  # its context boxes
  assert [n for n in names if n.startswith('ClosenessBoxPredictor')]  # global closeness


def test_foreground_head_is_not_in_the_serving_graph(exported):
  assert not [n for n in _serving_op_names(exported) if n.startswith('EdgeMaskPredictor')]


def test_every_input_type_gives_the_same_detections(exported, image):
  configs = config_util.get_configs_from_pipeline_file(exported['config'])
  model = exporter_lib.build_and_restore(configs['model'],
                                         tf.train.latest_checkpoint(exported['model_dir']))
  module = exporter_lib.DetectionInferenceModule(model)
  reference = module.signature('image_tensor')(tf.constant(image[None]))
  encoded = _png(image)  # lossless, so every path decodes the same pixels
  feature = {'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))}
  example = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
  inputs = {'float_image_tensor': tf.constant(image[None], tf.float32),
            'encoded_image_string_tensor': tf.constant([encoded]),
            'tf_example': tf.constant([example])}
  for input_type, value in inputs.items():
    outputs = module.signature(input_type)(value)
    for key in ('detection_boxes', 'detection_scores', 'detection_classes', 'num_detections'):
      np.testing.assert_allclose(outputs[key].numpy(), reference[key].numpy(), atol=1e-5,
                                 err_msg=f'{input_type} {key}')
  with pytest.raises(ValueError, match='input_type'):
    module.signature('jpeg_tensor')


def test_infer_command_writes_json_and_png(exported, image, tmp_path):
  images = []
  for name, array in (('a.png', image), ('b.jpg', image[:60, :70])):
    path = str(tmp_path / name)
    Image.fromarray(array).save(path)
    images.append(path)
  out_dir = str(tmp_path / 'out')
  label_map = os.path.join(exported['data_dir'], 'scenes_label_map.pbtxt')
  assert infer.main(['--saved_model_dir', os.path.join(exported['output'], 'saved_model'),
                     '--images', *images, '--label_map_path', label_map,
                     '--output_dir', out_dir, '--min_score', '0.0']) == 0
  with open(os.path.join(out_dir, 'detections.json'), encoding='utf-8') as f:
    result = json.load(f)
  assert [r['image'] for r in result['images']] == images
  first, second = result['images']
  assert (first['height'], first['width']) == (80, 100)
  assert (second['height'], second['width']) == (60, 70)
  assert first['detections'], 'min_score 0 keeps every detection'
  names = {'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker',
           'Bag', 'Ankle boot'}
  scores = [d['score'] for d in first['detections']]
  assert scores == sorted(scores, reverse=True)
  for detection in first['detections']:
    assert detection['class_name'] in names and 1 <= detection['class_id'] <= 10
    np.testing.assert_allclose(detection['box_pixels'],
                               np.array(detection['box_normalized']) * [80, 100, 80, 100],
                               atol=0.01)
  for record in result['images']:
    picture = np.asarray(Image.open(os.path.join(out_dir, record['picture'])))
    assert picture.shape == (record['height'], record['width'], 3)
  # a threshold above every score leaves no detection
  top = max(scores)
  infer.main(['--saved_model_dir', os.path.join(exported['output'], 'saved_model'),
              '--images', images[0], '--output_dir', out_dir, '--min_score', str(top + 1e-3)])
  with open(os.path.join(out_dir, 'detections.json'), encoding='utf-8') as f:
    assert json.load(f)['images'][0]['detections'] == []


def test_export_errors_name_the_problem(exported, tmp_path):
  with pytest.raises(ValueError, match='input_type'):
    exporter_lib.export_inference_graph('jpeg', exported['config'], exported['model_dir'],
                                        str(tmp_path))
  with pytest.raises(ValueError, match='trained_checkpoint_dir: no checkpoint'):
    exporter_lib.export_inference_graph('image_tensor', exported['config'], str(tmp_path),
                                        str(tmp_path / 'out'))
