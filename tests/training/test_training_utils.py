"""Small parts of the loops: variable selection, eval conversion, aux metrics, strategy rules."""
import os

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from mtl_ssl.data.fields import InputDataFields as fields
from mtl_ssl.protos import train_pb2
from mtl_ssl.training import checkpoints
from mtl_ssl.training import model_io
from mtl_ssl.training import strategies
from mtl_ssl.training import train_loop
from mtl_ssl.training import training_utils


def test_select_trainable_variables_follows_od_api_regex_rules():
  names = ['FirstStage/conv1/kernel', 'FirstStage/block1/kernel', 'SecondStage/fc/kernel',
           'MTL/window/kernel']
  variables = [tf.Variable(0.0, name=n) for n in names]
  config = text_format.Parse('freeze_variables: "FirstStage/conv1" freeze_variables: ".*block1"',
                             train_pb2.TrainConfig())
  kept = train_loop.select_trainable_variables(variables, config)
  assert [v.name for v in kept] == ['SecondStage/fc/kernel:0', 'MTL/window/kernel:0']
  config = text_format.Parse('update_trainable_variables: "MTL/" '
                             'update_trainable_variables: "SecondStage"', train_pb2.TrainConfig())
  assert [v.name for v in train_loop.select_trainable_variables(variables, config)] == [
      'SecondStage/fc/kernel:0', 'MTL/window/kernel:0']
  config = text_format.Parse('freeze_variables: ".*"', train_pb2.TrainConfig())
  with pytest.raises(ValueError, match='leave no variable'):
    train_loop.select_trainable_variables(variables, config)


def test_graph_function_falls_back_to_autograph():
  def needs_autograph(x):
    if tf.reduce_sum(x) > 0:  # Python control flow on a tensor
      return x * 2.0
    return -x

  plain = lambda x: x + 1.0
  assert float(training_utils.GraphFunction(plain)(tf.constant(1.0))) == 2.0
  function = training_utils.GraphFunction(needs_autograph)
  assert float(function(tf.constant(3.0))) == 6.0
  assert float(function(tf.constant(-3.0))) == 3.0


def test_evaluation_examples_unpad_scale_and_shift_classes():
  features = {fields.original_image_spatial_shape: np.array([[100, 200], [50, 40]]),
              fields.source_id: np.array([b'a', b''])}
  labels = {
      fields.groundtruth_boxes: np.array([[[0.1, 0.2, 0.5, 0.6], [0, 0, 0, 0]],
                                          [[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0]]]),
      fields.groundtruth_classes: np.array([[[0, 1, 0], [0, 0, 0]], [[1, 0, 0], [0, 0, 1]]]),
      fields.num_groundtruth_boxes: np.array([1, 2]),
      fields.groundtruth_difficult: np.array([[1, 0], [0, 0]]),
  }
  detections = {'detection_boxes': np.array([[[0.1, 0.1, 0.2, 0.2]] * 3] * 2),
                'detection_scores': np.array([[0.9, 0.5, 0.0]] * 2),
                'detection_classes': np.array([[0.0, 2.0, 0.0]] * 2),
                'num_detections': np.array([2.0, 1.0])}
  (id_a, gt_a, det_a), (id_b, gt_b, det_b) = model_io.evaluation_examples(
      features, labels, detections, start_index=10)
  assert (id_a, id_b) == ('a', 'image_11')
  np.testing.assert_allclose(gt_a['groundtruth_boxes'], [[10, 40, 50, 120]])
  np.testing.assert_array_equal(gt_a['groundtruth_classes'], [2])
  np.testing.assert_array_equal(gt_a['groundtruth_difficult'], [1])
  np.testing.assert_array_equal(gt_b['groundtruth_classes'], [1, 3])
  np.testing.assert_allclose(det_a['detection_boxes'], [[10, 20, 20, 40]] * 2)
  np.testing.assert_array_equal(det_a['detection_classes'], [1, 3])  # 0-based + 1
  np.testing.assert_allclose(det_b['detection_boxes'], [[5, 4, 10, 8]])
  assert len(det_b['detection_scores']) == 1


def test_auxiliary_metrics_against_hand_values():
  logits = np.log(np.array([[[0.5, 0.5], [0.9, 0.1]]], np.float32))  # 2 windows, 2 classes
  window_labels = np.array([[[1.0, 0.0], [0.5, 0.5]]], np.float32)
  fg_logits = np.zeros((1, 2, 2, 2), np.float32)
  fg_logits[0, 0, :, 1] = 5.0  # predicted foreground: top row
  mask = np.array([[[1.0, 0.0], [1.0, 0.0]]], np.float32)  # target: left column
  stats = model_io.auxiliary_statistics(
      {'mtl_window_logits': tf.constant(logits), 'mtl_foreground_logits': tf.constant(fg_logits)},
      {fields.groundtruth_mtl_window_labels: tf.constant(window_labels),
       fields.groundtruth_mtl_foreground_mask: tf.constant(mask)})
  metrics = model_io.auxiliary_metrics({k: float(v) for k, v in stats.items()})
  expected_ce = (-np.log(0.5) + -(0.5 * np.log(0.9) + 0.5 * np.log(0.1))) / 2
  assert metrics['MTL/window_cross_entropy'] == pytest.approx(expected_ce, rel=1e-5)
  assert metrics['MTL/window_top1_accuracy'] == pytest.approx(1.0)  # argmax ties go to index 0
  assert metrics['MTL/foreground_iou'] == pytest.approx(1 / 3)  # 1 common cell of 3
  assert model_io.auxiliary_statistics({}, {}) == {}


def test_strategy_rules(monkeypatch):
  strategy = strategies.select_strategy()
  assert isinstance(strategy, tf.distribute.OneDeviceStrategy)  # CPU only here
  assert strategies.is_chief(strategy)
  assert strategies.task_directory(strategy, '/m') == '/m'
  monkeypatch.delenv('TF_CONFIG', raising=False)
  with pytest.raises(ValueError, match='TF_CONFIG'):
    strategies.select_strategy(num_workers=2)
  monkeypatch.setenv('TF_CONFIG', '{"cluster": {"worker": ["localhost:1"]}, '
                     '"task": {"type": "worker", "index": 0}}')
  with pytest.raises(ValueError, match='lists 1'):
    strategies.select_strategy(num_workers=2)


def test_checkpoint_helpers(tmp_path):
  with pytest.raises(ValueError, match='fine_tune_checkpoint: no checkpoint'):
    checkpoints.resolve_checkpoint(str(tmp_path), 'train_config.fine_tune_checkpoint')
  with pytest.raises(ValueError, match='not found'):
    checkpoints.resolve_checkpoint(str(tmp_path / 'ckpt-3'), '--trained_checkpoint_dir')
  step = tf.Variable(7, dtype=tf.int64)
  path = tf.train.Checkpoint(step=step).save(os.path.join(tmp_path, 'ckpt'))
  assert checkpoints.checkpoint_step(path) == 7
  assert checkpoints.resolve_checkpoint(str(tmp_path), 'x') == path
  config = text_format.Parse('fine_tune_checkpoint_type: "segmentation"',
                             train_pb2.TrainConfig())
  with pytest.raises(ValueError, match='fine_tune_checkpoint_type'):
    checkpoints.fine_tune_type(config)
