"""Non-finite loss guard: training stops at the first step whose loss or gradients are NaN/Inf,
before a checkpoint can hold the damage.

In the compiled step, `zero_if_not_finite` makes one flag: the total loss of every replica, every
summed gradient and their global norm are finite. When it is false every gradient is replaced by
zero, so no NaN/Inf reaches the weights or the optimizer slots (a momentum optimizer still moves
the weights by its finite velocity; that state is never saved). The flag travels with the losses.

On the host, `Guard` reads the flag of step s only after step s+1 was dispatched (no extra wait
for the accelerator), and reads the latest one before every log line and checkpoint, where the
loop waits anyway. Before a checkpoint it also checks that every variable is finite (a NaN can
reach batch-norm statistics, or be hidden from the loss by a ReLU). The error names the step, the
Loss/... terms that were not finite and the checkpoint that is kept.
"""
import math

import tensorflow as tf

FLAG = 'NonFinite/all_finite'  # keys the step adds to its losses dict; Guard removes them
GRADIENTS = 'NonFinite/finite_gradients'


class NonFiniteLossError(ValueError):
  """Training hit a NaN/Inf loss, gradient or weight (a ValueError: the CLI prints one line)."""


def count_not_finite(loss):
  """1.0 when `loss` is NaN/Inf, else 0.0; summed over replicas with the gradients."""
  return 1.0 - tf.cast(tf.math.is_finite(loss), tf.float32)


def _values(gradient):
  return gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient


def _where(ok, gradient):
  if isinstance(gradient, tf.IndexedSlices):
    values = tf.where(ok, gradient.values, tf.zeros_like(gradient.values))
    return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)
  return tf.where(ok, gradient, tf.zeros_like(gradient))


def zero_if_not_finite(gradients, losses_not_finite):
  """(gradients, or all zeros when anything is non-finite; {FLAG, GRADIENTS} float outputs).

  gradients: the gradients summed over replicas; losses_not_finite: count_not_finite(total),
  summed over replicas the same way, so every replica takes the same decision.
  """
  finite_each = tf.stack([tf.reduce_all(tf.math.is_finite(_values(g))) for g in gradients])
  norm = tf.linalg.global_norm(gradients)  # overflows to Inf for huge finite gradients
  ok = (tf.equal(losses_not_finite, 0.0) & tf.reduce_all(finite_each) & tf.math.is_finite(norm))
  return [_where(ok, g) for g in gradients], {FLAG: tf.cast(ok, tf.float32),
                                              GRADIENTS: tf.cast(finite_each, tf.float32)}


def _format_value(value):
  return f'{value:.6g}'


class Guard:
  """Host side: checks the flags the step returns; raises NonFiniteLossError naming the step."""

  def __init__(self, variable_names_fn, variables_to_save, last_checkpoint_fn):
    """variable_names_fn() -> names of the gradients' variables, in order (known once traced)."""
    self._variable_names_fn = variable_names_fn
    self._last_checkpoint_fn = last_checkpoint_fn
    floats = [v for v in variables_to_save if v.dtype.is_floating]
    self._saved_names = [v.name for v in floats]
    self._finite_variables = tf.function(
        lambda: tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in floats]))
    self._pending = None  # (step, outputs) of the latest step, not checked yet

  def after_step(self, step, outputs):
    """Takes the step's outputs, returns its losses (without the guard's keys) and checks the
    previous step's flag, which is ready by now."""
    outputs = dict(outputs)
    health = {key: outputs.pop(key) for key in (FLAG, GRADIENTS)}
    # the names of THIS step's gradients (steps of different traces update different sets)
    names = list(self._variable_names_fn())
    previous, self._pending = self._pending, (step, outputs, health, names)
    if previous is not None:
      self._check(*previous)
    return outputs

  def check(self):
    """Checks the latest step now (waits for it)."""
    if self._pending is not None:
      pending, self._pending = self._pending, None
      self._check(*pending)

  def check_before_save(self, step):
    """check(), then every variable the checkpoint would hold must be finite."""
    self.check()
    finite = self._finite_variables().numpy()
    if not finite.all():
      bad = [name for name, ok in zip(self._saved_names, finite) if not ok]
      raise NonFiniteLossError(
          f'training stopped at step {step}: {len(bad)} variable(s) hold NaN/Inf values, e.g. '
          f'{", ".join(bad[:5])}; {self._kept()}')

  def _kept(self):
    last = self._last_checkpoint_fn()
    kept = f'the last checkpoint, {last}, is kept' if last else 'no checkpoint had been written'
    return (f'no checkpoint was written after it and {kept}. Lower the learning rate, set or '
            'lower train_config.gradient_clipping_by_norm, or check the data (docs/reliability.md)')

  def _check(self, step, outputs, health, variable_names):
    if float(health[FLAG]) >= 1.0:
      return
    losses = {name: float(value) for name, value in outputs.items()}
    bad_terms = [f'{name}={_format_value(value)}' for name, value in sorted(losses.items())
                 if name.startswith('Loss/') and not math.isfinite(value)]
    finite = health[GRADIENTS].numpy()
    bad_variables = [name for name, ok in zip(variable_names, finite) if ok < 1.0]
    if bad_terms:
      what = 'non-finite loss: ' + ', '.join(bad_terms)
    elif bad_variables:
      what = (f'finite losses but non-finite gradients for {len(bad_variables)} variable(s), '
              f'e.g. {", ".join(bad_variables[:5])}')
    else:
      what = 'the global norm of the gradients overflowed to Inf'
    raise NonFiniteLossError(f'training stopped at step {step}: {what}. The update of step '
                             f'{step} was not applied; {self._kept()}')
