"""Every feature-extractor type builds inside a Faster R-CNN at a small size
and gives finite losses and detections (one test per type)."""
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from mtl_ssl.backbones import FEATURE_EXTRACTORS
from mtl_ssl.backbones import FPN_TYPES
from mtl_ssl.builders import model_builder
from mtl_ssl.protos import model_pb2

_CONFIG = """
faster_rcnn {
  num_classes: 2
  image_resizer { fixed_shape_resizer { height: %(size)d width: %(size)d } }
  feature_extractor { type: '%(type)s' %(extractor)s }
  first_stage_anchor_generator { %(anchors)s }
  first_stage_box_predictor_depth: 8
  first_stage_minibatch_size: 16
  first_stage_max_proposals: 4
  initial_crop_size: %(crop)d maxpool_kernel_size: %(pool)d maxpool_stride: %(pool)d
  second_stage_box_predictor { mask_rcnn_box_predictor { } }
  second_stage_batch_size: 4
  second_stage_post_processing { score_converter: SOFTMAX
    batch_non_max_suppression { max_detections_per_class: 3 max_total_detections: 3 } }
}
"""
_C4_ANCHORS = 'grid_anchor_generator { scales: [0.125, 0.25] aspect_ratios: [1.0] }'
_FPN_ANCHORS = ('multiscale_anchor_generator { min_level: 3 max_level: 5 anchor_scale: 2.0 '
                'aspect_ratios: [1.0] scales_per_octave: 1 normalize_coordinates: false }')
_FPN_EXTRACTOR = ('fpn { min_level: 3 max_level: 5 additional_layer_depth: 16 } '
                  'conv_hyperparams { batch_norm { } }')


# ResNet-101/152 FPN: built and trained one step from the OD API sample configs in
# tests/meta_arch/test_fpn_model.py (the same backbones as their C4 types, plus the FPN).
_TYPES = sorted(set(FEATURE_EXTRACTORS) - {'faster_rcnn_resnet101_fpn_keras',
                                           'faster_rcnn_resnet152_fpn_keras'})


@pytest.mark.parametrize('type_name', _TYPES)
def test_backbone_type_builds_and_gives_finite_losses(type_name):
  inception = 'inception' in type_name
  # Inception-ResNet-v2's reduction block needs a crop of >= 7 (OD API: 17)
  size = 96 if inception else 64
  crop, pool = (7, 1) if inception else (4, 2)
  fpn = type_name in FPN_TYPES
  cfg = text_format.Parse(_CONFIG % {'size': size, 'type': type_name,
                                     'crop': crop, 'pool': pool,
                                     'extractor': _FPN_EXTRACTOR if fpn else '',
                                     'anchors': _FPN_ANCHORS if fpn else _C4_ANCHORS},
                          model_pb2.DetectionModel())
  overrides = {'depth_multiplier': 0.25} if 'mobilenet' in type_name else {}
  model = model_builder.build(cfg, is_training=True, **overrides)
  images, shapes = model.preprocess(tf.random.uniform([1, size, size, 3], 0, 255))
  model.provide_groundtruth([tf.constant([[0.2, 0.1, 0.7, 0.6]])],
                            [tf.one_hot([1], 2)])
  pred = model.predict(images, shapes, training=True)
  if fpn:  # levels 3..5 (strides 8, 16, 32)
    assert [f.shape[1] for f in pred['rpn_features_to_crop']] == [size // 8, size // 16,
                                                                  size // 32]
  else:
    assert pred['rpn_features_to_crop'].shape[1] == -(-size // 16)
  losses = model.loss(pred, shapes)
  assert len(losses) == 4
  assert all(np.isfinite(float(v)) for v in losses.values()), losses
  det = model.postprocess(pred, shapes)
  assert det['detection_boxes'].shape.as_list() == [1, 3, 4]
  assert np.all(np.isfinite(det['detection_scores'].numpy()))
