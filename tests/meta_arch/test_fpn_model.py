"""FPN Faster R-CNN: the OD API's FPN sample configs build and train a step; the detector pads to
32, runs one RPN head per level over the multiscale anchors and crops each RoI from its level."""
import os
import pathlib
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from mtl_ssl.builders import model_builder
from mtl_ssl.builders import optimizer_builder
from mtl_ssl.config import config_util
from mtl_ssl.config import validation
from mtl_ssl.core import multilevel_crop
from mtl_ssl.protos import model_pb2

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'config'))
import odapi_sample_configs as samples  # pylint: disable=g-import-not-at-top,wrong-import-position

FAST = os.environ.get('MTL_SSL_FAST_TESTS') == '1'
# The only change to the samples besides the input paths: 128 px instead of 640, for CPU speed.
SMALL_INPUT = ('model { faster_rcnn { image_resizer { keep_aspect_ratio_resizer { '
               'min_dimension: 128 max_dimension: 128 } } } }')


def _sample_configs(depth, tmp_path):
  text = samples.with_real_paths(samples.odapi_fpn_sample(depth), tmp_path)
  pipeline = config_util.parse_pipeline_text(text, f'r{depth}_fpn_sample')
  config_util.merge_text(SMALL_INPUT, pipeline, '--config_override')
  return config_util.create_configs_from_pipeline_proto(pipeline)


def _groundtruth(num_classes):
  boxes = [tf.constant([[0.1, 0.1, 0.6, 0.5], [0.5, 0.4, 0.95, 0.95]]),
           tf.constant([[0.2, 0.3, 0.4, 0.6]])]
  classes = [tf.one_hot([3, 7], num_classes), tf.one_hot([1], num_classes)]
  return boxes, classes


@pytest.mark.parametrize('depth', [
    50,
    pytest.param(101, marks=pytest.mark.skipif(FAST, reason='MTL_SSL_FAST_TESTS=1: big backbone')),
    pytest.param(152, marks=pytest.mark.skipif(FAST, reason='MTL_SSL_FAST_TESTS=1: big backbone')),
])
def test_odapi_fpn_sample_config_builds_and_trains_one_step(depth, tmp_path):
  configs = _sample_configs(depth, tmp_path)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    ignored = validation.validate(configs, mode='train')  # no error; TPU options are ignored
  assert any('use_bfloat16' in text for text in ignored)
  model = model_builder.build(configs['model'], is_training=True)
  optimizer, _ = optimizer_builder.build(configs['train_config'].optimizer)
  images, shapes = model.preprocess(tf.random.uniform([2, 100, 80, 3], 0, 255, seed=1))
  assert shapes.numpy().tolist() == [[128, 102, 3]] * 2  # keep-aspect 100x80 -> 128x102
  boxes, classes = _groundtruth(90)
  model.provide_groundtruth(boxes, classes)
  with tf.GradientTape() as tape:
    pred = model.predict(images, shapes, training=True)
    losses = model.loss(pred, shapes)
    total = tf.add_n(list(losses.values()) + model.regularization_losses())
  variables = model.trainable_variables
  gradients = tape.gradient(total, variables)
  assert [v.name for g, v in zip(gradients, variables) if g is None] == []
  before = [v.numpy() for v in variables]
  optimizer.apply_gradients(zip(gradients, variables))
  changed = {v.name for b, v in zip(before, variables) if not np.array_equal(b, v.numpy())}
  # every part trains: backbone stem, FPN top-down and extra level, RPN, box classifier FCs
  # (only class-specific box outputs of absent classes may keep a zero gradient)
  for part in ('conv1_conv/kernel', 'conv5_block3_3_conv/kernel', 'projection_4/kernel',
               'smoothing_1_conv/kernel', 'bottom_up_block5_conv/kernel', 'RPNConv/kernel',
               'fc1/kernel', 'fc1_batchnorm/gamma', 'fc2/kernel', 'ClassPredictor/kernel'):
    assert any(part in name for name in changed), part
  assert len(changed) > 0.9 * len(variables)
  assert sorted(losses) == sorted(['Loss/RPNLoss/localization_loss',
                                   'Loss/RPNLoss/objectness_loss',
                                   'Loss/BoxClassifierLoss/localization_loss',
                                   'Loss/BoxClassifierLoss/classification_loss'])
  assert all(np.isfinite(float(v)) for v in losses.values())
  # levels 2..6 of 256 channels on the 128 x 128 (padded) image; 6 anchors per location
  maps = pred['rpn_features_to_crop']
  assert [tuple(m.shape) for m in maps] == [(2, 128 // 2 ** l, 128 // 2 ** l, 256)
                                            for l in range(2, 7)]
  assert pred['anchors'].shape[-2] == sum(6 * (128 // 2 ** l) ** 2 for l in range(2, 7))
  assert pred['rpn_box_encodings'].shape[1] == pred['anchors'].shape[-2]
  # crop 14 + 2x2 max-pool -> 7 x 7 x 256 RoIs -> FC head [N, 1, 1, 1024]; 64 sampled per image
  assert tuple(pred['proposal_crops'].shape) == (128, 7, 7, 256)
  assert tuple(pred['box_classifier_features'].shape) == (128, 1, 1, 1024)
  # the backbone's L2 from conv_hyperparams (override): every conv of the ResNet and the FPN
  num_resnet_convs = {50: 53, 101: 104, 152: 155}[depth]
  assert len(model.regularization_losses()) == num_resnet_convs + 8


def test_fpn_detector_pads_images_to_32_and_crops_each_roi_from_its_level(tmp_path):
  configs = _sample_configs(50, tmp_path)
  model = model_builder.build(configs['model'], is_training=False)
  images = tf.random.uniform([1, 100, 70, 3], -100, 100, seed=2)  # already preprocessed
  shapes = tf.constant([[100, 70, 3]])
  pred = model.predict(images, shapes)
  assert pred['image_shape'].numpy().tolist() == [1, 128, 96, 3]
  maps = pred['rpn_features_to_crop']
  assert [tuple(m.shape[1:3]) for m in maps] == [(32, 24), (16, 12), (8, 6), (4, 3), (2, 2)]
  # proposals are clipped to the TRUE image, never the padding
  boxes = pred['proposal_boxes'].numpy()[0, :int(pred['num_proposals'][0])]
  assert boxes[:, 2].max() <= 100.0 + 1e-3 and boxes[:, 3].max() <= 70.0 + 1e-3
  # the box-classifier input is each proposal cropped from the level the OD API rule picks
  want = multilevel_crop.multilevel_crop_and_pool(maps, pred['proposal_boxes_normalized'], 14,
                                                  2, 2, min_level=2)
  np.testing.assert_allclose(pred['proposal_crops'].numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
  det = model.postprocess(pred, shapes)
  assert det['detection_boxes'].shape.as_list() == [1, 300, 4]
  assert np.all(np.isfinite(det['detection_scores'].numpy()))


_SMALL = """
faster_rcnn {
  num_classes: 2
  image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
  feature_extractor { type: 'faster_rcnn_resnet50_fpn_keras' %(fpn)s
    conv_hyperparams { batch_norm { } } }
  first_stage_anchor_generator { %(anchors)s }
  first_stage_max_proposals: 8
  initial_crop_size: 4 maxpool_kernel_size: 1 maxpool_stride: 1
  second_stage_box_predictor { mask_rcnn_box_predictor { } }
  second_stage_batch_size: 4
  second_stage_post_processing { score_converter: SOFTMAX
    batch_non_max_suppression { max_detections_per_class: 3 max_total_detections: 3 } }
}
"""


@pytest.mark.parametrize('fpn, anchors, words', [
    ('fpn { min_level: 3 max_level: 6 }',
     'multiscale_anchor_generator { min_level: 2 max_level: 6 aspect_ratios: [1.0] '
     'normalize_coordinates: false }', 'levels 2..6 differ from feature_extractor.fpn levels 3..6'),
    ('', 'grid_anchor_generator { }', 'use a multiscale_anchor_generator'),
])
def test_anchor_levels_must_match_the_pyramid(fpn, anchors, words):
  cfg = text_format.Parse(_SMALL % {'fpn': fpn, 'anchors': anchors}, model_pb2.DetectionModel())
  with pytest.raises(ValueError, match=words):
    model_builder.build(cfg, is_training=True)


def test_fpn_needs_conv_hyperparams_and_rejects_rfcn():
  cfg = text_format.Parse(_SMALL % {'fpn': '', 'anchors': (
      'multiscale_anchor_generator { min_level: 2 max_level: 6 aspect_ratios: [1.0] '
      'normalize_coordinates: false }')}, model_pb2.DetectionModel())
  cfg.faster_rcnn.feature_extractor.ClearField('conv_hyperparams')
  with pytest.raises(ValueError, match='conv_hyperparams is required'):
    model_builder.build(cfg, is_training=True)
  cfg.faster_rcnn.second_stage_box_predictor.rfcn_box_predictor.depth = 8
  with pytest.raises(ValueError, match='rfcn_box_predictor needs a C4'):
    model_builder.build(cfg, is_training=True)
