"""What the Faster R-CNN detector does differently on a feature pyramid (FPN), in one place.

The detector asks these helpers and stays the same code for C4 (one map F) and FPN (a list of
maps, finest first, from an extractor with `is_multilevel`):
- `pad_images`: FPN images are zero-padded (bottom/right) to a multiple of the extractor's
  `pad_to_multiple` (OD API default 32), so every level covers exactly the padded image; the
  padded image is the frame of the crops and the MTL heads (the OD API pads inside its
  extractor instead, which shifts crops by up to 31 px on sizes that are not multiples of 32);
  anchors are still checked against each image's true extent (rpn.anchor_validity).
- `make_rpn_head`: C4 -> rpn.RPNHead; FPN -> MultiLevelRPNHead, as the OD API's Keras Faster
  R-CNN: ONE shared RPNConv (+ batch norm, relu6) applied to every level, then per-level 1x1
  box and objectness convs (its ConvolutionalBoxPredictor makes one head per feature map);
  predictions are concatenated over levels in the anchors' order.
- `generate_anchors`: GridAnchorGenerator on F, MultiscaleGridAnchorGenerator on the levels.
- `make_crop_fn`: crop_ops.crop_and_pool on F; on a pyramid, multilevel_crop_and_pool, which
  assigns each box to a level by the OD API rule (core/multilevel_crop.py). The MTL heads get
  the same crop_fn, so windows, context boxes and closeness RoIs are assigned like proposals.
"""
import functools

import tensorflow as tf
import tf_keras

from mtl_ssl.core import crop_ops
from mtl_ssl.core import multilevel_crop
from mtl_ssl.meta_arch import rpn


def is_multilevel(feature_extractor):
  return bool(getattr(feature_extractor, 'is_multilevel', False))


def pad_images(images, feature_extractor):
  """Zero-pads images [B, H, W, 3] at the bottom/right to multiples of pad_to_multiple."""
  multiple = int(getattr(feature_extractor, 'pad_to_multiple', 1) or 1)
  if not is_multilevel(feature_extractor) or multiple <= 1:
    return images
  shape = tf.shape(images)
  pad_h = (-shape[1]) % multiple
  pad_w = (-shape[2]) % multiple
  padded = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
  static = images.shape.as_list()
  padded.set_shape([static[0]] + [None if d is None else -(-d // multiple) * multiple
                                  for d in static[1:3]] + [static[3]])
  return padded


def check_levels(anchor_generator, feature_extractor):
  """The anchors must be made for exactly the extractor's levels (error names the fields)."""
  if not is_multilevel(feature_extractor):
    if hasattr(anchor_generator, 'level_generators'):
      raise ValueError('model.faster_rcnn.first_stage_anchor_generator: a '
                       'multiscale_anchor_generator needs an FPN feature extractor '
                       '(faster_rcnn_resnet*_fpn_keras); this one gives one feature map')
    return
  if not hasattr(anchor_generator, 'level_generators'):
    raise ValueError('model.faster_rcnn.first_stage_anchor_generator: the FPN feature extractor '
                     'gives levels %d..%d; use a multiscale_anchor_generator with those levels'
                     % (feature_extractor.min_level, feature_extractor.max_level))
  if (anchor_generator.min_level, anchor_generator.max_level) != (
      feature_extractor.min_level, feature_extractor.max_level):
    raise ValueError('model.faster_rcnn: multiscale_anchor_generator levels %d..%d differ from '
                     'feature_extractor.fpn levels %d..%d' % (
                         anchor_generator.min_level, anchor_generator.max_level,
                         feature_extractor.min_level, feature_extractor.max_level))


class MultiLevelRPNHead(tf_keras.layers.Layer):
  """[P_l] -> (box_encodings [B, sum h*w*A, 4], objectness [B, sum h*w*A, 2], [rpn features])."""

  def __init__(self, num_levels, num_anchors_per_location, depth, kernel_size,
               conv_hyperparams, atrous_rate=1, box_code_size=4,
               name='FirstStageBoxPredictor', **kwargs):
    super().__init__(name=name, **kwargs)
    self._num_anchors = int(num_anchors_per_location)
    self._code_size = int(box_code_size)
    self.rpn_conv = tf_keras.layers.Conv2D(
        depth, kernel_size, padding='same', dilation_rate=atrous_rate, name='RPNConv',
        **conv_hyperparams.params())
    self.rpn_batch_norm = conv_hyperparams.build_batch_norm('RPNBatchNorm')
    self.box_encoders = [tf_keras.layers.Conv2D(
        self._num_anchors * self._code_size, 1, name='BoxEncodingPredictor_%d' % level,
        **conv_hyperparams.params(use_bias=True)) for level in range(num_levels)]
    self.class_predictors = [tf_keras.layers.Conv2D(
        self._num_anchors * 2, 1, name='ClassPredictor_%d' % level,
        **conv_hyperparams.params(use_bias=True)) for level in range(num_levels)]

  def call(self, features, training=None):
    if len(features) != len(self.box_encoders):
      raise ValueError('MultiLevelRPNHead has %d levels, got %d feature maps' %
                       (len(self.box_encoders), len(features)))
    encodings, objectness, nets = [], [], []
    for level, feature in enumerate(features):
      net = self.rpn_conv(feature)
      if self.rpn_batch_norm is not None:
        net = self.rpn_batch_norm(net, training=training)
      net = tf.nn.relu6(net)
      batch = tf.shape(feature)[0]
      encodings.append(tf.reshape(self.box_encoders[level](net), [batch, -1, self._code_size]))
      objectness.append(tf.reshape(self.class_predictors[level](net), [batch, -1, 2]))
      nets.append(net)
    return tf.concat(encodings, 1), tf.concat(objectness, 1), nets


def make_rpn_head(feature_extractor, anchor_generator, depth, kernel_size, conv_hyperparams,
                  atrous_rate, compute_dtype='float32'):
  """compute_dtype (train_config.use_bfloat16): the C4 RPN conv's; the FPN head stays float32."""
  if is_multilevel(feature_extractor):
    return MultiLevelRPNHead(anchor_generator.num_levels,
                             anchor_generator.num_anchors_per_location, depth, kernel_size,
                             conv_hyperparams, atrous_rate=atrous_rate)
  return rpn.RPNHead(anchor_generator.num_anchors_per_location, depth, kernel_size,
                     conv_hyperparams, atrous_rate=atrous_rate, compute_dtype=compute_dtype)


def _static_or_dynamic_hw(feature):
  shape = tf.shape(feature)
  height = feature.shape[1] if feature.shape[1] is not None else shape[1]
  width = feature.shape[2] if feature.shape[2] is not None else shape[2]
  return height, width


def generate_anchors(anchor_generator, features):
  """Anchors [A, 4] (absolute pixels) for F or for every pyramid level, in the RPN's order."""
  if isinstance(features, (list, tuple)):
    return anchor_generator.generate([_static_or_dynamic_hw(f) for f in features])
  return anchor_generator.generate(*_static_or_dynamic_hw(features))


def make_crop_fn(feature_extractor, crop_size, pool_kernel, pool_stride):
  """crop_fn(features, boxes normalized w.r.t. the padded image) -> [B * K, k, k, c]."""
  if is_multilevel(feature_extractor):
    return functools.partial(
        multilevel_crop.multilevel_crop_and_pool, crop_size=crop_size, pool_kernel=pool_kernel,
        pool_stride=pool_stride, min_level=feature_extractor.min_level)
  return functools.partial(crop_ops.crop_and_pool, crop_size=crop_size, pool_kernel=pool_kernel,
                           pool_stride=pool_stride)
