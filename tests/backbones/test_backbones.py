"""Tests of mtl_ssl.backbones: shapes/strides, independent box-classifier copies, freezing,
frozen batch norm, classification-weight loading (local files only), preprocessing, L2."""

import functools
import math
import os
import types

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from mtl_ssl import backbones

# type -> (build overrides, F channels, box-classifier channels, 7x7-crop output size)
TYPES = {
    'faster_rcnn_resnet50_keras': ({}, 1024, 2048, 7),
    'faster_rcnn_resnet101_keras': ({}, 1024, 2048, 7),
    'faster_rcnn_resnet152_keras': ({}, 1024, 2048, 7),
    'faster_rcnn_inception_resnet_v2_keras': ({}, 1088, 1536, 3),
    'faster_rcnn_mobilenet_v1_keras': ({'depth_multiplier': 0.25}, 128, 256, 3),
    'faster_rcnn_mobilenet_v2_keras': ({'depth_multiplier': 0.35}, 32, 1280, 3),
}


def _config(type_name, **fields):
  return types.SimpleNamespace(type=type_name, **fields)


def _build(type_name, is_training=True, **overrides):
  return backbones.build(_config(type_name), is_training=is_training, **overrides)


def _randomize(model, seed):
  """Random weights everywhere, incl. BN moving statistics (variance kept positive)."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    values = []
    for weight in layer.weights:
      shape = weight.shape
      if 'moving_variance' in weight.name:
        values.append(rng.uniform(0.5, 1.5, shape).astype(np.float32))
      else:
        values.append((0.1 * rng.standard_normal(shape)).astype(np.float32))
    if values:
      layer.set_weights(values)


def _layer_output(model, layer_name, images):
  return tf_keras.Model(model.input, model.get_layer(layer_name).output)(images).numpy()


@functools.lru_cache(maxsize=None)
def _shared(type_name):
  """One extractor per type with the TYPES overrides, for tests that only read shapes."""
  return _build(type_name, **TYPES[type_name][0])


def _images(batch, height, width, seed=0):
  return tf.random.stateless_uniform([batch, height, width, 3], [seed, 1], 0.0, 255.0)


@pytest.mark.parametrize('type_name', sorted(TYPES))
def test_every_type_gives_stride_16_features_and_box_features(type_name):
  _, depth_f, depth_box, crop_out = TYPES[type_name]
  extractor = _shared(type_name)
  proposal = extractor.get_proposal_feature_extractor_model()
  box = extractor.get_box_classifier_feature_extractor_model()
  features = proposal(extractor.preprocess(_images(2, 64, 96)))
  assert features.shape == (2, 4, 6, depth_f)
  assert extractor.proposal_feature_depth == depth_f
  assert extractor.box_classifier_feature_depth == depth_box
  out = box(tf.random.normal([3, 7, 7, depth_f]))
  assert out.shape == (3, crop_out, crop_out, depth_box)
  assert np.all(np.isfinite(out.numpy())) and np.all(np.isfinite(features.numpy()))


def test_inception_resnet_v2_aligned_features_are_ceil_h_over_16():
  extractor = _shared('faster_rcnn_inception_resnet_v2_keras')
  proposal = extractor.get_proposal_feature_extractor_model()
  features = proposal(_images(1, 100, 72))
  assert features.shape[1:3] == (math.ceil(100 / 16), math.ceil(72 / 16))
  box = extractor.get_box_classifier_feature_extractor_model()
  assert box(tf.zeros([1, 17, 17, 1088])).shape == (1, 8, 8, 1536)  # OD API IRv2 crop size


@pytest.mark.parametrize('stride, crop, expected', [(1, 14, 14), (1, 7, 7), (2, 14, 7), (2, 7, 4)])
def test_resnet_box_classifier_stride(stride, crop, expected):
  extractor = _build('faster_rcnn_resnet50_keras', box_classifier_stride=stride)
  box = extractor.get_box_classifier_feature_extractor_model()
  assert box(tf.zeros([1, crop, crop, 1024])).shape == (1, expected, expected, 2048)


def test_resnet_f_matches_resnet_arithmetic_for_odd_sizes():
  extractor = _build('faster_rcnn_resnet50_keras')
  features = extractor.get_proposal_feature_extractor_model()(_images(1, 100, 81))
  # conv1 pad3/7x7/s2, pool pad1/3x3/s2, then two stride-2 1x1 convs: ceil(x/16) here.
  assert features.shape[1:3] == (7, 6)


@pytest.mark.parametrize('type_name', ['faster_rcnn_mobilenet_v1_keras',
                                       'faster_rcnn_resnet50_keras'])
def test_box_classifier_copies_are_independent_and_copyable(type_name):
  overrides, depth_f, _, _ = TYPES[type_name]
  extractor = _build(type_name, **overrides)
  main = extractor.get_box_classifier_feature_extractor_model()
  aux = extractor.get_box_classifier_feature_extractor_model()
  assert main is not aux and main.name != aux.name
  assert not {id(v) for v in main.weights} & {id(v) for v in aux.weights}
  assert len(main.weights) == len(aux.weights) > 0
  crops = tf.random.normal([2, 7, 7, depth_f], seed=3)
  assert not np.allclose(main(crops).numpy(), aux(crops).numpy())
  _randomize(main, seed=1)  # incl. BN statistics, which fresh copies have at 0 / 1
  extractor.copy_box_classifier_weights(main, aux)
  np.testing.assert_array_equal(main(crops).numpy(), aux(crops).numpy())
  # Still independent after copying: changing one leaves the other.
  main.trainable_weights[0].assign_add(tf.ones_like(main.trainable_weights[0]))
  assert not np.allclose(main(crops).numpy(), aux(crops).numpy())
  assert extractor.box_classifier_models == [main, aux]


def test_copy_box_classifier_weights_rejects_foreign_models():
  extractor = _build('faster_rcnn_mobilenet_v1_keras', depth_multiplier=0.25)
  other = _build('faster_rcnn_mobilenet_v1_keras', depth_multiplier=0.25)
  mine = extractor.get_box_classifier_feature_extractor_model()
  foreign = other.get_box_classifier_feature_extractor_model()
  with pytest.raises(ValueError, match='not a box classifier made by'):
    extractor.copy_box_classifier_weights(foreign, mine)


def test_resnet_default_freezes_conv1_and_block1_only():
  extractor = _build('faster_rcnn_resnet50_keras', batch_norm_trainable=True)
  proposal = extractor.get_proposal_feature_extractor_model()
  trainable_names = {v.name.split('/')[0] for v in proposal.trainable_weights}
  all_names = {v.name.split('/')[0] for v in proposal.weights}
  frozen = all_names - trainable_names
  assert frozen == {n for n in all_names if n.startswith(('conv1_', 'conv2_'))}
  assert {n for n in all_names if n.startswith(('conv3_', 'conv4_'))} <= trainable_names
  # Gradients reach block2 but the frozen kernels are not among the trainable variables.
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(proposal(_images(1, 64, 64), training=True))
  grads = tape.gradient(loss, proposal.trainable_weights)
  assert all(g is not None for g in grads)
  assert 'conv1_conv/kernel:0' not in {v.name for v in proposal.trainable_weights}


@pytest.mark.parametrize('kwargs, frozen_prefixes', [
    ({'num_frozen_blocks': 0}, ()),
    ({'freeze_layer': 'conv1'}, ('conv1_',)),
    ({'num_frozen_blocks': 3}, ('conv1_', 'conv2_', 'conv3_', 'conv4_')),
])
def test_resnet_freezing_options(kwargs, frozen_prefixes):
  extractor = _build('faster_rcnn_resnet50_keras', batch_norm_trainable=True, **kwargs)
  proposal = extractor.get_proposal_feature_extractor_model()
  trainable_names = {v.name.split('/')[0] for v in proposal.trainable_weights}
  all_names = {v.name.split('/')[0] for v in proposal.weights}
  assert all_names - trainable_names == {n for n in all_names if n.startswith(frozen_prefixes)}
  box = extractor.get_box_classifier_feature_extractor_model()  # conv5: never frozen
  assert len(_bn_layers(box)) == 10
  assert sorted(v.name.split('/')[-1] for v in box.non_trainable_weights) == \
      ['moving_mean:0'] * 10 + ['moving_variance:0'] * 10


def test_too_many_frozen_blocks_is_an_error():
  with pytest.raises(ValueError, match='cannot freeze 4 blocks'):
    _build('faster_rcnn_mobilenet_v1_keras', depth_multiplier=0.25, num_frozen_blocks=4)
  with pytest.raises(ValueError, match='freeze_layer'):
    _build('faster_rcnn_resnet50_keras', freeze_layer='block')


def _bn_layers(model):
  return [l for l in model.layers if isinstance(l, tf_keras.layers.BatchNormalization)]


def test_frozen_batch_norm_never_updates_and_ignores_training():
  extractor = _build('faster_rcnn_mobilenet_v1_keras', depth_multiplier=0.25,
                     batch_norm_trainable=False, num_frozen_blocks=0)
  proposal = extractor.get_proposal_feature_extractor_model()
  box = extractor.get_box_classifier_feature_extractor_model()
  _randomize(proposal, seed=4)
  bns = _bn_layers(proposal) + _bn_layers(box)
  assert bns and all(isinstance(l, backbones.FrozenBatchNormalization) for l in bns)
  assert not [v for l in bns for v in l.trainable_weights]
  before = [l.moving_mean.numpy().copy() for l in bns]
  images = _images(2, 64, 64)
  train_out = proposal(images, training=True)
  box(train_out, training=True)
  np.testing.assert_allclose(train_out.numpy(), proposal(images, training=False).numpy(),
                             rtol=1e-5, atol=1e-5)
  for layer, mean in zip(bns, before):
    np.testing.assert_array_equal(layer.moving_mean.numpy(), mean)
  proposal.trainable = True  # a parent unfreezing everything leaves frozen BN frozen
  assert not [v for l in bns for v in l.trainable_weights]


def test_trainable_batch_norm_updates_moving_stats_in_training_calls():
  extractor = _build('faster_rcnn_mobilenet_v1_keras', depth_multiplier=0.25,
                     batch_norm_trainable=True, num_frozen_blocks=1)
  proposal = extractor.get_proposal_feature_extractor_model()
  layer = proposal.get_layer('conv_pw_8_bn')     # in an unfrozen block
  frozen_layer = proposal.get_layer('conv_pw_2_bn')  # in a frozen block
  assert type(layer) is tf_keras.layers.BatchNormalization
  before, frozen_before = layer.moving_mean.numpy().copy(), frozen_layer.moving_mean.numpy().copy()
  proposal(_images(2, 64, 64), training=True)
  assert not np.allclose(layer.moving_mean.numpy(), before)
  np.testing.assert_array_equal(frozen_layer.moving_mean.numpy(), frozen_before)


def test_batch_norm_trainable_needs_is_training():
  extractor = _build('faster_rcnn_mobilenet_v1_keras', is_training=False,
                     depth_multiplier=0.25, batch_norm_trainable=True)
  bns = _bn_layers(extractor.get_proposal_feature_extractor_model())
  assert all(isinstance(l, backbones.FrozenBatchNormalization) for l in bns)


# ----- classification weights --------------------------------------------------------------

def _assert_same_map(actual, expected):
  """Equal up to float32 rounding: frozen batch norm computes x * a + b, the application's the
  fused kernel, and with random weights deep nets reach ~1e4, so atol follows the map's scale
  (a wrongly loaded weight is off by the scale itself)."""
  np.testing.assert_allclose(actual, expected, rtol=1e-4,
                             atol=1e-4 * max(1.0, float(np.abs(expected).max()) * 0.1))


def _check_loaded(extractor, app, f_layer, box_layer, images, before_copy, after_copy):
  proposal = extractor.get_proposal_feature_extractor_model()
  features = proposal(extractor.preprocess(images)).numpy()
  expected = _layer_output(app, f_layer, extractor.preprocess(images))
  _assert_same_map(features, expected)
  expected_box = _layer_output(app, box_layer, extractor.preprocess(images))
  for copy in (before_copy, after_copy):
    _assert_same_map(copy(features).numpy(), expected_box)


def test_load_h5_weights_into_mobilenet_v1_including_file_with_top(tmp_path):
  app = tf_keras.applications.MobileNet(weights=None, include_top=False, alpha=0.25,
                                        input_shape=(None, None, 3))
  _randomize(app, seed=7)
  notop = str(tmp_path / 'mobilenet_notop.h5')
  app.save_weights(notop)
  extractor = _build('faster_rcnn_mobilenet_v1_keras', depth_multiplier=0.25)
  before = extractor.get_box_classifier_feature_extractor_model()
  extractor.load_classification_weights(notop)
  after = extractor.get_box_classifier_feature_extractor_model()
  _check_loaded(extractor, app, 'conv_pw_11_relu', 'conv_pw_13_relu', _images(2, 64, 64),
                before, after)

  full = tf_keras.applications.MobileNet(weights=None, include_top=True, alpha=0.25)
  _randomize(full, seed=8)
  with_top = str(tmp_path / 'mobilenet_top.h5')
  full.save_weights(with_top)
  extractor.load_classification_weights(with_top)
  images = _images(1, 224, 224)  # the model with top has a fixed input size
  features = extractor.get_proposal_feature_extractor_model()(images)
  np.testing.assert_allclose(features, _layer_output(full, 'conv_pw_11_relu', images),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(after(features), _layer_output(full, 'conv_pw_13_relu', images),
                             rtol=1e-4, atol=1e-4)


def test_load_h5_weights_into_resnet50_before_building_the_proposal_model(tmp_path):
  app = tf_keras.applications.ResNet50(weights=None, include_top=False,
                                       input_shape=(None, None, 3))
  _randomize(app, seed=9)
  path = str(tmp_path / 'resnet50.h5')
  app.save_weights(path)
  extractor = _build('faster_rcnn_resnet50_keras', box_classifier_stride=2)
  before = extractor.get_box_classifier_feature_extractor_model()
  extractor.load_classification_weights(path)  # proposal model not built yet
  after = extractor.get_box_classifier_feature_extractor_model()
  _check_loaded(extractor, app, 'conv4_block6_out', 'conv5_block3_out', _images(1, 64, 64),
                before, after)


def test_load_h5_weights_into_inception_resnet_v2_with_auto_named_layers(tmp_path):
  app = tf_keras.applications.InceptionResNetV2(weights=None, include_top=False,
                                                input_shape=(None, None, 3))
  _randomize(app, seed=10)
  path = str(tmp_path / 'irv2.h5')
  app.save_weights(path)
  extractor = _build('faster_rcnn_inception_resnet_v2_keras', align_feature_maps=False)
  box = extractor.get_box_classifier_feature_extractor_model()
  # Our layer names come from another blueprint than the file's (Keras' name counters).
  assert any(l.name not in {a.name for a in app.layers}
             for l in extractor.get_proposal_feature_extractor_model().layers[1:])
  extractor.load_classification_weights(path)
  _check_loaded(extractor, app, 'block17_20_ac', 'conv_7b_ac', _images(1, 96, 96), box, box)


def test_load_tf_checkpoints_in_both_layouts(tmp_path):
  app = tf_keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.35,
                                          input_shape=(None, None, 3))
  _randomize(app, seed=11)
  keras_prefix = str(tmp_path / 'keras_format' / 'ckpt')
  app.save_weights(keras_prefix)
  checkpoint_dir = str(tmp_path / 'tf_checkpoint')
  tf.train.CheckpointManager(tf.train.Checkpoint(model=app), checkpoint_dir, 1).save()
  images = _images(1, 64, 64)
  for source in (keras_prefix, checkpoint_dir):
    extractor = _build('faster_rcnn_mobilenet_v2_keras', depth_multiplier=0.35)
    box = extractor.get_box_classifier_feature_extractor_model()
    extractor.load_classification_weights(source)
    _check_loaded(extractor, app, 'block_12_add', 'out_relu', images, box, box)


def test_load_weights_errors_name_the_source(tmp_path):
  extractor = _build('faster_rcnn_mobilenet_v1_keras', depth_multiplier=0.25)
  with pytest.raises(FileNotFoundError, match='missing.h5'):
    extractor.load_classification_weights(str(tmp_path / 'missing.h5'))
  with pytest.raises(FileNotFoundError, match='no TF checkpoint'):
    extractor.load_classification_weights(str(tmp_path / 'nothing_here'))
  other = tf_keras.applications.MobileNet(weights=None, include_top=False, alpha=0.5,
                                          input_shape=(None, None, 3))
  wrong = str(tmp_path / 'alpha_half.h5')
  other.save_weights(wrong)
  with pytest.raises(ValueError, match='alpha_half.h5'):
    extractor.load_classification_weights(wrong)


def test_classification_backbone_restores_a_tf_train_checkpoint_of_the_application(tmp_path):
  app = tf_keras.applications.MobileNet(weights=None, include_top=False, alpha=0.25,
                                        input_shape=(None, None, 3))
  _randomize(app, seed=12)
  prefix = tf.train.Checkpoint(feature_extractor=app).write(str(tmp_path / 'cls' / 'ckpt'))
  extractor = _build('faster_rcnn_mobilenet_v1_keras', depth_multiplier=0.25)
  main = extractor.get_box_classifier_feature_extractor_model()
  aux = extractor.get_box_classifier_feature_extractor_model()
  backbone = extractor.classification_backbone
  assert [l.name for l in backbone.layers[1:]] == [l.name for l in app.layers[1:]]
  tf.train.Checkpoint(**extractor.classification_backbone_objects()).read(
      prefix).assert_existing_objects_matched()
  extractor.propagate_main_box_classifier_weights()
  images = _images(1, 64, 64)
  np.testing.assert_allclose(backbone(images).numpy(), app(images).numpy(), rtol=1e-4, atol=1e-4)
  features = extractor.get_proposal_feature_extractor_model()(images)
  np.testing.assert_allclose(aux(features).numpy(), app(images).numpy(), rtol=1e-4, atol=1e-4)
  assert main.get_layer('conv_pw_13').kernel is backbone.get_layer('conv_pw_13').kernel


def test_classification_backbone_needs_a_box_classifier():
  extractor = _build('faster_rcnn_mobilenet_v1_keras', depth_multiplier=0.25)
  with pytest.raises(ValueError, match='get_box_classifier_feature_extractor_model'):
    extractor.classification_backbone  # pylint: disable=pointless-statement


# ----- preprocessing, regularization, build() ---------------------------------------------

@pytest.mark.parametrize('type_name, module', [
    ('faster_rcnn_resnet50_keras', tf_keras.applications.resnet),
    ('faster_rcnn_inception_resnet_v2_keras', tf_keras.applications.inception_resnet_v2),
    ('faster_rcnn_mobilenet_v1_keras', tf_keras.applications.mobilenet),
    ('faster_rcnn_mobilenet_v2_keras', tf_keras.applications.mobilenet_v2),
])
def test_preprocess_matches_keras_preprocess_input(type_name, module):
  extractor = _shared(type_name)
  images = np.random.default_rng(0).uniform(0, 255, (2, 5, 4, 3)).astype(np.float32)
  expected = module.preprocess_input(images.copy())
  np.testing.assert_allclose(extractor.preprocess(images).numpy(), expected, rtol=1e-5, atol=1e-4)
  # Hand-worked pixel: caffe = BGR minus ImageNet BGR means; tf = x / 127.5 - 1.
  pixel = extractor.preprocess(np.array([[[[10.0, 20.0, 30.0]]]], np.float32)).numpy()[0, 0, 0]
  if extractor.preprocess_mode == 'caffe':
    np.testing.assert_allclose(pixel, [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)
  else:
    np.testing.assert_allclose(pixel, [10 / 127.5 - 1, 20 / 127.5 - 1, 30 / 127.5 - 1], atol=1e-6)


def test_regularization_losses_sum_trainable_kernels_of_every_model():
  decay = 3e-4
  extractor = backbones.build(
      _config('faster_rcnn_mobilenet_v1_keras', weight_decay=decay, freeze_layer='block1'),
      is_training=True, depth_multiplier=0.25)
  proposal = extractor.get_proposal_feature_extractor_model()
  boxes = [extractor.get_box_classifier_feature_extractor_model() for _ in range(2)]
  _randomize(boxes[1], seed=5)
  # Hand-derived: stem (conv1, unit 1) and block1 (units 2-3) frozen; units 4..11 count.
  names = [f'conv_{kind}_{unit}' for unit in range(4, 12) for kind in ('dw', 'pw')]
  expected = [0.5 * decay * sum(np.sum(proposal.get_layer(n).get_weights()[0] ** 2)
                                for n in names)]
  for box in boxes:
    box_names = [f'conv_{kind}_{unit}' for unit in (12, 13) for kind in ('dw', 'pw')]
    expected.append(0.5 * decay * sum(np.sum(box.get_layer(n).get_weights()[0] ** 2)
                                      for n in box_names))
  losses = [float(loss) for loss in extractor.regularization_losses()]
  np.testing.assert_allclose(losses, expected, rtol=1e-5)
  assert _build('faster_rcnn_mobilenet_v1_keras', depth_multiplier=0.25
                ).regularization_losses() == []


def test_build_reads_config_fields_and_rejects_bad_ones():
  extractor = backbones.build(
      _config('faster_rcnn_resnet50_keras', batch_norm_trainable=True, freeze_layer='conv1',
              first_stage_features_stride=16),
      is_training=True)
  assert extractor.num_frozen_stages == 1
  assert type(_bn_layers(extractor.get_proposal_feature_extractor_model())[-1]) is \
      tf_keras.layers.BatchNormalization
  with pytest.raises(ValueError, match='unknown feature_extractor.type'):
    backbones.build(_config('faster_rcnn_vgg16'), is_training=True)
  with pytest.raises(ValueError, match='feature_extractor.type is required'):
    backbones.build(types.SimpleNamespace(), is_training=True)
  with pytest.raises(ValueError, match='first_stage_features_stride must be 16'):
    backbones.build(_config('faster_rcnn_mobilenet_v1_keras', first_stage_features_stride=8),
                    is_training=True)
  with pytest.raises(ValueError, match='depth_multiplier'):
    _build('faster_rcnn_mobilenet_v2_keras', depth_multiplier=0.0)


def test_build_from_the_generated_proto():
  faster_rcnn_pb2 = pytest.importorskip('mtl_ssl.protos.faster_rcnn_pb2')
  config = faster_rcnn_pb2.FasterRcnnFeatureExtractor(type='faster_rcnn_mobilenet_v1_keras',
                                                      first_stage_features_stride=16)
  extractor = backbones.build(config, is_training=True, depth_multiplier=0.25)
  features = extractor.get_proposal_feature_extractor_model()(_images(1, 32, 48))
  assert features.shape == (1, 2, 3, 128)
  assert _bn_layers(extractor.get_proposal_feature_extractor_model())
  assert all(isinstance(l, backbones.FrozenBatchNormalization)
             for l in _bn_layers(extractor.get_proposal_feature_extractor_model()))
  assert extractor.regularization_losses() == []
  config.conv_hyperparams.regularizer.l2_regularizer.weight = 4e-4
  extractor = backbones.build(config, is_training=True, depth_multiplier=0.25, num_frozen_blocks=0)
  proposal = extractor.get_proposal_feature_extractor_model()
  kernels = [l.get_weights()[0] for l in proposal.layers
             if isinstance(l, (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D))]
  assert len(kernels) == 23  # conv1 + 11 depthwise + 11 pointwise
  np.testing.assert_allclose(float(extractor.regularization_losses()[0]),
                             0.5 * 4e-4 * sum(np.sum(k ** 2) for k in kernels), rtol=1e-5)
  config.conv_hyperparams.regularizer.l1_regularizer.weight = 1e-4
  with pytest.raises(ValueError, match='only l2_regularizer'):
    backbones.build(config, is_training=True)


def test_box_classifier_names_are_made_unique():
  extractor = _build('faster_rcnn_mobilenet_v2_keras', depth_multiplier=0.35)
  names = [extractor.get_box_classifier_feature_extractor_model('MTLWindow').name
           for _ in range(3)]
  assert names == ['MTLWindow', 'MTLWindow_1', 'MTLWindow_2']
  assert extractor.get_proposal_feature_extractor_model() is \
      extractor.get_proposal_feature_extractor_model()
