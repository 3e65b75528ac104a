"""Optimizer builder: schedules against hand values / numpy, optimizer kinds and their updates."""
import math

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from mtl_ssl.builders import optimizer_builder
from mtl_ssl.protos import optimizer_pb2


def _optimizer(text):
  return text_format.Parse(text, optimizer_pb2.Optimizer())


def _rates(schedule, steps):
  return np.array([float(schedule(tf.constant(s, tf.int64))) for s in steps])


def test_manual_step_without_and_with_warmup():
  config = _optimizer("""momentum_optimizer { learning_rate { manual_step_learning_rate {
      initial_learning_rate: 0.1 schedule { step: 10 learning_rate: 0.01 }
      schedule { step: 20 learning_rate: 0.001 } } } }""")
  _, schedule = optimizer_builder.build(config)
  np.testing.assert_allclose(_rates(schedule, [0, 9, 10, 19, 20, 1000]),
                             [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)
  config.momentum_optimizer.learning_rate.manual_step_learning_rate.warmup = True
  _, schedule = optimizer_builder.build(config)
  # linear from 0.1 at step 0 towards 0.01 at step 10: step 5 -> 0.055
  np.testing.assert_allclose(_rates(schedule, [0, 5, 9, 10, 20]),
                             [0.1, 0.055, 0.1 - 0.009 * 9, 0.01, 0.001], rtol=1e-5)


def test_exponential_decay_with_burnin_and_floor():
  config = _optimizer("""rms_prop_optimizer { learning_rate { exponential_decay_learning_rate {
      initial_learning_rate: 0.1 decay_steps: 10 decay_factor: 0.5 burnin_learning_rate: 0.02
      burnin_steps: 5 min_learning_rate: 0.01 } } }""")
  _, schedule = optimizer_builder.build(config)
  steps = np.array([0, 4, 5, 14, 15, 25, 35, 100])
  expected = np.where(steps < 5, 0.02, 0.1 * 0.5 ** np.floor((steps - 5) / 10))
  expected = np.maximum(expected, 0.01)
  np.testing.assert_allclose(_rates(schedule, steps), expected, rtol=1e-6)
  assert expected[-1] == 0.01  # the floor is reached in this case
  config.rms_prop_optimizer.learning_rate.exponential_decay_learning_rate.staircase = False
  config.rms_prop_optimizer.learning_rate.exponential_decay_learning_rate.burnin_learning_rate = 0
  _, schedule = optimizer_builder.build(config)
  np.testing.assert_allclose(_rates(schedule, [0, 10]), [0.1, 0.1 * 0.5 ** 0.5], rtol=1e-6)


def test_cosine_decay_with_warmup_and_hold():
  config = _optimizer("""adam_optimizer { learning_rate { cosine_decay_learning_rate {
      learning_rate_base: 0.04 total_steps: 100 warmup_learning_rate: 0.01 warmup_steps: 10
      hold_base_rate_steps: 10 } } }""")
  _, schedule = optimizer_builder.build(config)
  steps = np.array([0, 5, 10, 20, 21, 60, 100, 101])

  def reference(step):
    if step > 100:
      return 0.0
    if step < 10:
      return 0.01 + (0.04 - 0.01) / 10 * step
    if step <= 20:
      return 0.04
    return 0.5 * 0.04 * (1 + math.cos(math.pi * (step - 20) / 80))
  np.testing.assert_allclose(_rates(schedule, steps), [reference(s) for s in steps], atol=1e-7)


def test_optimizer_kinds_and_hyperparameters():
  sgd, _ = optimizer_builder.build(_optimizer(
      'momentum_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.5 } } '
      'momentum_optimizer_value: 0.9 } use_moving_average: false'))
  assert type(sgd).__name__ == 'SGD' and sgd.momentum == pytest.approx(0.9)
  rms, _ = optimizer_builder.build(_optimizer(
      'rms_prop_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.1 } } '
      'decay: 0.8 momentum_optimizer_value: 0.7 epsilon: 0.5 }'))
  assert type(rms).__name__ == 'RMSprop'
  assert (rms.rho, rms.momentum, rms.epsilon) == pytest.approx((0.8, 0.7, 0.5))
  adam, _ = optimizer_builder.build(_optimizer(
      'adam_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.1 } } }'))
  assert adam.epsilon == pytest.approx(1e-8)


def test_momentum_update_follows_the_schedule():
  optimizer, _ = optimizer_builder.build(_optimizer(
      """momentum_optimizer { learning_rate { manual_step_learning_rate {
      initial_learning_rate: 0.5 schedule { step: 1 learning_rate: 0.25 } } }
      momentum_optimizer_value: 0.5 } use_moving_average: false"""))
  var = tf.Variable([1.0])
  optimizer.apply_gradients([(tf.constant([2.0]), var)])  # step 0: lr 0.5, v = -1.0
  optimizer.apply_gradients([(tf.constant([2.0]), var)])  # step 1: lr 0.25, v = -0.5 - 0.5
  np.testing.assert_allclose(var.numpy(), [1.0 - 1.0 - 1.0])
  assert int(optimizer.iterations) == 2


@pytest.mark.parametrize('text, message', [
    ('momentum_optimizer { learning_rate { manual_step_learning_rate { } } }', 'is empty'),
    ('momentum_optimizer { learning_rate { manual_step_learning_rate { schedule { step: 5 } '
     'schedule { step: 5 } } } }', 'strictly increasing'),
    ('momentum_optimizer { learning_rate { } }', 'no learning rate schedule'),
    ('use_moving_average: false', 'no optimizer set'),
    ('adam_optimizer { learning_rate { cosine_decay_learning_rate { total_steps: 5 '
     'warmup_steps: 10 } } }', 'total_steps'),
])
def test_bad_configs_name_the_field(text, message):
  with pytest.raises(ValueError, match=message) as error:
    optimizer_builder.build(_optimizer(text))
  assert 'train_config.optimizer' in str(error.value)
