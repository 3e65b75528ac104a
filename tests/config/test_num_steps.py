"""Changing num_steps stretches the learning-rate schedule written for it."""
import pytest

from mtl_ssl.config import config_util
from mtl_ssl.config import num_steps

COSINE = """
train_config { num_steps: 1000 optimizer { momentum_optimizer { learning_rate {
  cosine_decay_learning_rate { learning_rate_base: 0.02 total_steps: 1000 warmup_steps: 100
                               hold_base_rate_steps: 50 } } } } }
"""
MANUAL = """
train_config { num_steps: 1000 optimizer { momentum_optimizer { learning_rate {
  manual_step_learning_rate { initial_learning_rate: 0.01
    schedule { step: 600 learning_rate: 0.001 } schedule { step: 601 learning_rate: 0.0001 }
  } } } } }
"""
EXPONENTIAL = """
train_config { num_steps: 1000 optimizer { adam_optimizer { learning_rate {
  exponential_decay_learning_rate { initial_learning_rate: 0.01 decay_steps: 400
                                    burnin_steps: 40 } } } } }
"""
CONSTANT = """
train_config { num_steps: 1000 optimizer { momentum_optimizer { learning_rate {
  constant_learning_rate { learning_rate: 0.01 } } } } }
"""


def _train_config(text):
  return config_util.parse_pipeline_text(text).train_config


def test_cosine_schedule_is_stretched_with_num_steps():
  config = _train_config(COSINE)
  changes = num_steps.set_num_steps(config, 250)
  cosine = config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate
  assert config.num_steps == 250
  assert (cosine.total_steps, cosine.warmup_steps, cosine.hold_base_rate_steps) == (250, 25, 12)
  assert cosine.learning_rate_base == pytest.approx(0.02)  # rates unchanged
  assert changes[0] == 'num_steps 1000 -> 250' and 'total_steps 250' in changes[1]
  # a tiny run keeps a valid schedule (total_steps >= warmup_steps >= 0)
  config = _train_config(COSINE)
  num_steps.set_num_steps(config, 2)
  cosine = config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate
  assert (cosine.total_steps, cosine.warmup_steps) == (2, 0)


def test_manual_steps_are_scaled_and_stay_strictly_increasing():
  config = _train_config(MANUAL)
  num_steps.set_num_steps(config, 2000)
  schedule = config.optimizer.momentum_optimizer.learning_rate.manual_step_learning_rate.schedule
  assert [entry.step for entry in schedule] == [1200, 1202]
  config = _train_config(MANUAL)
  num_steps.set_num_steps(config, 3)  # 600 * 0.003 = 1.8 -> 2, 601 -> 2 -> bumped to 3
  schedule = config.optimizer.momentum_optimizer.learning_rate.manual_step_learning_rate.schedule
  assert [entry.step for entry in schedule] == [2, 3]


def test_exponential_decay_and_constant_rates():
  config = _train_config(EXPONENTIAL)
  num_steps.set_num_steps(config, 500)
  decay = config.optimizer.adam_optimizer.learning_rate.exponential_decay_learning_rate
  assert (decay.decay_steps, decay.burnin_steps) == (200, 20)
  config = _train_config(CONSTANT)
  assert num_steps.set_num_steps(config, 10) == ['num_steps 1000 -> 10']


def test_scaling_can_be_turned_off_and_says_so():
  config = _train_config(COSINE)
  changes = num_steps.set_num_steps(config, 250, scale_lr_schedule=False)
  cosine = config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate
  assert config.num_steps == 250 and cosine.total_steps == 1000
  assert 'NOT scaled' in changes[-1] and '1000 steps' in changes[-1]
  assert num_steps.set_num_steps(_train_config(COSINE), 1000) == []  # nothing to change
