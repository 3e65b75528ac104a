"""SavedModel export (the OD API exporter_lib_v2 role).

<output_directory>/saved_model   serving_default signature, input 'input_tensor', outputs
                                 detection_boxes [B,K,4] (normalized), detection_scores [B,K],
                                 detection_classes [B,K] (1-based label-map ids),
                                 num_detections [B], detection_multiclass_scores [B,K,C+1],
                                 raw_detection_boxes [B,P,4], raw_detection_scores [B,P,C+1]
<output_directory>/checkpoint    the model weights only (tf.train.Checkpoint(model=...))
<output_directory>/pipeline.config

The graph is the inference model (is_training=False): preprocess -> predict -> postprocess, so
with mtl.refine the scores are the refined ones and heads used only by training losses are not
part of it.
"""
import os

from absl import logging
import tensorflow as tf

from mtl_ssl.builders import model_builder
from mtl_ssl.config import config_util
from mtl_ssl.config import validation
from mtl_ssl.training import checkpoints

LABEL_ID_OFFSET = 1
OUTPUT_KEYS = ('detection_boxes', 'detection_scores', 'detection_classes', 'num_detections',
               'detection_multiclass_scores', 'raw_detection_boxes', 'raw_detection_scores')
INPUT_TYPES = ('image_tensor', 'encoded_image_string_tensor', 'tf_example',
               'float_image_tensor')


def _decode_image(encoded):
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _decode_tf_example(serialized):
  parsed = tf.io.parse_single_example(
      serialized, {'image/encoded': tf.io.FixedLenFeature([], tf.string)})
  return _decode_image(parsed['image/encoded'])


class DetectionInferenceModule(tf.Module):
  """Runs the inference model on a batch of images given as 0..255 pixels."""

  def __init__(self, model):
    super().__init__()
    self.model = model

  def run_inference(self, images):
    images = tf.cast(images, tf.float32)
    preprocessed, true_shapes = self.model.preprocess(images)
    predictions = self.model.predict(preprocessed, true_shapes, training=False)
    detections = self.model.postprocess(predictions, true_shapes)
    outputs = {key: tf.cast(detections[key], tf.float32) for key in OUTPUT_KEYS}
    outputs['detection_classes'] += LABEL_ID_OFFSET
    return outputs

  def signature(self, input_type):
    """A concrete serving function for one OD API input type."""
    if input_type == 'image_tensor':
      spec = tf.TensorSpec([1, None, None, 3], tf.uint8, name='input_tensor')
      fn = self.run_inference
    elif input_type == 'float_image_tensor':
      spec = tf.TensorSpec([1, None, None, 3], tf.float32, name='input_tensor')
      fn = self.run_inference
    elif input_type in ('encoded_image_string_tensor', 'tf_example'):
      spec = tf.TensorSpec([None], tf.string, name='input_tensor')
      decode = _decode_image if input_type == 'encoded_image_string_tensor' else \
          _decode_tf_example

      def fn(strings):
        images = tf.map_fn(decode, strings, fn_output_signature=tf.TensorSpec(
            [None, None, 3], tf.uint8), parallel_iterations=32)
        return self.run_inference(images)
    else:
      raise ValueError(f'--input_type {input_type!r} is not one of {INPUT_TYPES}')
    serve = lambda input_tensor: fn(input_tensor)
    try:  # without AutoGraph first: much faster to trace (see training_utils.GraphFunction)
      return tf.function(serve, autograph=False).get_concrete_function(spec)
    except tf.errors.OperatorNotAllowedInGraphError:
      return tf.function(serve).get_concrete_function(spec)


class ServingModule(tf.Module):
  """What saved_model/ holds: the serving signature, the variables it reads, and input_type.

  Not the Keras model itself: its layers are run through predict / postprocess rather than
  Keras __call__, and the training-only ones (auxiliary heads) never run at inference, so Keras
  would call them 'not built' and skip them with one warning each ("Skipping full serialization
  of TF-Keras layer ..."). The signature is all a SavedModel user needs; the Keras model is in
  checkpoint/ for code that rebuilds it from pipeline.config.
  """

  def __init__(self, model, input_type):
    super().__init__()
    self.model_variables = list(model.variables)
    self.input_type = tf.Variable(input_type, trainable=False, dtype=tf.string)


def build_and_restore(model_config, checkpoint_path, use_bfloat16=False):
  """Inference model with every variable created, then restored from a training checkpoint
  (optimizer slots and training-only parts of the checkpoint are ignored; every variable of
  the inference model must be found). use_bfloat16: train_config.use_bfloat16."""
  model = model_builder.build(model_config, is_training=False, use_bfloat16=use_bfloat16)
  DetectionInferenceModule(model).run_inference(tf.zeros([1, 64, 64, 3], tf.uint8))
  status = tf.train.Checkpoint(model=model).read(checkpoint_path)
  status.assert_existing_objects_matched()
  status.expect_partial()
  return model


def export_inference_graph(input_type, pipeline_config_path, trained_checkpoint_dir,
                           output_directory, config_override=None):
  """Writes saved_model/, checkpoint/ and pipeline.config under output_directory."""
  if input_type not in INPUT_TYPES:
    raise ValueError(f'--input_type {input_type!r} is not one of {INPUT_TYPES}')
  configs = validation.load_and_validate(pipeline_config_path, config_override, mode='export')
  checkpoint_path = checkpoints.resolve_checkpoint(trained_checkpoint_dir,
                                                   '--trained_checkpoint_dir')
  model = build_and_restore(configs['model'], checkpoint_path,
                            use_bfloat16=configs['train_config'].use_bfloat16)
  concrete = DetectionInferenceModule(model).signature(input_type)
  # input_type is read back by mtl_ssl.export.inference to feed the signature the right way
  module = ServingModule(model, input_type)

  checkpoint_dir = os.path.join(output_directory, 'checkpoint')
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), checkpoint_dir,
                                       max_to_keep=1)
  manager.save(checkpoint_number=0)
  saved_model_dir = os.path.join(output_directory, 'saved_model')
  tf.saved_model.save(module, saved_model_dir, signatures={'serving_default': concrete})
  config_util.save_pipeline_config(configs, output_directory)
  logging.info('Exported %s (%s input) from %s', saved_model_dir, input_type, checkpoint_path)
  return saved_model_dir
