"""Non-finite loss guard: the in-graph gradient check, the host-side Guard, a NaN injected into a
real training run, and evaluation of a checkpoint with NaN weights."""
import json
import logging
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tiny_pipeline
from mtl_ssl.config import validation
from mtl_ssl.training import eval_loop
from mtl_ssl.training import nonfinite
from mtl_ssl.training import train_loop

NAN = float('nan')


def _outputs(flag, gradient_flags, **losses):
  outputs = {name.replace('__', '/'): tf.constant(value, tf.float32)
             for name, value in losses.items()}
  outputs[nonfinite.FLAG] = tf.constant(flag, tf.float32)
  outputs[nonfinite.GRADIENTS] = tf.constant(gradient_flags, tf.float32)
  return outputs


def test_gradients_are_zeroed_when_anything_is_not_finite():
  finite = [tf.constant([1.0, -2.0]), tf.constant([[3.0]])]
  kept, health = nonfinite.zero_if_not_finite(finite, tf.constant(0.0))
  assert float(health[nonfinite.FLAG]) == 1.0
  np.testing.assert_array_equal(health[nonfinite.GRADIENTS], [1.0, 1.0])
  for got, want in zip(kept, finite):
    np.testing.assert_array_equal(got, want)
  cases = {
      'nan gradient': ([tf.constant([1.0, NAN]), tf.constant([[3.0]])], 0.0, [0.0, 1.0]),
      'inf gradient': ([tf.constant([1.0, 2.0]), tf.constant([[-np.inf]])], 0.0, [1.0, 0.0]),
      'norm overflow': ([tf.constant([3e38, 3e38]), tf.constant([[1.0]])], 0.0, [1.0, 1.0]),
      'nan loss on a replica': (finite, 1.0, [1.0, 1.0]),
  }
  for name, (gradients, losses_not_finite, flags) in cases.items():
    zeroed, health = nonfinite.zero_if_not_finite(gradients, tf.constant(losses_not_finite))
    assert float(health[nonfinite.FLAG]) == 0.0, name
    np.testing.assert_array_equal(health[nonfinite.GRADIENTS], flags, err_msg=name)
    for got in zeroed:
      assert not np.any(got.numpy()), name
  assert float(nonfinite.count_not_finite(tf.constant(np.inf))) == 1.0
  assert float(nonfinite.count_not_finite(tf.constant(2.0))) == 0.0


def test_zeroed_update_leaves_weights_and_slots_finite():
  weights = tf.Variable([1.0, 2.0])
  optimizer = tf_keras.optimizers.SGD(0.1, momentum=0.9)
  optimizer.build([weights])
  gradients, _ = nonfinite.zero_if_not_finite([tf.constant([NAN, 1.0])], tf.constant(0.0))
  optimizer.apply_gradients(zip(gradients, [weights]))
  np.testing.assert_array_equal(weights.numpy(), [1.0, 2.0])  # zero velocity: unchanged
  assert all(np.isfinite(v.numpy()).all() for v in optimizer.variables)


def _guard(variables=(), last='/m/ckpt-4'):
  return nonfinite.Guard(lambda: ['a:0', 'b:0'], list(variables), lambda: last)


def test_guard_names_the_step_and_the_loss_terms_one_step_later():
  guard = _guard()
  losses = guard.after_step(5, _outputs(1.0, [1, 1], Loss__A=1.0, Loss__total_loss=1.0))
  assert set(losses) == {'Loss/A', 'Loss/total_loss'}  # the guard's keys are removed
  guard.after_step(6, _outputs(0.0, [0, 0], Loss__A=NAN, Loss__B=2.0, Loss__total_loss=NAN))
  with pytest.raises(nonfinite.NonFiniteLossError) as error:
    guard.after_step(7, _outputs(1.0, [1, 1], Loss__A=1.0, Loss__total_loss=1.0))
  message = str(error.value)
  assert 'at step 6' in message and 'Loss/A=nan, Loss/total_loss=nan' in message
  assert 'Loss/B' not in message and '/m/ckpt-4, is kept' in message


def test_guard_check_now_and_gradient_only_failures():
  guard = _guard(last=None)
  guard.after_step(3, _outputs(0.0, [1, 0], Loss__A=1.0, Loss__total_loss=1.0))
  with pytest.raises(nonfinite.NonFiniteLossError,
                     match=r'step 3: finite losses but non-finite gradients for 1 '
                           r'variable\(s\), e.g. b:0.*no checkpoint had been written'):
    guard.check()
  guard.after_step(4, _outputs(0.0, [1, 1], Loss__total_loss=1.0))
  with pytest.raises(nonfinite.NonFiniteLossError, match='step 4: the global norm'):
    guard.check()
  guard.check()  # nothing pending


def test_guard_refuses_to_save_nan_weights():
  good, bad = tf.Variable([1.0]), tf.Variable([2.0, 3.0], name='bn_moving_mean')
  counter = tf.Variable(0, dtype=tf.int64)  # not floating: not checked
  guard = _guard([good, bad, counter])
  guard.check_before_save(10)
  bad.assign([2.0, np.inf])
  with pytest.raises(nonfinite.NonFiniteLossError,
                     match=r'step 11: 1 variable\(s\) hold NaN/Inf values, e.g. bn_moving_mean'):
    guard.check_before_save(11)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tiny_pipeline.write_scenes(tmp_path_factory.mktemp('scenes'), num_train=4, num_test=2)


def _all_finite(checkpoint):
  reader = tf.train.load_checkpoint(checkpoint)
  for name, _ in tf.train.list_variables(checkpoint):
    value = reader.get_tensor(name)
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
      if not np.isfinite(value).all():
        return False
  return True


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(data_dir, tmp_path,
                                                                    monkeypatch):
  config = tiny_pipeline.write_pipeline(tmp_path, data_dir, num_steps=6)
  model_dir = str(tmp_path / 'model')
  forward = train_loop._Trainer._forward  # pylint: disable=protected-access

  def poisoned_forward(self, features, labels):
    """The 3rd step (2 updates applied so far) gets a NaN window loss."""
    losses, total = forward(self, features, labels)
    poison = tf.where(tf.equal(self.optimizer.iterations, 2), NAN, 0.0)
    losses = dict(losses, **{'Loss/MTL/window_loss': losses['Loss/MTL/window_loss'] + poison})
    return losses, total + poison

  monkeypatch.setattr(train_loop._Trainer, '_forward',  # pylint: disable=protected-access
                      poisoned_forward)
  with pytest.raises(nonfinite.NonFiniteLossError) as error:
    train_loop.train_loop(config, model_dir, checkpoint_every_n=2, log_every_n=100,
                          record_summaries=False, seed=0)
  message = str(error.value)
  assert message.startswith('training stopped at step 3: non-finite loss: '
                            'Loss/MTL/window_loss=nan, Loss/total_loss=nan.')
  assert f'{os.path.join(model_dir, "ckpt-2")}, is kept' in message
  assert tf.train.latest_checkpoint(model_dir).endswith('ckpt-2')
  indexes = sorted(n for n in os.listdir(model_dir) if n.endswith('.index'))
  assert indexes == ['ckpt-2.index']  # nothing written at or after the NaN step
  assert _all_finite(os.path.join(model_dir, 'ckpt-2'))


def test_eval_of_nan_weights_reports_nan_metrics_instead_of_crashing(data_dir, tmp_path,
                                                                     caplog):
  config = tiny_pipeline.write_pipeline(tmp_path, data_dir)
  configs = validation.load_and_validate(
      config, 'eval_config { retain_original_images: true }', mode='eval')
  evaluation = eval_loop.CheckpointEvaluation(configs, str(tmp_path / 'model'))
  evaluation.restore(_model_checkpoint(evaluation, tmp_path))
  for variable in evaluation.model.variables:  # NaN boxes from the second stage
    if variable.name.startswith('SecondStageBoxPredictor/BoxEncodingPredictor/bias'):
      variable.assign(tf.fill(variable.shape, NAN))
  metrics = evaluation.evaluate(7)  # pictures, PASCAL and COCO metrics on NaN boxes
  assert math.isnan(metrics['Loss/BoxClassifierLoss/localization_loss'])
  assert math.isnan(metrics['Loss/total_loss'])
  assert math.isfinite(metrics['Loss/RPNLoss/objectness_loss'])
  warnings = [r.getMessage() for r in caplog.records  # (the INFO metrics line is not one)
              if r.levelno >= logging.WARNING and 'Eval at step 7' in r.getMessage()]
  assert len(warnings) == 1
  assert ('non-finite Loss/BoxClassifierLoss/localization_loss=nan, Loss/total_loss=nan; '
          '2 of 2 images gave NaN/Inf detection outputs') in warnings[0]
  with open(tmp_path / 'model' / 'eval' / 'metrics_7.json', encoding='utf-8') as f:
    saved = json.load(f)
  assert saved['metrics']['Loss/total_loss'] is None
  assert saved['metrics']['PascalBoxes_Precision/mAP@0.5IOU'] == 0.0
  assert saved['warnings'] == [warnings[0].split(': ', 1)[1]]


def _model_checkpoint(evaluation, tmp_path):
  """A checkpoint of the (initialized) inference model itself."""
  features, labels = next(iter(evaluation.dataset))
  evaluation._eval_step(features, labels)  # pylint: disable=protected-access
  return tf.train.Checkpoint(model=evaluation.model).write(str(tmp_path / 'init' / 'ckpt-0'))


def test_guard_names_the_variables_of_the_step_it_checks():
  # steps of different traces update different variables (mtl.train_every_n_steps): the names
  # are the ones current when the step ran, not when it is checked one step later
  names = [['a:0', 'b:0']]
  guard = nonfinite.Guard(lambda: names[0], [], lambda: None)
  guard.after_step(2, _outputs(0.0, [1, 0], Loss__total_loss=1.0))
  names[0] = ['detector_only:0']
  with pytest.raises(nonfinite.NonFiniteLossError, match=r'e\.g\. b:0'):
    guard.after_step(3, _outputs(1.0, [1], Loss__total_loss=1.0))
