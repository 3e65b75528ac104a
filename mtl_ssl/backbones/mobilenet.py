"""MobileNet v1 / v2 (tf_keras.applications) split at stride 16 for Faster R-CNN.

MobileNet v1 (the paper's MobileNet): F = conv_pw_11 output (stride 16, 512*alpha channels);
  box classifier = conv_dw_12 (stride 2) .. conv_pw_13 (1024*alpha channels), as the TF1
  faster_rcnn_mobilenet_v1 extractor of the original code.
MobileNet v2: F = block_12 output (stride 16, 96*alpha rounded to 8); box classifier =
  block_13 (stride 2) .. block_16 + Conv_1 (1280 channels, more when alpha > 1).

`depth_multiplier` is the OD API width multiplier (Keras `alpha`); ImageNet weights exist
for alpha in {0.25, 0.5, 0.75, 1.0} (v1) and {0.35, 0.5, 0.75, 1.0, 1.3, 1.4} (v2); any
positive value builds (e.g. 0.25 for fast tests). There is no min_depth: Keras truncates
int(filters * alpha). Stride-2 layers keep Keras' explicit ((0,1),(0,1)) zero padding, so F
is exactly H/16 for H a multiple of 16.
"""

import tf_keras

from mtl_ssl.backbones import base


class _MobileNetBase(base.ApplicationFeatureExtractor):
  preprocess_mode = 'tf'           # tf_keras.applications.mobilenet*.preprocess_input
  default_num_frozen_blocks = 0

  def __init__(self, is_training, depth_multiplier=1.0, **kwargs):
    if not depth_multiplier > 0:
      raise ValueError(f'feature_extractor.depth_multiplier must be > 0, got {depth_multiplier}')
    self._alpha = float(depth_multiplier)
    super().__init__(is_training, **kwargs)

  @property
  def depth_multiplier(self):
    return self._alpha


class MobileNetV1FeatureExtractor(_MobileNetBase):
  """Faster R-CNN MobileNet v1 feature extractor."""

  proposal_output_layer = 'conv_pw_11_relu'
  box_output_layer = 'conv_pw_13_relu'

  def _application(self, weights, include_top):
    return tf_keras.applications.MobileNet(
        weights=weights, include_top=include_top, alpha=self._alpha,
        input_shape=None if include_top else (None, None, 3))

  def _stage_ends(self, specs):
    del specs
    # stem: conv1 + unit 1 (stride 2); blocks: units 2-3 (4), 4-5 (8), 6-11 (16).
    return ['conv_pw_1_relu', 'conv_pw_3_relu', 'conv_pw_5_relu', self.proposal_output_layer]


class MobileNetV2FeatureExtractor(_MobileNetBase):
  """Faster R-CNN MobileNet v2 feature extractor."""

  proposal_output_layer = 'block_12_add'
  box_output_layer = 'out_relu'

  def _application(self, weights, include_top):
    return tf_keras.applications.MobileNetV2(
        weights=weights, include_top=include_top, alpha=self._alpha,
        input_shape=None if include_top else (None, None, 3))

  def _stage_ends(self, specs):
    del specs
    # stem: Conv1 + expanded_conv (stride 2); blocks: 1-2 (4), 3-5 (8), 6-12 (16).
    return ['expanded_conv_project_BN', 'block_2_add', 'block_5_add', self.proposal_output_layer]
