"""Faster R-CNN FPN feature extractors: OD API faster_rcnn_resnet{50,101,152}_fpn_keras, and
faster_rcnn_mobilenet_v1_fpn_keras (an mtl-ssl type: the same FPN on MobileNet v1, small enough
to train on a CPU; the OD API has MobileNet FPNs only for SSD).

Proposal model: images -> backbone C2..C5 (conv2..conv5 block outputs, strides 4..32) -> FPN
top-down pathway on levels min_level..min(max_level, 5) -> extra stride-2 levels up to
max_level -> a LIST of maps [P_min, ..., P_max], finest first, all `additional_layer_depth`
channels. As the OD API's KerasFpnTopDownFeatureMaps: the coarsest backbone level gets a 1x1
projection only ('projection_N'); every finer one a 1x1 projection ('projection_i', with bias)
added to the nearest-neighbour x2 upsampled coarser map, then a 3x3 conv + batch norm +
activation ('smoothing_i'); each extra level is a 3x3 stride-2 conv + batch norm + activation on
the previous coarsest map ('bottom_up_block{l}'). All FPN layers use `conv_hyperparams`.

Box classifier (OD API): crops [N, k, k, depth] -> flatten -> FC 1024 relu -> batch norm (of
conv_hyperparams, if it has one) -> FC 1024 relu -> [N, 1, 1, 1024]. Every call makes a new copy
with its own variables (the MTL heads' copies); there is no block-4 stage on FPN.

ResNet layers, as the OD API's Keras ResNet v1 (keras_models/resnet_v1.py):
- override_base_feature_extractor_hyperparams: conv kernels take conv_hyperparams' initializer
  and regularizer, batch norms its batch_norm (none -> no normalization), every ReLU becomes
  conv_hyperparams' activation (RELU_6 in the OD API samples);
- else the OD API defaults: variance-scaling (fan_in, truncated normal) kernels, Keras l2(1e-4),
  batch norm momentum 0.997 / epsilon 1e-5, ReLU;
- no explicit padding before the stem max-pool, which pads 'same' (the OD API geometry).
Kept from tf_keras.applications, on purpose: the conv biases (so the Keras ImageNet weights
load, see load_classification_weights) and 'caffe' preprocessing (BGR, ImageNet means: what
those weights expect; the OD API subtracts RGB means for its own checkpoints).
Batch norm everywhere trains only with batch_norm_trainable and is_training; otherwise it is
FrozenBatchNormalization (moving statistics, gamma/beta fixed), the project's frozen BN.
Nothing is frozen by default (the OD API trains every backbone layer); num_frozen_blocks /
freeze_layer freeze the ResNet stem and first blocks as for the C4 extractors.
MobileNet v1 (C2..C5 = conv_pw_3/5/11/13 outputs, width `depth_multiplier`, 'tf'
preprocessing): with the override its kernels, batch norms and ReLU6s follow conv_hyperparams as
above; without it keeps the Keras application's own layers (frozen batch norm as above).

The detector pads images to a multiple of `pad_to_multiple` (OD API default 32) before this
model, so every level's map covers exactly the padded image.
"""

import dataclasses
import functools

import tensorflow as tf
import tf_keras

from mtl_ssl.backbones import graph
from mtl_ssl.backbones import weights as weights_lib
from mtl_ssl.backbones.base import FrozenBatchNormalization
from mtl_ssl.backbones.base import freeze_layer_to_num_stages

BOX_CLASSIFIER_UNITS = 1024
_CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A tf_keras.applications model seen as C2..C5 (strides 4, 8, 16, 32)."""
  application: object          # tf_keras.applications constructor
  c_layers: tuple              # output layers of C2..C5
  preprocess_mode: str         # 'caffe' (BGR minus means) or 'tf' (scaled to [-1, 1])
  resnet: bool                 # the OD API's ResNet v1 rules apply (see the module docstring)


BACKBONES = {
    'resnet50': Backbone(tf_keras.applications.ResNet50, (
        'conv2_block3_out', 'conv3_block4_out', 'conv4_block6_out', 'conv5_block3_out'),
                         'caffe', True),
    'resnet101': Backbone(tf_keras.applications.ResNet101, (
        'conv2_block3_out', 'conv3_block4_out', 'conv4_block23_out', 'conv5_block3_out'),
                          'caffe', True),
    'resnet152': Backbone(tf_keras.applications.ResNet152, (
        'conv2_block3_out', 'conv3_block8_out', 'conv4_block36_out', 'conv5_block3_out'),
                          'caffe', True),
    'mobilenet_v1': Backbone(tf_keras.applications.MobileNet, (
        'conv_pw_3_relu', 'conv_pw_5_relu', 'conv_pw_11_relu', 'conv_pw_13_relu'), 'tf', False),
}


def _application_kwargs(name, alpha):
  return {'alpha': alpha} if name.startswith('mobilenet') else {}


@functools.lru_cache(maxsize=None)
def _blueprint(name, alpha):
  """(LayerSpecs, input layer name) of the tf_keras.applications model, recorded once per
  process (the specs are immutable; every layer is made fresh from them)."""
  model = BACKBONES[name].application(weights=None, include_top=False, input_shape=(None, None, 3),
                                      **_application_kwargs(name, alpha))
  return tuple(graph.layer_specs(model)), model.layers[0].name


def _batch_norm_kwargs(hyperparams):
  """momentum / epsilon / center / scale of hyperparams' batch norm, or None without one."""
  probe = hyperparams.build_batch_norm('probe')
  if probe is None:
    return None
  config = probe.get_config()
  return {key: config[key] for key in ('momentum', 'epsilon', 'center', 'scale')}


class _TopDownMerge(tf_keras.layers.Layer):
  """[coarser map, finer projection] -> finer projection + nearest x2 upsampled coarser map.

  The upsampled map is cut to the finer map's size, so odd sizes (images not padded to a
  multiple of 32) work too; for multiples of 32 this is exactly the OD API's top-down sum.
  """

  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None):
    del training  # no weights, same in training and inference
    top_down, residual = inputs
    upsampled = tf.repeat(tf.repeat(top_down, 2, axis=1), 2, axis=2)
    shape = tf.shape(residual)
    return residual + upsampled[:, :shape[1], :shape[2], :]


class FpnFeatureExtractor:
  """Faster R-CNN FPN feature extractor on one of BACKBONES; see the module docstring."""

  is_multilevel = True

  def __init__(self, backbone, is_training, conv_hyperparams, first_stage_features_stride=16,
               batch_norm_trainable=False, override_base_feature_extractor_hyperparams=False,
               fpn_min_level=2, fpn_max_level=6, additional_layer_depth=256,
               pad_to_multiple=32, num_frozen_blocks=None, freeze_layer=None,
               depth_multiplier=1.0):
    if backbone not in BACKBONES:
      raise ValueError(f'FPN backbone must be one of {sorted(BACKBONES)}, got {backbone!r}')
    if not depth_multiplier > 0:
      raise ValueError(f'feature_extractor.depth_multiplier must be > 0, got {depth_multiplier}')
    if first_stage_features_stride not in (8, 16):
      raise ValueError('feature_extractor.first_stage_features_stride must be 8 or 16 '
                       f'(unused by FPN, as in the OD API), got {first_stage_features_stride}')
    if not 2 <= fpn_min_level <= 5:
      raise ValueError(f'feature_extractor.fpn.min_level must be in 2..5 (ResNet C2..C5), '
                       f'got {fpn_min_level}')
    if fpn_max_level < fpn_min_level:
      raise ValueError(f'feature_extractor.fpn.max_level ({fpn_max_level}) must be >= '
                       f'min_level ({fpn_min_level})')
    if additional_layer_depth < 1:
      raise ValueError('feature_extractor.fpn.additional_layer_depth must be >= 1, got '
                       f'{additional_layer_depth}')
    if pad_to_multiple < 1:
      raise ValueError(f'feature_extractor.pad_to_multiple must be >= 1, got {pad_to_multiple}')
    if conv_hyperparams is None:
      raise ValueError('feature_extractor.conv_hyperparams is required for the FPN extractors '
                       '(it configures the FPN layers, as in the OD API)')
    self.backbone_name = backbone
    self._backbone = BACKBONES[backbone]
    self._alpha = float(depth_multiplier) if not self._backbone.resnet else 1.0
    self._c_layers = self._backbone.c_layers
    self.preprocess_mode = self._backbone.preprocess_mode
    self._is_training = bool(is_training)
    self._first_stage_features_stride = first_stage_features_stride
    self._train_batch_norm = bool(batch_norm_trainable) and self._is_training
    self._hyperparams = conv_hyperparams
    self._override = bool(override_base_feature_extractor_hyperparams)
    self.min_level = int(fpn_min_level)
    self.max_level = int(fpn_max_level)
    self.feature_levels = tuple(range(self.min_level, self.max_level + 1))
    self.pad_to_multiple = int(pad_to_multiple)
    self.proposal_feature_depth = int(additional_layer_depth)
    self.box_classifier_feature_depth = BOX_CLASSIFIER_UNITS
    if num_frozen_blocks is not None and freeze_layer is not None:
      raise ValueError('give num_frozen_blocks or freeze_layer, not both')
    if freeze_layer is not None:
      self._num_frozen_stages = freeze_layer_to_num_stages(freeze_layer)
    else:
      blocks = num_frozen_blocks or 0
      if blocks < 0:
        raise ValueError(f'num_frozen_blocks must be >= 0, got {blocks}')
      self._num_frozen_stages = blocks + 1 if blocks > 0 else 0
    if self._num_frozen_stages > 5:
      raise ValueError('a ResNet has a stem and 4 blocks: cannot freeze '
                       f'{self._num_frozen_stages - 1} blocks')
    if self._num_frozen_stages and not self._backbone.resnet:
      raise ValueError(f'freezing blocks is implemented for the ResNet FPNs only, not {backbone}')

    self._specs, self._input_name = _blueprint(backbone, self._alpha)
    if self._override:
      self._kernel_initializer = conv_hyperparams.initializer()
      self._kernel_regularizer = conv_hyperparams.regularizer()
      self._backbone_bn = _batch_norm_kwargs(conv_hyperparams)
      self._activation = conv_hyperparams.activation() or 'linear'
    elif not self._backbone.resnet:  # the application's own layers
      self._kernel_initializer = self._kernel_regularizer = self._activation = None
      self._backbone_bn = 'application'
    else:  # the OD API's Keras ResNet v1 defaults
      self._kernel_initializer = tf_keras.initializers.VarianceScaling(
          1.0, 'fan_in', 'truncated_normal')
      self._kernel_regularizer = tf_keras.regularizers.l2(1e-4)
      self._backbone_bn = {'momentum': 0.997, 'epsilon': 1e-5, 'center': True, 'scale': True}
      self._activation = 'relu'
    self._fpn_bn = _batch_norm_kwargs(conv_hyperparams)

    self._proposal_model = None
    self._backbone_layers = {}
    self._pending_weights = None
    self._classification_backbone = None
    self._box_models = []
    self._box_names = set()

  # ----- OD API interface ------------------------------------------------------------------
  @property
  def is_training(self):
    return self._is_training

  @property
  def first_stage_features_stride(self):
    return self._first_stage_features_stride

  @property
  def num_levels(self):
    return len(self.feature_levels)

  @property
  def num_frozen_stages(self):
    return self._num_frozen_stages

  @property
  def depth_multiplier(self):
    return self._alpha

  def preprocess(self, resized_inputs):
    """float32 images in 0..255 -> what the ImageNet weights expect: BGR minus the ImageNet
    means (ResNets, Keras 'caffe' mode) or scaled to [-1, 1] (MobileNet, 'tf' mode)."""
    images = tf.convert_to_tensor(resized_inputs, dtype=tf.float32)
    if images.shape.rank != 4 or images.shape[-1] != 3:
      raise ValueError(f'preprocess expects [batch, height, width, 3] images, got {images.shape}')
    if self.preprocess_mode == 'caffe':
      return images[..., ::-1] - tf.constant(_CAFFE_MEANS_BGR, tf.float32)
    return images / 127.5 - 1.0

  def get_proposal_feature_extractor_model(self, name='FirstStageFeatureExtractor'):
    """images [B, H, W, 3] -> [P_min, ..., P_max]. Built once; later calls return it."""
    if self._proposal_model is None:
      images = tf_keras.Input(shape=(None, None, 3), name=f'{name}_images')
      c_maps, self._backbone_layers = graph.apply_slice_outputs(
          self._specs, self._input_name, list(self._c_layers), images, self._backbone_layer)
      pyramid = self._pyramid(c_maps)
      self._proposal_model = tf_keras.Model(images, pyramid, name=name)
      if self._pending_weights:
        self._apply_weights(self._pending_weights)
        self._pending_weights = None
    return self._proposal_model

  def get_box_classifier_feature_extractor_model(self, name='SecondStageFeatureExtractor',
                                                 classification_init=True):
    """crops [N, k, k, depth] -> [N, 1, 1, 1024]; every call builds a NEW copy (built at its
    first call). A name used before gets a numeric suffix. classification_init: the C4
    extractors' switch for copies that must not take the ImageNet weights; the FPN box
    classifier never has classification weights, so it changes nothing here."""
    del classification_init
    unique_name, suffix = name, 0
    while unique_name in self._box_names:
      suffix += 1
      unique_name = f'{name}_{suffix}'
    self._box_names.add(unique_name)
    layers = [tf_keras.layers.Flatten(name='flatten'),
              tf_keras.layers.Dense(BOX_CLASSIFIER_UNITS, activation='relu', name='fc1')]
    batch_norm = self._fpn_batch_norm('fc1_batchnorm')
    if batch_norm is not None:
      layers.append(batch_norm)
    layers += [tf_keras.layers.Dense(BOX_CLASSIFIER_UNITS, activation='relu', name='fc2'),
               tf_keras.layers.Reshape((1, 1, BOX_CLASSIFIER_UNITS), name='to_map')]
    model = tf_keras.Sequential(layers, name=unique_name)
    self._box_models.append(model)
    return model

  @property
  def box_classifier_models(self):
    """All box-classifier copies made so far, in creation order (the first is the main one)."""
    return list(self._box_models)

  def copy_box_classifier_weights(self, src_model, dst_model):
    """dst := src (all weights, incl. batch norm statistics); both made by this extractor."""
    for model in (src_model, dst_model):
      if not any(model is own for own in self._box_models):
        raise ValueError(f'model {getattr(model, "name", model)!r} is not a box classifier '
                         'made by this feature extractor')
    dst_model.set_weights(src_model.get_weights())

  def load_classification_weights(self, source):
    """Loads the tf_keras.applications ResNet's classification weights ('imagenet', a Keras
    .h5 file or a TF checkpoint of it, see weights.py) into the backbone part of the proposal
    model (now, or when it is built). The FPN layers and box classifiers keep their init."""
    if self._override and self._backbone_bn is None:
      raise ValueError('classification weights need the backbone batch norms, but '
                       'override_base_feature_extractor_hyperparams is on and '
                       'conv_hyperparams has no batch_norm')
    loaded = weights_lib.load_application_weights(self._application, source)
    expected = {spec.index for spec in self._specs if self._has_weights(spec)}
    missing = sorted(expected - set(loaded))
    if missing:
      raise ValueError(f'classification weights {source!r} lack layers '
                       f'{[self._specs[i].name for i in missing][:5]}')
    if self._proposal_model is not None:
      self._apply_weights(loaded)
    else:
      self._pending_weights = loaded

  load_imagenet_weights = load_classification_weights

  @property
  def classification_backbone(self):
    """The backbone (input -> C5) made of the proposal model's backbone layers, so a
    tf.train.Checkpoint of the tf_keras.applications model restores into it."""
    if self._classification_backbone is None:
      self.get_proposal_feature_extractor_model()
      images = tf_keras.Input(shape=(None, None, 3), name='classification_backbone_images')
      self._classification_backbone, _ = graph.replay(
          self._specs, self._input_name, self._c_layers[-1], images,
          lambda spec: self._backbone_layers[spec.index], name='classification_backbone')
    return self._classification_backbone

  def classification_backbone_objects(self):
    """Trackables for tf.train.Checkpoint restore of a classification checkpoint."""
    return {'feature_extractor': self.classification_backbone}

  # ----- internals -------------------------------------------------------------------------
  def _application(self, weights, include_top):
    return self._backbone.application(
        weights=weights, include_top=include_top,
        input_shape=None if include_top else (None, None, 3),
        **_application_kwargs(self.backbone_name, self._alpha))

  def _stage(self, layer_name):
    """0 = stem (conv1, pool1), k = ResNet block k (conv{k+1}_*)."""
    if layer_name.startswith(('conv1_', 'pool1_')):
      return 0
    if layer_name.startswith('conv') and layer_name[4:5].isdigit():
      return int(layer_name[4]) - 1
    return 0

  def _backbone_layer(self, spec):
    config = dict(spec.config)
    frozen = self._stage(spec.name) < self._num_frozen_stages
    if issubclass(spec.cls, tf_keras.layers.BatchNormalization):
      if self._backbone_bn == 'application':
        bn_kwargs = {key: config[key] for key in ('momentum', 'epsilon', 'center', 'scale')}
        cls = (tf_keras.layers.BatchNormalization if self._train_batch_norm
               else FrozenBatchNormalization)
        return cls(name=spec.name, **bn_kwargs)
      if self._backbone_bn is None:  # conv_hyperparams without batch norm: none here either
        return tf_keras.layers.Activation('linear', name=spec.name)
      cls = (tf_keras.layers.BatchNormalization if self._train_batch_norm and not frozen
             else FrozenBatchNormalization)
      return cls(name=spec.name, **self._backbone_bn)
    if spec.name == 'pool1_pad':
      config['padding'] = ((0, 0), (0, 0))
    elif spec.name == 'pool1_pool':
      config['padding'] = 'same'
    elif issubclass(spec.cls, tf_keras.layers.DepthwiseConv2D):
      if self._kernel_initializer is not None:
        config['depthwise_initializer'] = self._kernel_initializer
        config['depthwise_regularizer'] = self._kernel_regularizer
    elif issubclass(spec.cls, tf_keras.layers.Conv2D):
      if self._kernel_initializer is not None:
        config['kernel_initializer'] = self._kernel_initializer
        config['kernel_regularizer'] = self._kernel_regularizer
    elif issubclass(spec.cls, (tf_keras.layers.Activation, tf_keras.layers.ReLU)):
      if self._activation is not None:
        return tf_keras.layers.Activation(self._activation, name=spec.name)
    if frozen:
      config['trainable'] = False
    return graph.layer_from_spec(spec, config)

  def _fpn_batch_norm(self, name):
    if self._fpn_bn is None:
      return None
    cls = tf_keras.layers.BatchNormalization if self._train_batch_norm else FrozenBatchNormalization
    return cls(name=name, **self._fpn_bn)

  def _conv_block(self, net, name, strides=1):
    """3x3 conv + [batch norm] + activation with conv_hyperparams (OD API create_conv_block)."""
    net = tf_keras.layers.Conv2D(self.proposal_feature_depth, 3, strides=strides,
                                 padding='same', name=f'{name}_conv',
                                 **self._hyperparams.params())(net)
    batch_norm = self._fpn_batch_norm(f'{name}_batchnorm')
    if batch_norm is not None:
      net = batch_norm(net)
    activation = self._hyperparams.build_activation_layer(name)
    return activation(net) if activation is not None else net

  def _pyramid(self, c_maps):
    """C2..C5 -> [P_min, ..., P_max] (finest first)."""
    base_max = min(self.max_level, 5)
    inputs = [c_maps[level - 2] for level in range(self.min_level, base_max + 1)]
    count = len(inputs)
    projection = lambda index: tf_keras.layers.Conv2D(  # pylint: disable=g-long-lambda
        self.proposal_feature_depth, 1, name=f'projection_{index}',
        **self._hyperparams.params(use_bias=True))
    outputs = [projection(count)(inputs[-1])]
    for index in reversed(range(count - 1)):
      residual = projection(index + 1)(inputs[index])
      merged = _TopDownMerge(name=f'top_down_{index + 1}')([outputs[-1], residual])
      outputs.append(self._conv_block(merged, f'smoothing_{index + 1}'))
    outputs.reverse()
    for level in range(base_max, self.max_level):
      outputs.append(self._conv_block(outputs[-1], f'bottom_up_block{level}', strides=2))
    return outputs

  @staticmethod
  def _has_weights(spec):
    return issubclass(spec.cls, (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D,
                                 tf_keras.layers.BatchNormalization, tf_keras.layers.Dense))

  def _apply_weights(self, loaded):
    for index, layer in self._backbone_layers.items():
      if index not in loaded:
        continue
      try:
        layer.set_weights(loaded[index])
      except ValueError as error:
        raise ValueError(f'classification weights do not fit layer {layer.name!r}: '
                         f'{error}') from error
