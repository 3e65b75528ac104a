"""The detector's MTL hooks (architecture §6): heads built only when a task is
on, their outputs merged into predict, their losses added (labels made from
plain box+class ground truth when not provided), refined logits used by
postprocess."""
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from mtl_ssl.builders import model_builder
from mtl_ssl.protos import model_pb2

NUM_CLASSES = 3
_BASE = """
faster_rcnn {
  num_classes: 3
  image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
  feature_extractor { type: 'faster_rcnn_mobilenet_v1_keras' }
  first_stage_anchor_generator { grid_anchor_generator {
    scales: [0.125, 0.25] aspect_ratios: [1.0] } }
  first_stage_box_predictor_depth: 8
  first_stage_minibatch_size: 16
  first_stage_max_proposals: 6
  initial_crop_size: 4 maxpool_kernel_size: 2 maxpool_stride: 2
  second_stage_box_predictor { mask_rcnn_box_predictor { } }
  second_stage_batch_size: 4
  second_stage_post_processing { score_converter: SOFTMAX
    batch_non_max_suppression { max_detections_per_class: 3 max_total_detections: 4 } }
}
"""
_ALL_TASKS = """
mtl { window: true window_class_loss_weight: 1.0 closeness: true
      closeness_loss_weight: 0.3 edgemask: true edgemask_loss_weight: 0.5
      refine: true refine_residue: true refined_classification_loss_weight: 2.0
      num_windows: 5 foreground_grid_size: 8 }
"""
_MTL_KEYS = {'Loss/MTL/window_loss', 'Loss/MTL/closeness_loss',
             'Loss/MTL/foreground_loss', 'Loss/MTL/refined_classification_loss'}


def _build(mtl_text, is_training=True):
  cfg = text_format.Parse(_BASE + mtl_text, model_pb2.DetectionModel())
  return model_builder.build(cfg, is_training=is_training, depth_multiplier=0.25)


def _groundtruth():
  boxes = [tf.constant([[0.1, 0.1, 0.6, 0.5], [0.5, 0.4, 0.9, 0.95]]),
           tf.constant([[0.2, 0.3, 0.8, 0.7]])]
  classes = [tf.one_hot([0, 2], NUM_CLASSES), tf.one_hot([1], NUM_CLASSES)]
  return boxes, classes


@pytest.fixture(scope='module')
def mtl_model():
  return _build(_ALL_TASKS)


def test_no_heads_when_every_task_is_off():
  model = _build('mtl { window: false refine: false }')
  assert model.mtl_heads is None
  assert not any(k.startswith('Loss/MTL') for k in model.loss_weights)


def test_plain_groundtruth_trains_all_tasks_in_a_traced_step(mtl_model):
  model = mtl_model
  assert _MTL_KEYS <= set(model.loss_weights)
  assert model.loss_weights['Loss/MTL/refined_classification_loss'] == 2.0
  boxes, classes = _groundtruth()

  @tf.function
  def step(images):
    preprocessed, shapes = model.preprocess(images)
    model.provide_groundtruth(boxes, classes)
    with tf.GradientTape() as tape:
      pred = model.predict(preprocessed, shapes, training=True)
      losses = model.loss(pred, shapes)
      total = tf.add_n(list(losses.values()))
    grads = tape.gradient(total, model.trainable_variables)
    return losses, {k: tf.shape(v) for k, v in pred.items()
                    if k.startswith('mtl_')}, grads

  losses, shapes, grads = step(tf.random.uniform([2, 64, 64, 3], 0, 255))
  assert _MTL_KEYS <= set(losses)
  assert all(np.isfinite(float(v)) for v in losses.values())
  assert shapes['mtl_window_logits'].numpy().tolist() == [2, 5, NUM_CLASSES + 1]
  assert shapes['mtl_closeness_logits'].numpy().tolist() == [2, 4, NUM_CLASSES + 1]
  assert shapes['mtl_foreground_logits'].numpy().tolist() == [2, 8, 8, 2]
  assert shapes['mtl_refined_class_logits'].numpy().tolist() == [2, 4, NUM_CLASSES + 1]
  head_vars = {id(v) for v in model.mtl_heads.trainable_variables}
  named = [(v.name, g) for v, g in zip(model.trainable_variables, grads)
           if id(v) in head_vars]
  assert named and all(g is not None for _, g in named)


def test_provided_mtl_labels_are_used(mtl_model):
  model = mtl_model
  boxes, classes = _groundtruth()
  windows = [tf.constant([[0.0, 0.0, 1.0, 1.0], [0.1, 0.1, 0.6, 0.5]]),
             tf.constant([[0.0, 0.0, 0.5, 0.5], [0.2, 0.3, 0.8, 0.7]])]
  window_labels = [tf.one_hot([0, 1], NUM_CLASSES + 1),
                   tf.one_hot([0, 2], NUM_CLASSES + 1)]
  model.provide_groundtruth(boxes, classes,
                            groundtruth_mtl_windows_list=windows,
                            groundtruth_mtl_window_labels_list=window_labels)
  images, shapes = model.preprocess(tf.random.uniform([2, 64, 64, 3], 0, 255))
  pred = model.predict(images, shapes, training=True)
  assert pred['mtl_window_logits'].shape.as_list() == [2, 2, NUM_CLASSES + 1]
  losses = model.loss(pred, shapes)
  logits = pred['mtl_window_logits']
  want = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
      tf.stack(window_labels), logits))
  np.testing.assert_allclose(float(losses['Loss/MTL/window_loss']),
                             float(want), rtol=1e-5)


def test_postprocess_uses_refined_logits():
  model = _build(_ALL_TASKS, is_training=False)
  images, shapes = model.preprocess(tf.random.uniform([1, 64, 64, 3], 0, 255))
  pred = model.predict(images, shapes)
  assert 'mtl_refined_class_logits' in pred
  num = pred['class_predictions_with_background'].shape[1]
  forced = tf.tile(tf.constant([[[0.0, 0.0, 0.0, 9.0]]]), [1, num, 1])
  pred['mtl_refined_class_logits'] = forced
  det = model.postprocess(pred, shapes)
  n = int(det['num_detections'][0])
  scores = det['detection_scores'][0, :n].numpy()
  classes = det['detection_classes'][0, :n].numpy()
  assert scores[0] > 0.99 and np.all(classes[scores > 0.01] == 2)
  np.testing.assert_allclose(det['raw_detection_scores'].numpy(),
                             tf.nn.softmax(forced).numpy(), rtol=1e-6)
