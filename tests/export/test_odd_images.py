"""Odd images through the exported SavedModels (encoded-image and image-tensor inputs), the
mtl_ssl_infer command and the in-process model: 1x1, 4000x3000, grayscale, RGBA, 16-bit PNGs and
a blank image with no detections. Shapes, no crash, same results as the in-process model on the
pixels the training decoder makes of the same file (<= 1e-4)."""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'training'))
import tiny_pipeline  # pylint: disable=wrong-import-position

from mtl_ssl.cli import infer  # pylint: disable=wrong-import-position
from mtl_ssl.config import config_util  # pylint: disable=wrong-import-position
from mtl_ssl.data import tf_example_decoder as dec  # pylint: disable=wrong-import-position
from mtl_ssl.export import exporter_lib  # pylint: disable=wrong-import-position
from mtl_ssl.export import inference  # pylint: disable=wrong-import-position
from mtl_ssl.training import train_loop  # pylint: disable=wrong-import-position

MAX_DETECTIONS = 20  # max_total_detections of the tiny pipeline
NUM_PROPOSALS = 16


def _png16_rgb(array):
  """A 16-bit RGB PNG (PIL cannot write one): filter byte 0 per row, big-endian samples."""
  height, width, _ = array.shape
  rows = b''.join(b'\x00' + array[y].astype('>u2').tobytes() for y in range(height))

  def chunk(tag, data):
    return (struct.pack('>I', len(data)) + tag + data +
            struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff))
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 16, 2, 0,
                                                             0, 0)) +
          chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))


def _encode(array, fmt='PNG'):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt)
  return buffer.getvalue()


def _odd_images(scene):
  """{file name: (bytes, (height, width))} made from a real scenes picture."""
  gray = np.asarray(Image.fromarray(scene).convert('L'))
  big = np.asarray(Image.fromarray(scene).resize((4000, 3000), Image.BILINEAR))
  rgba = np.concatenate([scene, np.full(scene.shape[:2] + (1,), 90, np.uint8)], axis=-1)
  wide16 = scene.astype(np.uint16) * 257 + np.arange(scene.shape[1], dtype=np.uint16)[:, None]
  return {
      'one_pixel.png': (_encode(np.array([[[200, 30, 90]]], np.uint8)), (1, 1)),
      'big_4000x3000.jpg': (_encode(big, 'JPEG'), (3000, 4000)),
      'gray.png': (_encode(gray), scene.shape[:2]),
      'rgba.png': (_encode(rgba), scene.shape[:2]),
      'gray16.png': (_encode(gray.astype(np.uint16) * 257), scene.shape[:2]),
      'rgb16.png': (_png16_rgb(wide16), scene.shape[:2]),
      'blank.png': (_encode(np.zeros([48, 80, 3], np.uint8)), (48, 80)),
  }


def _override(threshold):
  return ('model { faster_rcnn { second_stage_post_processing { batch_non_max_suppression { '
          f'score_threshold: {threshold!r} }} }} }} }}')


def _reference_pixels(encoded):
  """What training makes of the bytes (the input pipeline's decoder)."""
  return dec.TfExampleDecoder.decode_image({dec.IMAGE: tf.constant(encoded)})[dec.IMAGE].numpy()


# The encoded-image export keeps every detection (score threshold 0); the image-tensor export
# keeps none (threshold 1.0: a softmax score after 2 training steps stays below it), so every
# odd image, the blank one included, also goes through the no-detection path.
EXPORTS = {'encoded_image_string_tensor': 0.0, 'image_tensor': 1.0}


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """Odd image files; one model (2 training steps) exported with both image inputs."""
  root = tmp_path_factory.mktemp('odd')
  data_dir = tiny_pipeline.write_scenes(root / 'scenes', num_train=2, num_test=2)
  config = tiny_pipeline.write_pipeline(root, data_dir)
  record = next(iter(tf.data.TFRecordDataset(os.path.join(data_dir, 'scenes_test.record'))))
  example = tf.train.Example.FromString(record.numpy())
  scene = _reference_pixels(example.features.feature['image/encoded'].bytes_list.value[0])
  files = {}
  for name, (encoded, shape) in _odd_images(scene).items():
    path = str(root / 'images' / name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(encoded)
    files[name] = (path, encoded, shape)
  model_dir = str(root / 'model')
  train_loop.train_loop(config, model_dir, train_steps=2, record_summaries=False, seed=0)
  exports, references = {}, {}
  for input_type, threshold in EXPORTS.items():
    output = str(root / input_type)
    exporter_lib.export_inference_graph(input_type, config, model_dir, output,
                                        _override(threshold))
    exports[input_type] = os.path.join(output, 'saved_model')
    references[input_type] = exporter_lib.DetectionInferenceModule(exporter_lib.build_and_restore(
        config_util.get_configs_from_pipeline_file(config, _override(threshold))['model'],
        tf.train.latest_checkpoint(model_dir)))
  return {'files': files, 'exports': exports, 'references': references}


@pytest.fixture(scope='module')
def expected(setup):
  """{input type: {image name: in-process outputs on the training decoder's pixels}}."""
  return {input_type: {name: {k: v.numpy()[0] for k, v in module.run_inference(
      _reference_pixels(encoded)[None]).items()} for name, (_, encoded, _) in
                       setup['files'].items()}
          for input_type, module in setup['references'].items()}


@pytest.mark.parametrize('input_type', sorted(EXPORTS))
def test_saved_model_matches_the_in_process_model_on_odd_images(setup, expected, input_type):
  detector = inference.SavedModelDetector(setup['exports'][input_type])
  assert detector.input_type == input_type
  shapes = {'detection_boxes': (MAX_DETECTIONS, 4), 'detection_scores': (MAX_DETECTIONS,),
            'detection_classes': (MAX_DETECTIONS,), 'num_detections': (),
            'detection_multiclass_scores': (MAX_DETECTIONS, 11),
            'raw_detection_boxes': (NUM_PROPOSALS, 4), 'raw_detection_scores': (NUM_PROPOSALS, 11)}
  for name, (path, encoded, (height, width)) in setup['files'].items():
    image, outputs = detector.detect_image_file(path)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8, name
    np.testing.assert_array_equal(image, _reference_pixels(encoded), err_msg=name)
    for key, shape in shapes.items():
      assert outputs[key].shape == shape, (name, key)
      assert np.isfinite(outputs[key]).all(), (name, key)
      np.testing.assert_allclose(outputs[key], expected[input_type][name][key], rtol=0,
                                 atol=1e-4, err_msg=f'{name} {key}')
    count = int(outputs['num_detections'])
    assert count == (MAX_DETECTIONS if EXPORTS[input_type] == 0.0 else 0), name
    for key in ('detection_boxes', 'detection_scores'):
      assert not outputs[key][count:].any(), (name, key)  # padding rows are zeros
    assert (outputs['detection_classes'] >= 1).all(), name  # 1-based ids (padding: 0 + 1, OD API)


def test_16bit_png_is_scaled_not_clipped(setup):
  """PIL's convert('RGB') clips 16-bit values above 255; TensorFlow scales them (v / 257),
  which is what training sees. mtl_ssl_infer must decode the same way."""
  _, encoded, _ = setup['files']['gray16.png']
  pixels = inference.decode_image(encoded, 'gray16.png')
  source = np.asarray(Image.open(io.BytesIO(encoded)), np.uint16)
  np.testing.assert_array_equal(pixels[..., 0], (source // 257).astype(np.uint8))
  assert (pixels[..., 0] == pixels[..., 2]).all()
  with pytest.raises(ValueError, match=r'cannot read image broken.png: .*PNG'):
    inference.decode_image(encoded[:40], 'broken.png')


@pytest.mark.parametrize('input_type', sorted(EXPORTS))
def test_infer_command_on_odd_images(setup, expected, tmp_path, input_type):
  names = sorted(setup['files'])
  paths = [setup['files'][name][0] for name in names]
  out_dir = str(tmp_path / 'out')
  assert infer.main(['--saved_model_dir', setup['exports'][input_type], '--images', *paths,
                     '--output_dir', out_dir, '--min_score', '0']) == 0
  with open(os.path.join(out_dir, 'detections.json'), encoding='utf-8') as f:
    records = json.load(f)['images']
  for name, record in zip(names, records):
    height, width = setup['files'][name][2]
    assert (record['height'], record['width']) == (height, width)
    reference = expected[input_type][name]
    count = int(reference['num_detections'])
    assert len(record['detections']) == count, name
    scores = sorted(reference['detection_scores'][:count], reverse=True)
    np.testing.assert_allclose([d['score'] for d in record['detections']], scores, atol=1e-4)
    for detection in record['detections']:
      assert 0 <= min(detection['box_normalized']) and max(detection['box_normalized']) <= 1
    picture = np.asarray(Image.open(os.path.join(out_dir, record['picture'])))
    assert picture.shape == (height, width, 3)
  blank = records[names.index('blank.png')]
  picture = np.asarray(Image.open(os.path.join(out_dir, blank['picture'])))
  if EXPORTS[input_type] > 0:
    assert blank['detections'] == []
    np.testing.assert_array_equal(picture, 0)  # nothing drawn on an image without detections
  else:
    assert len(blank['detections']) == MAX_DETECTIONS and picture.any()  # boxes drawn
