"""Faster R-CNN feature extractors by OD API type name: C4 (one stride-16 map) and FPN.

`build(feature_extractor_config, is_training)` reads the FasterRcnnFeatureExtractor message
(or any object with the same attribute names). Fields used when the message has them:
  type                          registry key below (required)
  first_stage_features_stride   must be 16
  batch_norm_trainable          default False (BN frozen, as the paper)
  conv_hyperparams              only its regularizer { l2_regularizer { weight: w } } is used:
                                the backbone's weight decay (regularization_losses() =
                                w/2 * sum of squared trainable kernels, the OD API TF2 /
                                slim convention, as mtl_ssl.builders.hyperparams_builder)
  weight_decay                  same meaning (original TF1 field; plain config objects)
  freeze_layer                  '', 'conv1', 'blockN' (original TF1 field; default per type)
  depth_multiplier              MobileNet width multiplier (Keras alpha)
Other OD API fields (override_base_feature_extractor_hyperparams, pad_to_multiple, fpn) are
not used by the C4 extractors (config validation rejects the unsupported ones).
FPN types (faster_rcnn_resnet{50,101,152}_fpn_keras, fpn.py; and the mtl-ssl type
faster_rcnn_mobilenet_v1_fpn_keras, which also reads depth_multiplier) read as the OD API does:
  conv_hyperparams (required: the FPN layers' hyperparameters, and the backbone's with
  override_base_feature_extractor_hyperparams), fpn { min_level max_level
  additional_layer_depth } (levels 2..6, depth 256 when fpn is absent), pad_to_multiple,
  batch_norm_trainable.
Keyword overrides (e.g. num_frozen_blocks=0, box_classifier_stride=2, depth_multiplier=0.25,
align_feature_maps=False) go to the extractor's constructor and win over the config.
"""

import functools

from mtl_ssl.backbones import fpn
from mtl_ssl.backbones.base import ApplicationFeatureExtractor
from mtl_ssl.backbones.base import FrozenBatchNormalization
from mtl_ssl.backbones.inception_resnet_v2 import InceptionResnetV2FeatureExtractor
from mtl_ssl.backbones.mobilenet import MobileNetV1FeatureExtractor
from mtl_ssl.backbones.mobilenet import MobileNetV2FeatureExtractor
from mtl_ssl.backbones.resnet import ResNetFeatureExtractor

FEATURE_EXTRACTORS = {
    'faster_rcnn_resnet50_keras': functools.partial(ResNetFeatureExtractor, 50),
    'faster_rcnn_resnet101_keras': functools.partial(ResNetFeatureExtractor, 101),
    'faster_rcnn_resnet152_keras': functools.partial(ResNetFeatureExtractor, 152),
    'faster_rcnn_inception_resnet_v2_keras': InceptionResnetV2FeatureExtractor,
    'faster_rcnn_mobilenet_v1_keras': MobileNetV1FeatureExtractor,
    'faster_rcnn_mobilenet_v2_keras': MobileNetV2FeatureExtractor,
    'faster_rcnn_resnet50_fpn_keras': functools.partial(fpn.FpnFeatureExtractor, 'resnet50'),
    'faster_rcnn_resnet101_fpn_keras': functools.partial(fpn.FpnFeatureExtractor, 'resnet101'),
    'faster_rcnn_resnet152_fpn_keras': functools.partial(fpn.FpnFeatureExtractor, 'resnet152'),
    'faster_rcnn_mobilenet_v1_fpn_keras': functools.partial(fpn.FpnFeatureExtractor,
                                                            'mobilenet_v1'),
}

FPN_TYPES = ('faster_rcnn_resnet50_fpn_keras', 'faster_rcnn_resnet101_fpn_keras',
             'faster_rcnn_resnet152_fpn_keras', 'faster_rcnn_mobilenet_v1_fpn_keras')

_MOBILENETS = ('faster_rcnn_mobilenet_v1_keras', 'faster_rcnn_mobilenet_v2_keras')


def _field(config, name):
  """(present, value) of a proto field or plain attribute; unset proto2 fields give their
  declared default, unset proto3 scalars their zero value."""
  descriptor = getattr(config, 'DESCRIPTOR', None)
  if descriptor is not None:
    if name not in descriptor.fields_by_name:
      return False, None
    return True, getattr(config, name)
  if hasattr(config, name):
    return True, getattr(config, name)
  return False, None


def _is_set(config, name):
  """True when the proto field was written in the config (plain objects: when present)."""
  descriptor = getattr(config, 'DESCRIPTOR', None)
  if descriptor is None:
    return hasattr(config, name)
  field = descriptor.fields_by_name.get(name)
  if field is None:
    return False
  try:
    return config.HasField(name)
  except ValueError:  # proto3 scalar without presence: set when not the zero value
    return bool(getattr(config, name))


def _weight_decay(config):
  """L2 weight from conv_hyperparams.regularizer (OD API) or weight_decay (TF1 / plain)."""
  if _is_set(config, 'conv_hyperparams'):
    hyperparams = _field(config, 'conv_hyperparams')[1]
    if _is_set(hyperparams, 'regularizer'):
      regularizer = hyperparams.regularizer
      which = regularizer.WhichOneof('regularizer_oneof')
      if which == 'l2_regularizer':
        return float(regularizer.l2_regularizer.weight)
      if which is not None:
        raise ValueError(f'feature_extractor.conv_hyperparams.regularizer: only l2_regularizer '
                         f'is supported for the backbone, got {which}')
  present, value = _field(config, 'weight_decay')
  return float(value) if present and value else 0.0


def _fpn_kwargs(config):
  """OD API _build_faster_rcnn_keras_feature_extractor: FPN fields when present."""
  from mtl_ssl.builders import hyperparams_builder  # pylint: disable=g-import-not-at-top
  kwargs = {}
  if _is_set(config, 'conv_hyperparams'):
    kwargs['conv_hyperparams'] = hyperparams_builder.KerasLayerHyperparams(
        _field(config, 'conv_hyperparams')[1], 'model.faster_rcnn.feature_extractor.conv_hyperparams')
  else:
    kwargs['conv_hyperparams'] = None  # the extractor says what is missing
  kwargs['override_base_feature_extractor_hyperparams'] = bool(
      _field(config, 'override_base_feature_extractor_hyperparams')[1])
  if _is_set(config, 'fpn'):
    fpn_config = _field(config, 'fpn')[1]
    kwargs['fpn_min_level'] = int(fpn_config.min_level)
    kwargs['fpn_max_level'] = int(fpn_config.max_level)
    kwargs['additional_layer_depth'] = int(fpn_config.additional_layer_depth)
  present, multiple = _field(config, 'pad_to_multiple')
  if present:
    kwargs['pad_to_multiple'] = int(multiple)
  if _is_set(config, 'freeze_layer'):
    kwargs['freeze_layer'] = _field(config, 'freeze_layer')[1]
  if _field(config, 'type')[1] == 'faster_rcnn_mobilenet_v1_fpn_keras' and _is_set(
      config, 'depth_multiplier'):
    kwargs['depth_multiplier'] = float(_field(config, 'depth_multiplier')[1])
  return kwargs


def build(feature_extractor_config, is_training, first_stage_features_stride=16,
          batch_norm_trainable=None, **overrides):
  """Builds the feature extractor named by feature_extractor_config.type."""
  has_type, type_name = _field(feature_extractor_config, 'type')
  if not has_type or not type_name:
    raise ValueError('feature_extractor.type is required; one of ' +
                     ', '.join(sorted(FEATURE_EXTRACTORS)))
  if type_name not in FEATURE_EXTRACTORS:
    raise ValueError(f'unknown feature_extractor.type {type_name!r}; known types: ' +
                     ', '.join(sorted(FEATURE_EXTRACTORS)))
  kwargs = {}
  if _is_set(feature_extractor_config, 'first_stage_features_stride'):
    first_stage_features_stride = _field(feature_extractor_config,
                                         'first_stage_features_stride')[1]
  kwargs['first_stage_features_stride'] = first_stage_features_stride
  if batch_norm_trainable is None:
    present, value = _field(feature_extractor_config, 'batch_norm_trainable')
    batch_norm_trainable = bool(value) if present else False
  kwargs['batch_norm_trainable'] = batch_norm_trainable
  if type_name in FPN_TYPES:
    kwargs.update(_fpn_kwargs(feature_extractor_config))
    kwargs.update(overrides)
    return FEATURE_EXTRACTORS[type_name](is_training=is_training, **kwargs)
  weight_decay = _weight_decay(feature_extractor_config)
  if weight_decay:
    kwargs['weight_decay'] = weight_decay
  if 'num_frozen_blocks' not in overrides and _is_set(feature_extractor_config, 'freeze_layer'):
    kwargs['freeze_layer'] = _field(feature_extractor_config, 'freeze_layer')[1]
  if type_name in _MOBILENETS and _is_set(feature_extractor_config, 'depth_multiplier'):
    kwargs['depth_multiplier'] = float(_field(feature_extractor_config, 'depth_multiplier')[1])
  kwargs.update(overrides)
  return FEATURE_EXTRACTORS[type_name](is_training=is_training, **kwargs)


__all__ = ['ApplicationFeatureExtractor', 'FEATURE_EXTRACTORS', 'FPN_TYPES',
           'FrozenBatchNormalization',
           'InceptionResnetV2FeatureExtractor', 'MobileNetV1FeatureExtractor',
           'MobileNetV2FeatureExtractor', 'ResNetFeatureExtractor', 'build']
