"""Inception-ResNet-v2 (tf_keras.applications) split at stride 16 for Faster R-CNN.

F = block17_20_ac (after mixed_6a and the 20 block17 units; stride 16, 1088 channels).
Box classifier = mixed_7a + 10 block8 units + conv_7b (1536 channels).

As the OD API TF2 extractor (`align_feature_maps=True` for the first stage), every 'valid'
convolution / max-pool of the proposal model is rebuilt with 'same' padding, so F is
ceil(H/16) x ceil(W/16) and aligned with the anchors. The box classifier keeps Keras' 'valid'
padding, as the OD API (align_feature_maps=False there): mixed_7a maps a 17x17 crop
(the OD API IRv2 initial_crop_size) to 8x8, a 7x7 crop to 3x3, a 3x3 crop to 1x1.
`align_feature_maps=False` keeps the Keras application's padding everywhere.
"""

import tf_keras

from mtl_ssl.backbones import base
from mtl_ssl.backbones import graph

_SAME_PADDING_LAYERS = (tf_keras.layers.Conv2D, tf_keras.layers.MaxPooling2D,
                        tf_keras.layers.AveragePooling2D)


class InceptionResnetV2FeatureExtractor(base.ApplicationFeatureExtractor):
  """Faster R-CNN Inception-ResNet-v2 feature extractor."""

  preprocess_mode = 'tf'           # tf_keras.applications.inception_resnet_v2.preprocess_input
  default_num_frozen_blocks = 0
  proposal_output_layer = 'block17_20_ac'
  box_output_layer = 'conv_7b_ac'

  def __init__(self, is_training, align_feature_maps=True, **kwargs):
    self._align_feature_maps = bool(align_feature_maps)
    super().__init__(is_training, **kwargs)

  def _application(self, weights, include_top):
    return tf_keras.applications.InceptionResNetV2(
        weights=weights, include_top=include_top,
        input_shape=None if include_top else (None, None, 3))

  def _stage_ends(self, specs):
    # stem: everything the four mixed_5b branches have in common (up to the stride-8
    # max-pool, auto-named by Keras); block1: mixed_5b + block35 x10; block2: mixed_6a +
    # block17 x20.
    by_name = {spec.name: spec for spec in specs}
    branch_ancestors = [graph.ancestors(specs, name) for name in by_name['mixed_5b'].inbound]
    common = set.intersection(*branch_ancestors)
    stem_end = [spec.name for spec in specs if spec.name in common][-1]
    return [stem_end, 'block35_10_ac', self.proposal_output_layer]

  def _edit_proposal_config(self, spec, config):
    if (self._align_feature_maps and issubclass(spec.cls, _SAME_PADDING_LAYERS)
        and config.get('padding') == 'valid'):
      config['padding'] = 'same'
    return config
