"""ResNet FPN extractors: pyramid shapes and wiring (top-down sums recomputed by hand), the OD
API's layer rules with and without override_base_feature_extractor_hyperparams, the FC box
classifier copies, batch-norm freezing and classification weights (local files only)."""
import functools
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from google.protobuf import text_format

from mtl_ssl import backbones
from mtl_ssl.backbones import FrozenBatchNormalization
from mtl_ssl.backbones import fpn
from mtl_ssl.builders import hyperparams_builder
from mtl_ssl.protos import faster_rcnn_pb2
from mtl_ssl.protos import hyperparams_pb2

_OD_API_HYPERPARAMS = """
  activation: RELU_6
  regularizer { l2_regularizer { weight: 0.0004 } }
  initializer { truncated_normal_initializer { stddev: 0.03 mean: 0.0 } }
  batch_norm { scale: true decay: 0.997 epsilon: 0.001 }
"""


def _hyperparams(text=_OD_API_HYPERPARAMS):
  return hyperparams_builder.KerasLayerHyperparams(
      text_format.Parse(text, hyperparams_pb2.Hyperparams()), 'conv_hyperparams')


def _extractor(is_training=True, **kwargs):
  kwargs.setdefault('conv_hyperparams', _hyperparams())
  return fpn.FpnFeatureExtractor('resnet50', is_training, **kwargs)


@functools.lru_cache(maxsize=None)
def _shared():
  """The OD API sample's settings (override on, levels 2..6), built once for read-only tests."""
  extractor = _extractor(override_base_feature_extractor_hyperparams=True,
                         batch_norm_trainable=True)
  extractor.get_proposal_feature_extractor_model()
  return extractor


def test_pyramid_levels_shapes_and_depth():
  extractor = _shared()
  model = extractor.get_proposal_feature_extractor_model()
  maps = model(tf.zeros([2, 128, 96, 3]))
  assert extractor.feature_levels == (2, 3, 4, 5, 6)
  assert [tuple(m.shape) for m in maps] == [(2, 32, 24, 256), (2, 16, 12, 256), (2, 8, 6, 256),
                                            (2, 4, 3, 256), (2, 2, 2, 256)]
  # sizes that are not multiples of 32 work too (ceil at every stride)
  assert [tuple(m.shape[1:3]) for m in model(tf.zeros([1, 100, 70, 3]))] == [
      (25, 18), (13, 9), (7, 5), (4, 3), (2, 2)]


def test_top_down_wiring_recomputed_from_the_layers():
  extractor = _extractor(fpn_min_level=3, fpn_max_level=7, additional_layer_depth=8,
                         override_base_feature_extractor_hyperparams=True)
  model = extractor.get_proposal_feature_extractor_model()
  images = tf.random.stateless_uniform([1, 64, 64, 3], [1, 2], -50.0, 50.0)
  p3, p4, p5, p6, p7 = model(images)
  c_model = tf_keras.Model(model.input, [model.get_layer(n).output for n in
                                         ('conv3_block4_out', 'conv4_block6_out',
                                          'conv5_block3_out')])
  c3, c4, c5 = c_model(images)
  layer = model.get_layer
  up = lambda x: tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
  def smooth(x, name):
    return tf.nn.relu6(layer(f'{name}_batchnorm')(layer(f'{name}_conv')(x)))
  want_p5 = layer('projection_3')(c5)
  want_p4 = smooth(layer('projection_2')(c4) + up(want_p5), 'smoothing_2')
  want_p3 = smooth(layer('projection_1')(c3) + up(want_p4), 'smoothing_1')
  want_p6 = smooth(want_p5, 'bottom_up_block5')
  want_p7 = smooth(want_p6, 'bottom_up_block6')
  for got, want in ((p3, want_p3), (p4, want_p4), (p5, want_p5), (p6, want_p6), (p7, want_p7)):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
  assert [tuple(m.shape[1:3]) for m in (p3, p4, p5, p6, p7)] == [(8, 8), (4, 4), (2, 2),
                                                                 (1, 1), (1, 1)]


def test_override_applies_conv_hyperparams_to_the_backbone():
  model = _shared().get_proposal_feature_extractor_model()
  relu = model.get_layer('conv2_block1_1_relu')
  x = tf.constant([-1.0, 3.0, 9.0])
  assert relu(x).numpy().tolist() == [0.0, 3.0, 6.0]  # RELU_6
  bn = model.get_layer('conv3_block1_2_bn')
  assert type(bn) is tf_keras.layers.BatchNormalization  # batch_norm_trainable + training
  assert bn.momentum == pytest.approx(0.997) and bn.epsilon == pytest.approx(0.001)
  conv = model.get_layer('conv1_conv')
  assert isinstance(conv.kernel_initializer, tf_keras.initializers.TruncatedNormal)
  assert conv.kernel_initializer.stddev == pytest.approx(0.03)
  # OD API: l2 weight w -> Keras l2(w / 2): loss = 0.0002 * sum(kernel^2)
  assert float(conv.kernel_regularizer(conv.kernel)) == pytest.approx(
      0.0002 * float(tf.reduce_sum(tf.square(conv.kernel))), rel=1e-5)
  # the stem max-pool pads 'same' with no explicit padding (OD API geometry)
  assert model.get_layer('pool1_pool').padding == 'same'
  assert model.get_layer('pool1_pad').padding == ((0, 0), (0, 0))


def test_without_override_the_backbone_keeps_the_od_api_resnet_defaults():
  extractor = _extractor(is_training=False)
  model = extractor.get_proposal_feature_extractor_model()
  relu = model.get_layer('conv2_block1_1_relu')
  assert relu(tf.constant([9.0])).numpy().tolist() == [9.0]  # plain ReLU
  bn = model.get_layer('conv3_block1_2_bn')
  assert isinstance(bn, FrozenBatchNormalization) and not bn.trainable_weights
  assert bn.momentum == pytest.approx(0.997) and bn.epsilon == pytest.approx(1e-5)
  conv = model.get_layer('conv4_block2_2_conv')
  assert float(conv.kernel_regularizer(conv.kernel)) == pytest.approx(
      1e-4 * float(tf.reduce_sum(tf.square(conv.kernel))), rel=1e-5)
  # the FPN layers still follow conv_hyperparams (frozen BN: not training)
  assert isinstance(model.get_layer('smoothing_1_batchnorm'), FrozenBatchNormalization)
  assert model.get_layer('smoothing_1_conv').kernel_initializer.stddev == pytest.approx(0.03)


def test_box_classifier_is_flatten_two_fc_with_batch_norm_and_copies_are_independent():
  extractor = _extractor()
  main = extractor.get_box_classifier_feature_extractor_model()
  copy = extractor.get_box_classifier_feature_extractor_model()
  crops = tf.random.stateless_normal([5, 7, 7, 256], [3, 4])
  out = main(crops, training=False)
  assert tuple(out.shape) == (5, 1, 1, 1024)
  assert [layer.name for layer in main.layers] == ['flatten', 'fc1', 'fc1_batchnorm', 'fc2',
                                                   'to_map']
  fc1, bn, fc2 = main.get_layer('fc1'), main.get_layer('fc1_batchnorm'), main.get_layer('fc2')
  want = tf.nn.relu(fc2(bn(tf.nn.relu(fc1(tf.reshape(crops, [5, -1]))), training=False)))
  np.testing.assert_allclose(out.numpy()[:, 0, 0], want.numpy(), rtol=1e-5, atol=1e-5)
  copy(crops)
  assert not np.allclose(copy(crops).numpy(), out.numpy())
  extractor.copy_box_classifier_weights(main, copy)
  np.testing.assert_allclose(copy(crops, training=False).numpy(), out.numpy(), rtol=1e-6)
  assert extractor.box_classifier_models == [main, copy]
  assert copy.name == 'SecondStageFeatureExtractor_1'
  with pytest.raises(ValueError, match='not a box classifier made by this feature extractor'):
    extractor.copy_box_classifier_weights(main, tf_keras.Sequential([tf_keras.layers.Dense(2)]))
  # without batch norm in conv_hyperparams the FC head has none either
  plain = _extractor(conv_hyperparams=_hyperparams('activation: RELU'))
  assert 'fc1_batchnorm' not in [layer.name for layer in
                                 plain.get_box_classifier_feature_extractor_model().layers]


def test_frozen_blocks_and_trainable_batch_norm():
  extractor = _extractor(num_frozen_blocks=1, batch_norm_trainable=True)
  model = extractor.get_proposal_feature_extractor_model()
  assert not model.get_layer('conv1_conv').trainable
  assert not model.get_layer('conv2_block3_2_conv').trainable
  assert model.get_layer('conv3_block1_1_conv').trainable
  assert isinstance(model.get_layer('conv2_block1_1_bn'), FrozenBatchNormalization)
  assert type(model.get_layer('conv3_block1_1_bn')) is tf_keras.layers.BatchNormalization
  assert model.get_layer('smoothing_1_conv').trainable
  with pytest.raises(ValueError, match='num_frozen_blocks or freeze_layer'):
    _extractor(num_frozen_blocks=1, freeze_layer='block1')


@pytest.mark.parametrize('kwargs, words', [
    ({'fpn_min_level': 1}, 'min_level must be in 2..5'),
    ({'fpn_min_level': 4, 'fpn_max_level': 3}, 'must be >= min_level'),
    ({'first_stage_features_stride': 32}, 'must be 8 or 16'),
    ({'conv_hyperparams': None}, 'conv_hyperparams is required'),
    ({'pad_to_multiple': 0}, 'pad_to_multiple must be >= 1'),
])
def test_bad_settings_name_the_field(kwargs, words):
  with pytest.raises(ValueError, match=words):
    _extractor(**kwargs)


def test_build_reads_the_od_api_fields():
  cfg = text_format.Parse(f"""
    type: 'faster_rcnn_resnet50_fpn_keras' batch_norm_trainable: true
    fpn {{ min_level: 3 max_level: 7 additional_layer_depth: 64 }} pad_to_multiple: 64
    conv_hyperparams {{ {_OD_API_HYPERPARAMS} }}
    override_base_feature_extractor_hyperparams: true""",
                          faster_rcnn_pb2.FasterRcnnFeatureExtractor())
  extractor = backbones.build(cfg, is_training=True)
  assert isinstance(extractor, fpn.FpnFeatureExtractor)
  assert extractor.feature_levels == (3, 4, 5, 6, 7)
  assert extractor.proposal_feature_depth == 64 and extractor.pad_to_multiple == 64
  assert extractor._override and extractor._train_batch_norm  # pylint: disable=protected-access
  # without an fpn block: the OD API extractor's defaults (levels 2..6, depth 256)
  cfg.ClearField('fpn')
  extractor = backbones.build(cfg, is_training=False)
  assert extractor.feature_levels == (2, 3, 4, 5, 6) and extractor.proposal_feature_depth == 256
  assert not extractor._train_batch_norm  # pylint: disable=protected-access
  plain = backbones.build(types.SimpleNamespace(type='faster_rcnn_resnet101_fpn_keras',
                                                conv_hyperparams=None), is_training=True)
  assert plain.backbone_name == 'resnet101'


def test_classification_weights_load_into_the_backbone_and_checkpoint_restores(tmp_path):
  app = tf_keras.applications.ResNet50(weights=None, include_top=False,
                                       input_shape=(None, None, 3))
  rng = np.random.default_rng(0)
  for layer in app.layers:
    if layer.weights:
      layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                         for w in layer.get_weights()])
  path = str(tmp_path / 'resnet50.h5')
  app.save_weights(path)
  extractor = _extractor()
  extractor.load_classification_weights(path)  # before the model exists: applied at build
  model = extractor.get_proposal_feature_extractor_model()
  for name in ('conv1_conv', 'conv3_block2_2_bn', 'conv5_block3_3_conv'):
    for got, want in zip(model.get_layer(name).get_weights(), app.get_layer(name).get_weights()):
      np.testing.assert_array_equal(got, want)
  # a tf.train.Checkpoint of the application restores through classification_backbone_objects
  conv = app.get_layer('conv4_block1_0_conv')
  conv.set_weights([w + 1.0 for w in conv.get_weights()])
  prefix = tf.train.Checkpoint(feature_extractor=app).write(str(tmp_path / 'ckpt'))
  status = tf.train.Checkpoint(**extractor.classification_backbone_objects()).read(prefix)
  status.assert_existing_objects_matched()
  np.testing.assert_array_equal(model.get_layer('conv4_block1_0_conv').kernel, conv.kernel)


def test_mobilenet_v1_fpn_levels_and_override_rules():
  extractor = fpn.FpnFeatureExtractor(
      'mobilenet_v1', True, _hyperparams(), depth_multiplier=0.25, fpn_min_level=3,
      fpn_max_level=6, additional_layer_depth=8, override_base_feature_extractor_hyperparams=True)
  model = extractor.get_proposal_feature_extractor_model()
  maps = model(tf.zeros([1, 128, 96, 3]))
  assert [tuple(m.shape) for m in maps] == [(1, 16, 12, 8), (1, 8, 6, 8), (1, 4, 3, 8),
                                            (1, 2, 2, 8)]
  # C3..C5 of MobileNet v1 at width 0.25: conv_pw_5 (64), conv_pw_11 (128), conv_pw_13 (256)
  assert [model.get_layer(n).output.shape[-1] for n in
          ('conv_pw_5_relu', 'conv_pw_11_relu', 'conv_pw_13_relu')] == [64, 128, 256]
  dw = model.get_layer('conv_dw_2')
  assert dw.depthwise_initializer.stddev == pytest.approx(0.03)  # conv_hyperparams (override)
  relu = model.get_layer('conv_pw_3_relu')
  assert relu(tf.constant([-1.0, 9.0])).numpy().tolist() == [0.0, 6.0]
  # 'tf' preprocessing, as the Keras MobileNet weights expect
  np.testing.assert_allclose(extractor.preprocess(tf.constant([[[[0.0, 127.5, 255.0]]]])),
                             [[[[-1.0, 0.0, 1.0]]]])
  with pytest.raises(ValueError, match='ResNet FPNs only'):
    fpn.FpnFeatureExtractor('mobilenet_v1', True, _hyperparams(), num_frozen_blocks=1)
