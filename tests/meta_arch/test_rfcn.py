"""R-FCN: selected by rfcn_box_predictor, runs the box-classifier stage on the
whole feature map, trains (finite losses, gradients into the PS score maps)
and post-processes; its predictor's pooling is the numpy-checked PS-RoI op."""
import numpy as np
import tensorflow as tf
from google.protobuf import text_format

from mtl_ssl.builders import model_builder
from mtl_ssl.core import crop_ops
from mtl_ssl.meta_arch import rfcn
from mtl_ssl.protos import model_pb2

_CONFIG = """
faster_rcnn {
  num_classes: 3
  image_resizer { fixed_shape_resizer { height: 96 width: 96 } }
  feature_extractor { type: 'faster_rcnn_mobilenet_v1_keras' }
  first_stage_anchor_generator { grid_anchor_generator {
    scales: [0.125, 0.25] aspect_ratios: [0.5, 1.0, 2.0] } }
  first_stage_box_predictor_depth: 16
  first_stage_minibatch_size: 32
  first_stage_max_proposals: 10
  second_stage_box_predictor { rfcn_box_predictor {
    conv_hyperparams { op: CONV
      initializer { truncated_normal_initializer { stddev: 0.01 } } }
    depth: 24 crop_height: 6 crop_width: 6
    num_spatial_bins_height: 3 num_spatial_bins_width: 3 } }
  second_stage_batch_size: 6
  second_stage_post_processing { score_converter: SOFTMAX
    batch_non_max_suppression { max_detections_per_class: 5 max_total_detections: 8 } }
}
"""


def _build(is_training):
  cfg = text_format.Parse(_CONFIG, model_pb2.DetectionModel())
  # batch-norm in training mode keeps a randomly initialized MobileNet's
  # features from vanishing (frozen BN with fresh statistics is the identity)
  return model_builder.build(cfg, is_training=is_training, depth_multiplier=0.25,
                             batch_norm_trainable=is_training)


def test_rfcn_builds_trains_and_postprocesses():
  model = _build(True)
  assert isinstance(model, rfcn.RFCNMetaArch)
  images, shapes = model.preprocess(tf.random.uniform([2, 96, 96, 3], 0, 255))
  model.provide_groundtruth(
      [tf.constant([[0.1, 0.1, 0.6, 0.5]]), tf.constant([[0.3, 0.2, 0.9, 0.9],
                                                         [0.0, 0.5, 0.4, 1.0]])],
      [tf.one_hot([0], 3), tf.one_hot([2, 1], 3)])
  with tf.GradientTape(persistent=True) as tape:
    pred = model.predict(images, shapes, training=True)
    losses = model.loss(pred, shapes)
    total = tf.add_n(list(losses.values()))
    encodings_sum = tf.reduce_sum(pred['refined_box_encodings'])
  assert 'proposal_crops' not in pred
  # the box-classifier stage ran once on the whole map, not per proposal
  assert pred['box_classifier_features'].shape[0] == 2
  assert pred['refined_box_encodings'].shape.as_list() == [2, 6, 3, 4]
  assert pred['class_predictions_with_background'].shape.as_list() == [2, 6, 4]
  assert all(np.isfinite(float(v)) for v in losses.values())
  predictor = model._box_predictor
  grads = tape.gradient(total, [predictor.class_predictor.kernel,
                                predictor.reduce_depth.kernel,
                                predictor.box_encoder.kernel])
  assert all(g is not None for g in grads)
  assert float(tf.norm(grads[0])) > 0 and float(tf.norm(grads[1])) > 0
  # the box maps feed the box encodings (their loss needs a positive proposal)
  assert float(tf.norm(tape.gradient(encodings_sum, predictor.box_encoder.kernel))) > 0

  det = model.postprocess(pred, shapes)
  assert det['detection_boxes'].shape.as_list() == [2, 8, 4]
  boxes = det['detection_boxes'].numpy()
  assert boxes.min() >= 0 and boxes.max() <= 1 + 1e-6


def test_rfcn_logits_are_ps_pooled_score_maps():
  model = _build(False)
  images, shapes = model.preprocess(tf.random.uniform([1, 96, 96, 3], 0, 255))
  pred = model.predict(images, shapes)
  predictor = model._box_predictor
  net = predictor.reduce_depth_act(predictor.reduce_depth(
      pred['box_classifier_features']))
  maps = predictor.class_predictor(net)
  want = crop_ops.position_sensitive_crop_regions(
      maps, pred['proposal_boxes_normalized'], (6, 6), (3, 3))
  np.testing.assert_allclose(pred['class_predictions_with_background'].numpy(),
                             want.numpy(), rtol=1e-5, atol=1e-6)


def test_rfcn_with_mtl_trains_on_images_whose_size_the_graph_does_not_know():
  # the R-FCN paper configs run unpadded at batch 1: height and width unknown to the graph
  text = _CONFIG.replace('fixed_shape_resizer { height: 96 width: 96 }',
                         'keep_aspect_ratio_resizer { min_dimension: 64 max_dimension: 128 }')
  predictor = ('rfcn_box_predictor { conv_hyperparams { op: CONV initializer { '
               'truncated_normal_initializer { stddev: 0.01 } } } depth: 8 crop_height: 6 '
               'crop_width: 6 num_spatial_bins_height: 3 num_spatial_bins_width: 3 }')
  text = ('mtl { window: true closeness: true edgemask: true refine: true refine_residue: true '
          'window_class_loss_weight: 1.0 closeness_loss_weight: 0.3 edgemask_loss_weight: 1.0 '
          'refined_classification_loss_weight: 1.0 num_windows: 4 foreground_grid_size: 8 '
          f'window_box_predictor {{ {predictor} }} closeness_box_predictor {{ {predictor} }} '
          'edgemask_predictor { kernel_size: 1 conv_hyperparams { op: CONV initializer { '
          'truncated_normal_initializer { stddev: 0.01 } } } } }\n' + text)
  cfg = text_format.Parse(text, model_pb2.DetectionModel())
  model = model_builder.build(cfg, is_training=True, depth_multiplier=0.25,
                              batch_norm_trainable=True)

  @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
  def step(raw):
    images, shapes = model.preprocess(raw)
    model.provide_groundtruth([tf.constant([[0.1, 0.1, 0.6, 0.5], [0.4, 0.5, 0.9, 0.9]])],
                              [tf.one_hot([0, 2], 3)])
    pred = model.predict(images, shapes, training=True)
    losses = model.loss(pred, shapes)
    model.clear_groundtruth()
    return tf.add_n(list(losses.values())), tf.shape(images), len(losses)

  for height, width in ((50, 80), (90, 60)):
    total, shape, count = step(tf.random.uniform([1, height, width, 3], 0, 255))
    assert np.isfinite(total.numpy()) and int(count) == 8
    assert shape.numpy()[1:3].max() <= 128 and shape.numpy()[1:3].min() == 64  # unpadded
