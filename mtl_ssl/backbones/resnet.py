"""ResNet-50/101/152 (v1, tf_keras.applications) split at conv4_x for Faster R-CNN C4.

F = conv4_x output (stride 16, 1024 channels); box classifier = conv5_x (2048 channels).

Stride of the box classifier's first block (`box_classifier_stride`):
  1 (default) as the paper's TF1 code (OD API TF1 resnet_v1 extractor: block4 with
    stride 1), so a 7x7 crop stays 7x7 and R-FCN can run block4 on the whole F at stride 16;
  2 as the OD API TF2 Keras extractor, which reuses the application's conv5 unchanged
    (a 14x14 crop -> 7x7, a 7x7 crop -> 4x4).
The kernels are the same either way (conv5_block1 1x1 convs), so ImageNet weights fit both.
"""

import tf_keras

from mtl_ssl.backbones import base

_DEPTHS = {
    50: {'conv3': 4, 'conv4': 6, 'app': tf_keras.applications.ResNet50},
    101: {'conv3': 4, 'conv4': 23, 'app': tf_keras.applications.ResNet101},
    152: {'conv3': 8, 'conv4': 36, 'app': tf_keras.applications.ResNet152},
}
_STRIDED_BOX_LAYERS = ('conv5_block1_1_conv', 'conv5_block1_0_conv')


class ResNetFeatureExtractor(base.ApplicationFeatureExtractor):
  """Faster R-CNN ResNet v1 C4 feature extractor (tf_keras.applications weights)."""

  preprocess_mode = 'caffe'        # tf_keras.applications.resnet.preprocess_input
  default_num_frozen_blocks = 1    # paper: conv1 and block1 frozen
  box_output_layer = 'conv5_block3_out'

  def __init__(self, depth, is_training, box_classifier_stride=1, **kwargs):
    if depth not in _DEPTHS:
      raise ValueError(f'ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}')
    if box_classifier_stride not in (1, 2):
      raise ValueError(f'box_classifier_stride must be 1 or 2, got {box_classifier_stride}')
    self._depth = depth
    self._blocks = _DEPTHS[depth]
    self._box_classifier_stride = box_classifier_stride
    self.proposal_output_layer = f'conv4_block{self._blocks["conv4"]}_out'
    super().__init__(is_training, **kwargs)

  def _application(self, weights, include_top):
    return self._blocks['app'](weights=weights, include_top=include_top,
                               input_shape=None if include_top else (None, None, 3))

  def _stage_ends(self, specs):
    del specs
    return ['pool1_pool', 'conv2_block3_out', f'conv3_block{self._blocks["conv3"]}_out',
            self.proposal_output_layer]

  def _edit_box_config(self, spec, config):
    if spec.name in _STRIDED_BOX_LAYERS:
      config['strides'] = (self._box_classifier_stride,) * 2
    return config
