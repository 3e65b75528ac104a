"""fine_tune_checkpoint from local files (no network at train time): a Keras .h5 file and TF
checkpoints of the Keras application in every layout a user may have written."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tiny_pipeline
from mtl_ssl.builders import model_builder
from mtl_ssl.config import config_util
from mtl_ssl.training import checkpoints


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """The tiny MTL pipeline's detector (MobileNet v1 0.25), built, and its train_config."""
  root = tmp_path_factory.mktemp('model')
  config = tiny_pipeline.write_pipeline(root, str(root / 'unused_data'))
  configs = config_util.get_configs_from_pipeline_file(config)
  model = model_builder.build(configs['model'], is_training=True)
  model.build_for_shapes(64, 64)
  return model, configs['train_config']


def _application(seed):
  """MobileNet v1 (alpha 0.25) with random weights, incl. the BN statistics."""
  app = tf_keras.applications.MobileNet(weights=None, include_top=False, alpha=0.25,
                                        input_shape=(None, None, 3))
  rng = np.random.default_rng(seed)
  for weight in app.weights:
    low = 0.5 if 'moving_variance' in weight.name else -0.1
    weight.assign(rng.uniform(low, low + 1.0 if low > 0 else 0.2, weight.shape)
                  .astype(np.float32))
  return app


def _save_h5(app, directory):
  path = str(directory / 'mobilenet.h5')
  app.save_weights(path)
  return path


def _save_keras_tf_format(app, directory):
  prefix = str(directory / 'keras_tf' / 'weights')
  app.save_weights(prefix)
  return prefix


def _save_checkpoint_directory(app, directory):
  path = str(directory / 'manager')
  tf.train.CheckpointManager(tf.train.Checkpoint(model=app), path, 1).save()
  return path  # a directory: its latest checkpoint


def _save_feature_extractor_root(app, directory):
  return tf.train.Checkpoint(feature_extractor=app).write(str(directory / 'docs_layout' / 'ckpt'))


@pytest.mark.parametrize('save, seed', [(_save_h5, 1), (_save_keras_tf_format, 2),
                                        (_save_checkpoint_directory, 3),
                                        (_save_feature_extractor_root, 4)])
def test_classification_start_from_a_local_file(built, tmp_path, save, seed):
  model, train_config = built  # one model for all: each file's own weights must show up
  app = _application(seed)
  source = save(app, tmp_path)
  train_config.fine_tune_checkpoint = source
  train_config.fine_tune_checkpoint_type = 'classification'
  assert checkpoints.restore_fine_tune_checkpoint(model, train_config)

  images = tf.random.uniform([1, 64, 64, 3], -1.0, 1.0, seed=1)
  extractor = model.feature_extractor
  features = extractor.get_proposal_feature_extractor_model()(images)
  expected_features = tf_keras.Model(app.input, app.get_layer('conv_pw_11_relu').output)(images)
  np.testing.assert_allclose(features.numpy(), expected_features.numpy(), rtol=1e-4, atol=1e-4)
  copies = extractor.box_classifier_models
  assert len(copies) > 1  # the MTL heads' copies of the last stage start from the same weights
  for copy in copies:
    np.testing.assert_allclose(copy(features).numpy(), app(images).numpy(), rtol=1e-4,
                               atol=1e-4)


def test_a_checkpoint_of_another_network_is_refused(built, tmp_path):
  model, train_config = built
  other = tf_keras.applications.MobileNet(weights=None, include_top=False, alpha=0.5,
                                          input_shape=(None, None, 3))
  prefix = str(tmp_path / 'alpha_half' / 'weights')
  other.save_weights(prefix)
  train_config.fine_tune_checkpoint = prefix
  train_config.fine_tune_checkpoint_type = 'classification'
  with pytest.raises(ValueError, match='alpha_half'):
    checkpoints.restore_fine_tune_checkpoint(model, train_config)
