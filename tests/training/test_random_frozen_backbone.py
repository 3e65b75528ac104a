"""Training a backbone from random weights with frozen batch norm: the trap and its warning."""
import numpy as np
import pytest
import tensorflow as tf

import tiny_pipeline
from mtl_ssl.builders import model_builder
from mtl_ssl.config import config_util
from mtl_ssl.training import checkpoints
from mtl_ssl.training import train_loop


def _configs(override=''):
  text = tiny_pipeline.PIPELINE % {'data': '/data', 'batch_size': 2, 'num_steps': 1,
                                   'fc': tiny_pipeline.FC_HYPERPARAMS}
  pipeline = config_util.parse_pipeline_text(text)
  if override:
    pipeline.MergeFrom(config_util.parse_pipeline_text(override))
  return pipeline.model, pipeline.train_config


def test_warns_for_random_weights_with_frozen_batch_norm():
  warning = train_loop.random_frozen_backbone_warning(*_configs())
  assert 'faster_rcnn_mobilenet_v1_keras' in warning
  assert 'batch_norm_trainable' in warning and 'fine_tune_checkpoint' in warning


@pytest.mark.parametrize('override', [
    'model { faster_rcnn { feature_extractor { batch_norm_trainable: true } } }',
    'train_config { fine_tune_checkpoint: "/ckpt/ckpt-1" }',
])
def test_no_warning_when_batch_norm_trains_or_weights_are_loaded(override):
  assert train_loop.random_frozen_backbone_warning(*_configs(override)) is None


def _feature_scale(model_config, train_config=None):
  model = model_builder.build(model_config, is_training=True)
  if train_config is not None:
    model(tf.zeros([1, 64, 64, 3]), training=False)  # builds the variables to restore into
    checkpoints.restore_fine_tune_checkpoint(model, train_config)
  images = np.random.RandomState(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
  model.provide_groundtruth(  # training-mode predict needs it (targets, MTL labels)
      groundtruth_boxes_list=[tf.constant([[0.1, 0.1, 0.6, 0.5], [0.4, 0.5, 0.9, 0.95]])] * 2,
      groundtruth_classes_list=[tf.one_hot([1, 3], 10)] * 2)
  preprocessed, shapes = model.preprocess(tf.constant(images))
  features = model.predict(preprocessed, shapes, training=True)['rpn_features_to_crop']
  return float(tf.reduce_max(tf.abs(features)))


def test_the_warning_describes_what_happens():
  """The tiny MobileNet from random weights: frozen BN leaves its features ~0, trained BN
  (batch statistics) keeps them at unit scale."""
  frozen = _feature_scale(_configs()[0])
  trained = _feature_scale(_configs(
      'model { faster_rcnn { feature_extractor { batch_norm_trainable: true } } }')[0])
  assert frozen < 1e-6
  assert trained > 1e-1


def test_the_tiny_pipelines_calibrated_backbone_is_live(tmp_path):
  """The training tests' pipeline fine-tunes from a random MobileNet whose frozen batch norm
  holds the scenes images' statistics (tiny_pipeline.write_backbone_weights): features at unit
  scale, so those tests train a backbone that takes part."""
  config = tiny_pipeline.write_pipeline(tmp_path, str(tmp_path / 'no_data'))
  pipeline = config_util.get_configs_from_pipeline_file(config)
  assert pipeline['train_config'].fine_tune_checkpoint.endswith(tiny_pipeline.BACKBONE_WEIGHTS)
  assert _feature_scale(pipeline['model'], pipeline['train_config']) > 1e-1
