"""Optimizer + learning-rate schedule from an `Optimizer` config (OD API optimizer.proto).

Optimizers are tf_keras 2 (non-legacy) ones, as the OD API's TF2 builder: momentum_optimizer ->
SGD with momentum (plain SGD: momentum_optimizer_value 0), rms_prop_optimizer -> RMSprop
(rho = decay), adam_optimizer -> Adam. use_moving_average is ignored (no moving average of the
weights is kept; mtl_ssl.config.validation warns about it, docs/config_support.md).

The schedules reproduce the OD API's learning_schedules.py at every step:
- constant_learning_rate
- exponential_decay_learning_rate: burn-in rate for step < burnin_steps, then
  initial * decay_factor ** ((step - burnin_steps) / decay_steps) (floored if staircase),
  never below min_learning_rate
- manual_step_learning_rate: initial rate, then schedule[i].learning_rate from schedule[i].step;
  with warmup a linear ramp from the initial rate to schedule[0]'s rate over [0, schedule[0].step)
- cosine_decay_learning_rate: linear warmup from warmup_learning_rate over warmup_steps, hold
  learning_rate_base for hold_base_rate_steps, cosine decay to 0 at total_steps, 0 after.
"""
import math

import tensorflow as tf
import tf_keras

_Schedule = tf_keras.optimizers.schedules.LearningRateSchedule


class ConstantSchedule(_Schedule):

  def __init__(self, learning_rate):
    self.learning_rate = float(learning_rate)

  def __call__(self, step):
    del step
    return tf.constant(self.learning_rate, tf.float32)

  def get_config(self):
    return {'learning_rate': self.learning_rate}


class ExponentialDecayWithBurnin(_Schedule):

  def __init__(self, initial_learning_rate, decay_steps, decay_factor, staircase=True,
               burnin_learning_rate=0.0, burnin_steps=0, min_learning_rate=0.0):
    self.initial_learning_rate = float(initial_learning_rate)
    self.decay_steps = int(decay_steps)
    self.decay_factor = float(decay_factor)
    self.staircase = bool(staircase)
    self.burnin_learning_rate = float(burnin_learning_rate) or self.initial_learning_rate
    self.burnin_steps = int(burnin_steps)
    self.min_learning_rate = float(min_learning_rate)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    exponent = (step - self.burnin_steps) / float(self.decay_steps)
    if self.staircase:
      exponent = tf.floor(exponent)
    decayed = self.initial_learning_rate * tf.pow(self.decay_factor, exponent)
    rate = tf.where(step < self.burnin_steps, self.burnin_learning_rate, decayed)
    return tf.maximum(rate, self.min_learning_rate)

  def get_config(self):
    return dict(initial_learning_rate=self.initial_learning_rate, decay_steps=self.decay_steps,
                decay_factor=self.decay_factor, staircase=self.staircase,
                burnin_learning_rate=self.burnin_learning_rate, burnin_steps=self.burnin_steps,
                min_learning_rate=self.min_learning_rate)


class ManualStepping(_Schedule):

  def __init__(self, boundaries, rates, warmup=False):
    self.boundaries = [int(b) for b in boundaries]
    self.rates = [float(r) for r in rates]
    self.warmup = bool(warmup)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    index = tf.reduce_sum(tf.cast(step >= tf.constant(self.boundaries, tf.float32), tf.int32))
    rate = tf.gather(tf.constant(self.rates, tf.float32), index)
    if self.warmup and self.boundaries:
      slope = (self.rates[1] - self.rates[0]) / self.boundaries[0]
      rate = tf.where(step < self.boundaries[0], self.rates[0] + slope * step, rate)
    return rate

  def get_config(self):
    return {'boundaries': self.boundaries, 'rates': self.rates, 'warmup': self.warmup}


class CosineDecayWithWarmup(_Schedule):

  def __init__(self, learning_rate_base, total_steps, warmup_learning_rate=0.0, warmup_steps=0,
               hold_base_rate_steps=0):
    self.learning_rate_base = float(learning_rate_base)
    self.total_steps = int(total_steps)
    self.warmup_learning_rate = float(warmup_learning_rate)
    self.warmup_steps = int(warmup_steps)
    self.hold_base_rate_steps = int(hold_base_rate_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    decay_start = self.warmup_steps + self.hold_base_rate_steps
    decay_length = float(max(self.total_steps - decay_start, 1))
    rate = 0.5 * self.learning_rate_base * (
        1.0 + tf.cos(math.pi * (step - decay_start) / decay_length))
    if self.hold_base_rate_steps > 0:
      rate = tf.where(step > decay_start, rate, self.learning_rate_base)
    if self.warmup_steps > 0:
      slope = (self.learning_rate_base - self.warmup_learning_rate) / self.warmup_steps
      rate = tf.where(step < self.warmup_steps, self.warmup_learning_rate + slope * step, rate)
    return tf.where(step > self.total_steps, 0.0, rate)

  def get_config(self):
    return dict(learning_rate_base=self.learning_rate_base, total_steps=self.total_steps,
                warmup_learning_rate=self.warmup_learning_rate, warmup_steps=self.warmup_steps,
                hold_base_rate_steps=self.hold_base_rate_steps)


def build_learning_rate(learning_rate_config, field='learning_rate'):
  """A LearningRateSchedule (callable on the step) from a LearningRate config."""
  kind = learning_rate_config.WhichOneof('learning_rate')
  if kind == 'constant_learning_rate':
    return ConstantSchedule(learning_rate_config.constant_learning_rate.learning_rate)
  if kind == 'exponential_decay_learning_rate':
    config = learning_rate_config.exponential_decay_learning_rate
    if config.decay_steps <= 0:
      raise ValueError(f'{field}.exponential_decay_learning_rate.decay_steps must be > 0')
    return ExponentialDecayWithBurnin(
        config.initial_learning_rate, config.decay_steps, config.decay_factor,
        staircase=config.staircase, burnin_learning_rate=config.burnin_learning_rate,
        burnin_steps=config.burnin_steps, min_learning_rate=config.min_learning_rate)
  if kind == 'manual_step_learning_rate':
    config = learning_rate_config.manual_step_learning_rate
    where = f'{field}.manual_step_learning_rate.schedule'
    if not config.schedule:
      raise ValueError(f'{where} is empty: give at least one {{step, learning_rate}}')
    boundaries = [entry.step for entry in config.schedule]
    if boundaries[0] == 0:
      raise ValueError(f'{where}: the first step must be > 0 (step 0 uses initial_learning_rate)')
    if any(b <= a for a, b in zip(boundaries, boundaries[1:])):
      raise ValueError(f'{where}: steps must be strictly increasing, got {boundaries}')
    rates = [config.initial_learning_rate] + [entry.learning_rate for entry in config.schedule]
    return ManualStepping(boundaries, rates, warmup=config.warmup)
  if kind == 'cosine_decay_learning_rate':
    config = learning_rate_config.cosine_decay_learning_rate
    where = f'{field}.cosine_decay_learning_rate'
    if config.learning_rate_base < config.warmup_learning_rate:
      raise ValueError(f'{where}: learning_rate_base must be >= warmup_learning_rate')
    if config.total_steps < config.warmup_steps:
      raise ValueError(f'{where}: total_steps must be >= warmup_steps')
    return CosineDecayWithWarmup(config.learning_rate_base, config.total_steps,
                                 config.warmup_learning_rate, config.warmup_steps,
                                 config.hold_base_rate_steps)
  raise ValueError(f'{field}: no learning rate schedule set (one of constant_learning_rate, '
                   'exponential_decay_learning_rate, manual_step_learning_rate, '
                   'cosine_decay_learning_rate)')


def build(optimizer_config, field='train_config.optimizer'):
  """Returns (tf_keras optimizer, learning-rate schedule)."""
  kind = optimizer_config.WhichOneof('optimizer')
  if kind is None:
    raise ValueError(f'{field}: no optimizer set (momentum_optimizer, rms_prop_optimizer or '
                     'adam_optimizer)')
  config = getattr(optimizer_config, kind)
  schedule = build_learning_rate(config.learning_rate, f'{field}.{kind}.learning_rate')
  if kind == 'momentum_optimizer':
    optimizer = tf_keras.optimizers.SGD(schedule, momentum=config.momentum_optimizer_value)
  elif kind == 'rms_prop_optimizer':
    optimizer = tf_keras.optimizers.RMSprop(schedule, rho=config.decay,
                                            momentum=config.momentum_optimizer_value,
                                            epsilon=config.epsilon)
  elif kind == 'adam_optimizer':
    optimizer = tf_keras.optimizers.Adam(schedule, epsilon=config.epsilon)
  else:
    raise ValueError(f'{field}: optimizer {kind!r} is not supported')
  return optimizer, schedule
