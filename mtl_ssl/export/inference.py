"""Running a detector on images: detections as JSON-ready dicts and pictures.

SavedModelDetector works with every exported input type (the export records it in the
SavedModel's `input_type`); CheckpointDetector builds the same inference graph from a pipeline
config and a training checkpoint. Both take a decoded uint8 RGB image (`detect`), so image files
and TFRecords are read once, here, for every tool.
"""
import io
import os
import re

import numpy as np
from PIL import Image
import tensorflow as tf

from mtl_ssl.training import visualization as vis

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')
# Formats tf.io.decode_image reads (JPEG, PNG, GIF, BMP), by their first bytes.
_TF_SIGNATURES = (b'\xff\xd8', b'\x89PNG', b'GIF8', b'BM')


def list_images(image_dir):
  """Image files of a directory (not recursive), sorted."""
  if not os.path.isdir(image_dir):
    raise ValueError(f'--image_dir {image_dir} is not a directory')
  names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith(IMAGE_SUFFIXES))
  if not names:
    raise ValueError(f'--image_dir {image_dir} has no {"/".join(IMAGE_SUFFIXES)} images')
  return [os.path.join(image_dir, n) for n in names]


def _tf_example(encoded):
  feature = {'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))}
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def decode_image(encoded, where):
  """uint8 RGB [H, W, 3] decoded exactly as training (tf_example_decoder) and the exported
  encoded-image inputs decode it: tf.io.decode_image with 3 channels (gray replicated, alpha
  dropped, 16-bit PNG scaled to 8 bits), first frame of a GIF. Other formats (TIFF, WebP, ...) go
  through PIL. ValueError naming `where` when the bytes cannot be decoded."""
  try:
    if encoded.startswith(_TF_SIGNATURES):
      return tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()
    return np.asarray(Image.open(io.BytesIO(encoded)).convert('RGB'))
  except (tf.errors.InvalidArgumentError, OSError, ValueError) as error:
    message = re.sub(r'^\{\{.*?\}\}\s*', '', getattr(error, 'message', str(error)))
    message = message.splitlines()[0] if message else type(error).__name__
    raise ValueError(f'cannot read image {where}: {message}') from error


def read_image_file(path):
  """(uint8 RGB image, encoded bytes) of an image file."""
  with open(path, 'rb') as f:
    encoded = f.read()
  return decode_image(encoded, path), encoded


def _png_bytes(image):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


class SavedModelDetector:
  """serving_default of an exported detector, fed according to its input type."""

  def __init__(self, saved_model_dir):
    if not tf.saved_model.contains_saved_model(saved_model_dir):
      raise ValueError(f'--saved_model_dir {saved_model_dir} contains no SavedModel '
                       '(expected <export>/saved_model)')
    self._loaded = tf.saved_model.load(saved_model_dir)
    self._serve = self._loaded.signatures['serving_default']
    if hasattr(self._loaded, 'input_type'):  # recorded by mtl_ssl.export.exporter_lib
      self.input_type = self._loaded.input_type.numpy().decode()
    else:  # other exports (e.g. the OD API's): from the input dtype
      spec = self._serve.structured_input_signature[1]['input_tensor']
      self.input_type = {tf.uint8: 'image_tensor', tf.float32: 'float_image_tensor'}.get(
          spec.dtype, 'encoded_image_string_tensor')

  def _input(self, image, encoded):
    if self.input_type == 'image_tensor':
      return tf.constant(image[None], tf.uint8)
    if self.input_type == 'float_image_tensor':
      return tf.constant(image[None], tf.float32)
    if encoded is None or not encoded.startswith(_TF_SIGNATURES):
      encoded = _png_bytes(image)  # formats tf.io.decode_image cannot read
    if self.input_type == 'encoded_image_string_tensor':
      return tf.constant([encoded])
    return tf.constant([_tf_example(encoded)])

  def detect(self, image, encoded=None):
    """{output name: numpy array of the one image} for a uint8 RGB image [H, W, 3] (`encoded`:
    its file bytes, used by exports that take encoded images)."""
    outputs = self._serve(input_tensor=self._input(image, encoded))
    return {name: value.numpy()[0] for name, value in outputs.items()}

  def detect_image_file(self, path):
    """Returns (uint8 RGB image [H,W,3], {output name: numpy array of the one image})."""
    image, encoded = read_image_file(path)
    return image, self.detect(image, encoded)


class CheckpointDetector:
  """The inference model built from a pipeline config and restored from a training checkpoint,
  in this process: the same graph and outputs as an image_tensor export of that checkpoint."""

  def __init__(self, pipeline_config_path, checkpoint_dir, config_override=None):
    # imported here: building models pulls in every backbone, not needed for SavedModels
    from mtl_ssl.config import validation  # pylint: disable=import-outside-toplevel
    from mtl_ssl.export import exporter_lib  # pylint: disable=import-outside-toplevel
    from mtl_ssl.training import checkpoints  # pylint: disable=import-outside-toplevel
    configs = validation.load_and_validate(pipeline_config_path, config_override, mode='export')
    checkpoint_path = checkpoints.resolve_checkpoint(checkpoint_dir, '--checkpoint_dir')
    model = exporter_lib.build_and_restore(configs['model'], checkpoint_path)
    self._serve = exporter_lib.DetectionInferenceModule(model).signature('image_tensor')
    self.input_type = 'image_tensor'
    self.checkpoint_path = checkpoint_path

  def detect(self, image, encoded=None):  # pylint: disable=unused-argument
    outputs = self._serve(tf.constant(image[None], tf.uint8))
    return {name: value.numpy()[0] for name, value in outputs.items()}


def detections_record(path, image, outputs, category_index, min_score):
  """JSON-ready detections of one image: boxes [ymin, xmin, ymax, xmax] normalized and in
  pixels, 1-based class id and name, score; only scores >= min_score, best first."""
  height, width = image.shape[:2]
  count = int(outputs['num_detections'])
  scores = outputs['detection_scores'][:count]
  detections = []
  for i in np.argsort(-scores, kind='stable'):
    if scores[i] < min_score:
      break
    box = np.clip(outputs['detection_boxes'][i], 0.0, 1.0).astype(np.float64)
    class_id = int(outputs['detection_classes'][i])
    detections.append({
        'class_id': class_id,
        'class_name': vis.class_name(category_index, class_id),
        'score': round(float(scores[i]), 6),
        'box_normalized': [round(float(v), 6) for v in box],
        'box_pixels': [round(float(v), 2) for v in box * [height, width, height, width]],
    })
  return {'image': path, 'height': int(height), 'width': int(width),
          'detections': detections}


def draw_record(image, record, category_index):
  if not record['detections']:
    return image
  boxes = [d['box_normalized'] for d in record['detections']]
  return vis.draw_boxes(image, boxes, [d['class_id'] for d in record['detections']],
                        [d['score'] for d in record['detections']], category_index,
                        max_boxes=len(boxes))
