"""The MTL add-on on an FPN Faster R-CNN (ResNet-50 FPN, levels 2..5, 256 px).

Windows are cropped from the level the OD API rule gives their size (like proposals); the
foreground head runs on `foreground_feature_level` only; the auxiliary heads own copies of the
FPN box classifier (the two FC layers); every loss trains the right variables, and
stop_gradient_for_aux_tasks keeps the auxiliary losses out of the pyramid.
"""
import types

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from mtl_ssl.builders import model_builder
from mtl_ssl.core import multilevel_crop
from mtl_ssl.mtl import heads as mtl_heads
from mtl_ssl.protos import mtl_pb2
from mtl_ssl.protos import model_pb2

NUM_CLASSES = 3
SIZE = 256
_INIT = 'initializer { truncated_normal_initializer { stddev: 0.01 } }'
_HEAD = f'mask_rcnn_box_predictor {{ fc_hyperparams {{ op: FC {_INIT} }} }}'
_MTL = f"""
mtl {{
  window: true closeness: true edgemask: true refine: true %(extra)s
  num_windows: 4 foreground_grid_size: 16
  window_class_loss_weight: 1.0 closeness_loss_weight: 0.3 edgemask_loss_weight: 1.0
  refined_classification_loss_weight: 1.0 refine_residue: true
  refiner_fc_hyperparams {{ op: FC {_INIT} }}
  window_box_predictor {{ {_HEAD} }}
  closeness_box_predictor {{ {_HEAD} }}
  edgemask_predictor {{ kernel_size: 1 conv_hyperparams {{ op: CONV {_INIT} }} }}
}}
faster_rcnn {{
  num_classes: {NUM_CLASSES}
  image_resizer {{ fixed_shape_resizer {{ height: {SIZE} width: {SIZE} }} }}
  feature_extractor {{ type: 'faster_rcnn_resnet50_fpn_keras'
    fpn {{ min_level: 2 max_level: 5 additional_layer_depth: 16 }}
    conv_hyperparams {{ {_INIT} batch_norm {{ scale: true }} }} }}
  first_stage_anchor_generator {{ multiscale_anchor_generator {{ min_level: 2 max_level: 5
    anchor_scale: 4.0 aspect_ratios: [1.0] scales_per_octave: 1 normalize_coordinates: false }} }}
  first_stage_box_predictor_conv_hyperparams {{ op: CONV {_INIT} }}
  first_stage_box_predictor_depth: 16
  first_stage_max_proposals: 16
  initial_crop_size: 4 maxpool_kernel_size: 1 maxpool_stride: 1
  second_stage_batch_size: 8
  second_stage_box_predictor {{ {_HEAD} }}
  second_stage_post_processing {{ batch_non_max_suppression {{ score_threshold: 0.0
    iou_threshold: 0.5 max_detections_per_class: 5 max_total_detections: 10 }}
    score_converter: SOFTMAX }}
}}
"""
GT_BOXES = [[0.1, 0.1, 0.5, 0.4], [0.45, 0.5, 0.95, 0.9]]
SMALL_WINDOWS = [[0.0, 0.0, 0.2, 0.2], [0.3, 0.3, 0.5, 0.55], [0.6, 0.1, 0.9, 0.35],
                 [0.1, 0.6, 0.35, 0.9]]  # 51-64 px -> P2
LARGE_WINDOWS = [[0.0, 0.0, 1.0, 1.0], [0.05, 0.0, 0.95, 1.0], [0.0, 0.1, 1.0, 0.95],
                 [0.0, 0.0, 0.9, 0.9]]  # 230-256 px -> P4


def _build(extra=''):
  cfg = text_format.Parse(_MTL % {'extra': extra}, model_pb2.DetectionModel())
  return model_builder.build(cfg, is_training=True)


@pytest.fixture(scope='module')
def model():
  return _build()


def _provide(model, windows):
  labels = np.full((len(windows), NUM_CLASSES + 1), 1.0 / (NUM_CLASSES + 1), np.float32)
  model.provide_groundtruth([tf.constant(GT_BOXES)], [tf.one_hot([0, 2], NUM_CLASSES)],
                            groundtruth_mtl_windows_list=[tf.constant(windows)],
                            groundtruth_mtl_window_labels_list=[tf.constant(labels)])


def _images():
  return tf.random.stateless_uniform([1, SIZE, SIZE, 3], [5, 6], 0.0, 255.0)


def _grads(model, windows, loss_name):
  """Gradient of one named loss w.r.t. every trainable variable, by variable name."""
  images, shapes = model.preprocess(_images())
  _provide(model, windows)
  with tf.GradientTape() as tape:
    pred = model.predict(images, shapes, training=True)
    losses = model.loss(pred, shapes)
  variables = model.trainable_variables
  grads = tape.gradient(losses[loss_name], variables)
  return [(v, 0.0 if g is None else float(tf.reduce_sum(tf.abs(g))))
          for v, g in zip(variables, grads)], pred, losses


def _total(grads, part):
  """Summed |gradient| of the variables whose name contains `part` (a string), or of the
  variables of `part` (a Keras model / layer: the FC copies share layer names)."""
  if isinstance(part, str):
    found = [value for v, value in grads if part in v.name]
  else:
    own = {id(v) for v in part.trainable_variables}
    found = [value for v, value in grads if id(v) in own]
  assert found, part
  return sum(found)


def test_all_losses_and_window_crops_come_from_the_windows_levels(model):
  images, shapes = model.preprocess(_images())
  windows = SMALL_WINDOWS[:2] + LARGE_WINDOWS[:2]
  _provide(model, windows)
  pred = model.predict(images, shapes, training=True)
  losses = model.loss(pred, shapes)
  assert {k for k in losses if k.startswith('Loss/MTL/')} == {
      mtl_heads.WINDOW_LOSS, mtl_heads.CLOSENESS_LOSS, mtl_heads.FOREGROUND_LOSS,
      mtl_heads.REFINED_LOSS}
  assert all(np.isfinite(float(v)) for v in losses.values())
  assert pred['mtl_window_logits'].shape == (1, 4, NUM_CLASSES + 1)
  assert pred['mtl_closeness_logits'].shape == (1, 8, NUM_CLASSES + 1)
  assert pred['mtl_foreground_logits'].shape == (1, 16, 16, 2)
  assert pred['mtl_refined_class_logits'].shape == (1, 8, NUM_CLASSES + 1)
  # the window logits are the window head on each window cropped from ITS level
  maps = pred['rpn_features_to_crop']
  levels = multilevel_crop.fpn_feature_levels(tf.constant([windows]), SIZE, SIZE, 4).numpy()
  assert levels.tolist() == [[0, 0, 2, 2]]
  head = model.mtl_heads.window_head
  crops = multilevel_crop.multilevel_crop_and_pool(maps, tf.constant([windows]), 4, 1, 1, 2)
  want = head.logits_from_features(head.features(crops, training=True), training=True)
  np.testing.assert_allclose(pred['mtl_window_logits'].numpy()[0], want.numpy(), rtol=1e-4,
                             atol=1e-5)
  # the auxiliary heads own copies of the FPN box classifier (flatten + 2 FC), not a block 4
  assert [layer.name for layer in head.stage.layers] == ['flatten', 'fc1', 'fc1_batchnorm',
                                                         'fc2', 'to_map']
  assert head.stage is not model.mtl_heads.closeness_head.stage
  det = model.postprocess(pred, shapes)
  assert det['detection_boxes'].shape == (1, 10, 4)


def test_window_loss_reaches_only_the_levels_of_its_windows(model):
  large, _, _ = _grads(model, LARGE_WINDOWS, mtl_heads.WINDOW_LOSS)
  # P4 windows: P4's smoothing conv and everything above it learn; P2 / P3 smoothing does not
  assert _total(large, 'smoothing_3_conv/kernel') > 0.0
  assert _total(large, 'smoothing_2_conv/kernel') == 0.0
  assert _total(large, 'smoothing_1_conv/kernel') == 0.0
  heads = model.mtl_heads
  assert _total(large, heads.window_head.stage) > 0.0
  assert _total(large, model._box_classifier_model) == 0.0  # pylint: disable=protected-access
  small, _, _ = _grads(model, SMALL_WINDOWS, mtl_heads.WINDOW_LOSS)
  assert _total(small, 'smoothing_1_conv/kernel') > 0.0


def test_foreground_loss_trains_its_level_and_the_edge_mask_conv(model):
  grads, _, _ = _grads(model, SMALL_WINDOWS, mtl_heads.FOREGROUND_LOSS)
  assert _total(grads, 'EdgeMaskPredictor') > 0.0
  assert _total(grads, 'smoothing_3_conv/kernel') > 0.0   # level 4 (the default)
  assert _total(grads, 'smoothing_2_conv/kernel') == 0.0  # finer levels do not feed P4
  assert _total(grads, 'smoothing_1_conv/kernel') == 0.0
  assert _total(grads, 'conv1_conv/kernel') > 0.0


def test_closeness_logits_and_refined_loss_train_their_own_heads(model):
  # (the closeness LOSS needs positive proposals, which random weights rarely give: its
  # logits stand in for it here; the loss itself is tested on C4, same code)
  images, shapes = model.preprocess(_images())
  _provide(model, SMALL_WINDOWS)
  with tf.GradientTape() as tape:
    pred = model.predict(images, shapes, training=True)
    proxy = tf.reduce_sum(pred['mtl_closeness_logits'])
  variables = model.trainable_variables
  grads = [(v, 0.0 if g is None else float(tf.reduce_sum(tf.abs(g))))
           for v, g in zip(variables, tape.gradient(proxy, variables))]
  heads = model.mtl_heads
  assert _total(grads, heads.closeness_head.stage) > 0.0
  # the proposals' crops: the pyramid (their level depends on the random proposals' sizes)
  assert _total(grads, 'projection_4/kernel') > 0.0
  assert _total(grads, heads.window_head) == 0.0
  assert _total(grads, model._box_classifier_model) == 0.0  # pylint: disable=protected-access
  refined, _, _ = _grads(model, SMALL_WINDOWS, mtl_heads.REFINED_LOSS)
  assert _total(refined, 'MTLClassRefiner') > 0.0
  # the refiner's inputs are cut: the context crops do not train the window head's copy; the
  # residual z trains the main box classifier (as on C4)
  assert _total(refined, heads.window_head) == 0.0
  assert _total(refined, heads.closeness_head) == 0.0
  assert _total(refined, model._box_classifier_model) > 0.0  # pylint: disable=protected-access


def test_stop_gradient_for_aux_tasks_keeps_the_pyramid_out():
  model = _build('stop_gradient_for_aux_tasks: true foreground_feature_level: 2')
  for loss in (mtl_heads.WINDOW_LOSS, mtl_heads.FOREGROUND_LOSS):
    grads, _, _ = _grads(model, SMALL_WINDOWS, loss)
    assert _total(grads, 'smoothing_1_conv/kernel') == 0.0, loss
    assert _total(grads, 'conv1_conv/kernel') == 0.0, loss
    assert _total(grads, 'projection_4/kernel') == 0.0, loss
  grads, pred, _ = _grads(model, SMALL_WINDOWS, mtl_heads.FOREGROUND_LOSS)
  assert _total(grads, 'EdgeMaskPredictor') > 0.0
  assert pred['mtl_foreground_logits'].shape == (1, 16, 16, 2)


def test_foreground_feature_level_must_exist():
  cfg = mtl_pb2.MTL(edgemask=True, edgemask_loss_weight=1.0, foreground_feature_level=6)
  extractor = types.SimpleNamespace()
  with pytest.raises(ValueError, match='foreground_feature_level: 6 is not one of'):
    mtl_heads.MTLHeads(cfg, NUM_CLASSES, extractor, None, None, True, feature_levels=(2, 3, 4, 5))
  cfg.foreground_feature_level = 3
  with pytest.raises(ValueError, match='foreground_feature_level: 3 needs a feature pyramid'):
    mtl_heads.MTLHeads(cfg, NUM_CLASSES, extractor, None, None, True)
  cfg.foreground_feature_level = 4  # the C4 map is level 4
  assert mtl_heads.MTLHeads(cfg, NUM_CLASSES, extractor, None, None, True).foreground_head
