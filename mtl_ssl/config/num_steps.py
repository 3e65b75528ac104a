"""Changing train_config.num_steps together with the learning-rate schedule written for it.

A schedule is written in steps (cosine total_steps and warmup, manual_step boundaries,
exponential decay_steps): when a run is made shorter or longer (model_main_tf2
--num_train_steps, mtl_ssl_demo --num_steps) every step count of the schedule is stretched by
new / old num_steps, so the run still warms up, decays and ends at the same fractions of
training. Rates are unchanged.
"""


def _scaled(value, scale, minimum=0):
  return max(minimum, int(round(value * scale)))


def scale_schedule(learning_rate, old_steps, new_steps):
  """Stretches a LearningRate proto written for old_steps to new_steps in place; returns a list
  of what changed (empty for a constant rate or when nothing needs to change)."""
  if not old_steps or old_steps == new_steps:
    return []
  scale = new_steps / old_steps
  kind = learning_rate.WhichOneof('learning_rate')
  if kind == 'cosine_decay_learning_rate':
    cosine = learning_rate.cosine_decay_learning_rate
    cosine.total_steps = _scaled(cosine.total_steps, scale, minimum=1)
    cosine.warmup_steps = min(_scaled(cosine.warmup_steps, scale), cosine.total_steps)
    cosine.hold_base_rate_steps = _scaled(cosine.hold_base_rate_steps, scale)
    return [f'cosine schedule total_steps {cosine.total_steps}, warmup_steps '
            f'{cosine.warmup_steps}, hold_base_rate_steps {cosine.hold_base_rate_steps}']
  if kind == 'manual_step_learning_rate':
    previous = 0
    for entry in learning_rate.manual_step_learning_rate.schedule:
      entry.step = max(previous + 1, _scaled(entry.step, scale, minimum=1))  # stays increasing
      previous = entry.step
    steps = [entry.step for entry in learning_rate.manual_step_learning_rate.schedule]
    return [f'manual_step schedule steps {steps}']
  if kind == 'exponential_decay_learning_rate':
    decay = learning_rate.exponential_decay_learning_rate
    decay.decay_steps = _scaled(decay.decay_steps, scale, minimum=1)
    decay.burnin_steps = _scaled(decay.burnin_steps, scale)
    return [f'exponential decay_steps {decay.decay_steps}, burnin_steps {decay.burnin_steps}']
  return []


def learning_rate_config(train_config):
  """The LearningRate proto of train_config.optimizer (None when no optimizer is set)."""
  kind = train_config.optimizer.WhichOneof('optimizer')
  return getattr(train_config.optimizer, kind).learning_rate if kind else None


def set_num_steps(train_config, num_steps, scale_lr_schedule=True):
  """Sets train_config.num_steps (in place) and, by default, scales the schedule with it.

  Returns the list of changes, for the log. With scale_lr_schedule=False the schedule is kept
  and the list says so (e.g. a cosine decay that would end before or after training does).
  """
  old_steps = int(train_config.num_steps)
  num_steps = int(num_steps)
  if num_steps == old_steps:
    return []
  train_config.num_steps = num_steps
  changes = [f'num_steps {old_steps} -> {num_steps}']
  learning_rate = learning_rate_config(train_config)
  if learning_rate is None or learning_rate.WhichOneof('learning_rate') in (
      None, 'constant_learning_rate'):
    return changes
  if not old_steps:
    return changes + ['learning-rate schedule NOT scaled: train_config.num_steps was not set, '
                      'so there is no length it was written for']
  if scale_lr_schedule:
    return changes + scale_schedule(learning_rate, old_steps, num_steps)
  return changes + [f'learning-rate schedule NOT scaled: it is still written for {old_steps} '
                    'steps']
