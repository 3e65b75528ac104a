"""Training and evaluation loops on the tiny real pipeline (real model, data, configs)."""
import json
import math
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

import tiny_pipeline
from mtl_ssl.builders import model_builder
from mtl_ssl.config import config_util
from mtl_ssl.training import checkpoints
from mtl_ssl.training import eval_loop
from mtl_ssl.training import train_loop

DETECTOR_LOSSES = ['Loss/RPNLoss/localization_loss', 'Loss/RPNLoss/objectness_loss',
                   'Loss/BoxClassifierLoss/localization_loss',
                   'Loss/BoxClassifierLoss/classification_loss']
MTL_LOSSES = ['Loss/MTL/window_loss', 'Loss/MTL/closeness_loss', 'Loss/MTL/foreground_loss',
              'Loss/MTL/refined_classification_loss']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tiny_pipeline.write_scenes(tmp_path_factory.mktemp('scenes'))


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data_dir):
  """Two steps of training, a checkpoint after each."""
  root = tmp_path_factory.mktemp('run')
  config = tiny_pipeline.write_pipeline(root, data_dir, num_steps=3)
  model_dir = str(root / 'model')
  history = train_loop.train_loop(config, model_dir, train_steps=2, checkpoint_every_n=1,
                                  log_every_n=1, seed=1)
  return config, model_dir, history


def test_training_writes_checkpoints_and_summaries(trained):
  _, model_dir, history = trained
  assert [h['step'] for h in history] == [1, 2]
  for logged in history:
    losses = {k: v for k, v in logged.items() if k.startswith('Loss/') and k != 'Loss/total_loss'}
    assert set(DETECTOR_LOSSES + MTL_LOSSES + ['Loss/regularization_loss']) <= set(losses)
    assert all(math.isfinite(v) for v in losses.values())
    assert logged['Loss/total_loss'] == pytest.approx(sum(losses.values()), rel=1e-5)
    assert logged['learning_rate'] == pytest.approx(0.01)
    assert logged['steps_per_sec'] > 0
  assert tf.train.latest_checkpoint(model_dir).endswith('ckpt-2')
  assert checkpoints.checkpoint_step(os.path.join(model_dir, 'ckpt-1')) == 1
  assert os.path.isfile(os.path.join(model_dir, 'pipeline.config'))

  events = tiny_pipeline.event_values(os.path.join(model_dir, 'train'))
  for name in [k for k in history[0] if k != 'step']:
    assert [step for step, _ in events[name]] == [1, 2], name
    assert events[name][1][1] == pytest.approx(history[1][name], rel=1e-5), name
  for picture in ('groundtruth_boxes', 'mtl_windows', 'mtl_foreground_mask'):
    (step, value), = events[f'train_input_images/{picture}']
    assert step == 0 and len(value) == 2 + 2  # width, height, then the 2 images (batch 2)


def test_second_run_resumes_at_the_saved_step(trained):
  config, model_dir, _ = trained
  before = tf.train.load_variable(os.path.join(model_dir, 'ckpt-2'),
                                  'step/.ATTRIBUTES/VARIABLE_VALUE')
  assert before == 2
  history = train_loop.train_loop(config, model_dir, train_steps=3, checkpoint_every_n=10,
                                  log_every_n=1, seed=1)
  assert [h['step'] for h in history] == [3]
  assert tf.train.latest_checkpoint(model_dir).endswith('ckpt-3')
  # at the end already: returns without building anything
  assert train_loop.train_loop(config, model_dir) == []


def test_eval_only_mode_writes_metrics(trained):
  config, model_dir, _ = trained
  step = checkpoints.checkpoint_step(tf.train.latest_checkpoint(model_dir))
  results = eval_loop.eval_continuously(config, model_dir, checkpoint_dir=model_dir,
                                        train_steps=step, wait_interval=0, timeout=1)
  assert list(results) == [step]
  metrics = results[step]
  for name in ('PascalBoxes_Precision/mAP@0.5IOU', 'DetectionBoxes_Precision/mAP',
               'DetectionBoxes_Precision/mAP@.50IOU', 'DetectionBoxes_Recall/AR@100',
               'MTL/window_top1_accuracy', 'MTL/foreground_iou'):
    assert 0.0 <= metrics[name] <= 1.0, name
  per_class = [k for k in metrics if k.startswith('PascalBoxes_PerformanceByCategory/')]
  assert len(per_class) == 10
  assert metrics['MTL/window_cross_entropy'] > 0
  assert set(DETECTOR_LOSSES + MTL_LOSSES) <= set(metrics)
  assert metrics['Loss/total_loss'] > 0

  with open(os.path.join(model_dir, 'eval', f'metrics_{step}.json'), encoding='utf-8') as f:
    saved = json.load(f)
  assert saved['step'] == step and set(saved['metrics']) == set(metrics)
  for name, value in metrics.items():
    if math.isnan(value):
      assert saved['metrics'][name] is None
    else:
      assert saved['metrics'][name] == pytest.approx(value)

  events = tiny_pipeline.event_values(os.path.join(model_dir, 'eval'))
  assert events['PascalBoxes_Precision/mAP@0.5IOU'][0] == (
      step, pytest.approx(metrics['PascalBoxes_Precision/mAP@0.5IOU']))
  assert 'Loss/total_loss' in events and 'MTL/foreground_iou' in events
  pictures = sorted(k for k in events if k.startswith('eval_side_by_side_'))
  assert pictures == ['eval_side_by_side_0', 'eval_side_by_side_1']  # num_visualizations: 2


def test_sigterm_stops_training_after_a_checkpoint(data_dir, tmp_path):
  config = tiny_pipeline.write_pipeline(tmp_path, data_dir, num_steps=5)
  model_dir = str(tmp_path / 'model')

  def on_checkpoint(path, step):
    del path
    if step == 1:
      os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop: this process survives

  history = train_loop.train_loop(config, model_dir, checkpoint_every_n=1, log_every_n=1,
                                  record_summaries=False, on_checkpoint=on_checkpoint)
  assert [h['step'] for h in history] == [1]
  assert tf.train.latest_checkpoint(model_dir).endswith('ckpt-1')
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler removed again


def _built_model(config):
  configs = config_util.get_configs_from_pipeline_file(config)
  model = model_builder.build(configs['model'], is_training=True)
  model.build_for_shapes(64, 64)
  return configs['train_config'], model


def _same(a, b):
  return a.shape == b.shape and np.allclose(a.numpy(), b.numpy())


def test_fine_tune_restores_the_chosen_parts(trained, tmp_path):
  config, model_dir, _ = trained
  source = os.path.join(model_dir, 'ckpt-1')
  _, full = _built_model(config)
  tf.train.Checkpoint(model=full).restore(source).expect_partial()

  train_config, detection = _built_model(config)
  train_config.fine_tune_checkpoint = source
  train_config.fine_tune_checkpoint_type = 'detection'
  checkpoints.restore_fine_tune_checkpoint(detection, train_config)
  same = [_same(a, b) for a, b in zip(full.trainable_variables, detection.trainable_variables)]
  assert same[0]  # the first backbone convolution
  assert 0 < sum(same) < len(same)  # the class / box layers and MTL heads start fresh

  # a classification checkpoint of the backbone: the proposal and box-classifier stages load
  # it, and every box-classifier copy (MTL heads) starts from the main one's weights
  backbone = str(tmp_path / 'backbone')
  tf.train.Checkpoint(feature_extractor=full.feature_extractor.classification_backbone).write(
      backbone)
  train_config, classification = _built_model(config)
  train_config.fine_tune_checkpoint = backbone
  train_config.fine_tune_checkpoint_type = 'classification'
  checkpoints.restore_fine_tune_checkpoint(classification, train_config)
  extractor, reference = classification.feature_extractor, full.feature_extractor
  copies = extractor.box_classifier_models
  assert len(copies) > 1  # window and closeness heads have their own copies
  for copy in copies:
    assert all(_same(a, b) for a, b in zip(copy.weights,
                                           reference.box_classifier_models[0].weights))
  assert all(_same(a, b) for a, b in zip(
      extractor.get_proposal_feature_extractor_model().weights,
      reference.get_proposal_feature_extractor_model().weights))

  train_config.fine_tune_checkpoint = str(tmp_path / 'nothing')
  with pytest.raises(ValueError, match='fine_tune_checkpoint'):
    checkpoints.restore_fine_tune_checkpoint(classification, train_config)


def test_share_second_stage_init_false_keeps_the_aux_copies_own_init(trained, tmp_path):
  """As the original: without share_second_stage_init a classification fine-tune loads the main
  stages only; the MTL heads' stage copies keep the values they were initialized with."""
  config, model_dir, _ = trained
  _, full = _built_model(config)
  tf.train.Checkpoint(model=full).restore(os.path.join(model_dir, 'ckpt-1')).expect_partial()
  backbone = str(tmp_path / 'backbone')
  tf.train.Checkpoint(feature_extractor=full.feature_extractor.classification_backbone).write(
      backbone)
  separate = str(tmp_path / 'separate.config')
  with open(config, encoding='utf-8') as f:
    text = f.read().replace('mtl {', 'mtl {\n    share_second_stage_init: false', 1)
  with open(separate, 'w', encoding='utf-8') as f:
    f.write(text)
  train_config, model = _built_model(separate)
  heads = model.mtl_heads
  aux = [heads.window_head.stage, heads.closeness_head.stage]
  initial = [[w.numpy() for w in stage.weights] for stage in aux]
  train_config.fine_tune_checkpoint = backbone
  train_config.fine_tune_checkpoint_type = 'classification'
  checkpoints.restore_fine_tune_checkpoint(model, train_config)
  main = model.feature_extractor.box_classifier_models
  assert len(main) == 1  # only the detector's own stage takes classification weights
  assert all(_same(a, b) for a, b in zip(main[0].weights,
                                         full.feature_extractor.box_classifier_models[0].weights))
  for stage, before in zip(aux, initial):
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(stage.weights, before))
    assert not all(_same(a, b) for a, b in zip(stage.weights, main[0].weights))
