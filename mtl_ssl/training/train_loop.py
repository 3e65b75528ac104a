"""Training loop (the OD API model_lib_v2.train_loop role), for any tf.distribute strategy.

Per step and replica: forward + weighted losses on the replica's share of the global batch; the
gradient of (total loss / replicas) is summed over replicas, clipped (train_config.
gradient_clipping_by_norm: global norm, or per variable) AFTER the sum, and applied once. Every replica loss is a
mean over its images, so N replicas x B/N images give the same update as one device with B
images. Checkpoints are <model_dir>/ckpt-<step>; a run resumes from the latest one, otherwise
starts from train_config.fine_tune_checkpoint.
"""
import datetime
import os
import re
import shutil
import time

from absl import logging
import tensorflow as tf

from mtl_ssl.builders import dataset_builder
from mtl_ssl.builders import model_builder
from mtl_ssl.builders import optimizer_builder
from mtl_ssl.config import config_util
from mtl_ssl.config import num_steps
from mtl_ssl.config import validation
from mtl_ssl.data.fields import InputDataFields as fields
from mtl_ssl.training import checkpoints
from mtl_ssl.training import checkpoint_recovery
from mtl_ssl.training import input_files
from mtl_ssl.training import model_io
from mtl_ssl.training import nonfinite
from mtl_ssl.training import strategies
from mtl_ssl.training import summaries
from mtl_ssl.training import training_utils


def select_trainable_variables(variables, train_config):
  """OD API rules: keep variables matching any update_trainable_variables regex (all when none),
  then drop those matching any freeze_variables regex (re.match on the variable name)."""
  selected = list(variables)
  if train_config.update_trainable_variables:
    patterns = list(train_config.update_trainable_variables)
    selected = [v for v in selected if any(re.match(p, v.name) for p in patterns)]
  if train_config.freeze_variables:
    patterns = list(train_config.freeze_variables)
    for pattern in patterns:
      if not any(re.match(pattern, v.name) for v in variables):
        logging.warning('train_config.freeze_variables %r matches no variable', pattern)
    selected = [v for v in selected if not any(re.match(p, v.name) for p in patterns)]
  if not selected:
    raise ValueError('train_config.update_trainable_variables / freeze_variables leave no '
                     'variable to train')
  return selected


def clip_gradients(gradients, train_config):
  """gradient_clipping_by_norm: the global norm of all gradients (OD API TF2), or each
  variable's own norm with gradient_clipping_per_variable (TF1 slim, the original mtl-ssl)."""
  clip = train_config.gradient_clipping_by_norm
  if clip <= 0:
    return gradients
  if train_config.gradient_clipping_per_variable:
    return [tf.clip_by_norm(g, clip) for g in gradients]
  return tf.clip_by_global_norm(gradients, clip)[0]


def random_frozen_backbone_warning(model_config, train_config):
  """A warning when a run starts its backbone from random weights with batch norm frozen.

  Frozen batch norm normalizes with fixed statistics (mean 0, variance 1 before any
  checkpoint), so nothing rescales the random convolutions: measured at initialization, a
  random MobileNet v1's features were ~1e-14 (no gradient reaches its kernels), ResNet-50's
  stayed O(1-10) through its shortcuts. None when a checkpoint is given or BN trains.
  """
  if train_config.fine_tune_checkpoint:
    return None
  extractor = model_config.faster_rcnn.feature_extractor
  if extractor.batch_norm_trainable:
    return None
  return (f'training {extractor.type or "the backbone"} from random weights with frozen batch '
          'norm (model.faster_rcnn.feature_extractor.batch_norm_trainable: false, no '
          'train_config.fine_tune_checkpoint): its activations are not rescaled and may vanish '
          '(a random MobileNet\'s features are ~1e-14, so its kernels get no gradient). Start '
          'from classification weights (fine_tune_checkpoint), or train batch norm '
          '(batch_norm_trainable: true, as the scenes configs do).')


def enable_deterministic_ops(seed=None):
  """Bit-reproducible training: tf.config.experimental.enable_op_determinism() for the whole
  process; returns the seed to use (0 when None: random ops then need one). On CPUs this also
  makes tf.image.crop_and_resize's gradient to the feature map correct: its multi-threaded
  kernel races and lost part of that gradient in 9 of 1,400 calls (up to 23% of its norm;
  docs/reliability.md). On GPUs ops without a deterministic kernel raise, crop_and_resize's
  gradient among them."""
  tf.config.experimental.enable_op_determinism()
  logging.info('Deterministic ops on (tf.config.experimental.enable_op_determinism)')
  return 0 if seed is None else seed


def _format_eta(seconds):
  return str(datetime.timedelta(seconds=int(round(seconds))))


class _Trainer:
  """Model, optimizer, data and the compiled step of one training run."""

  def __init__(self, configs, strategy, seed):
    self.configs = configs
    self.strategy = strategy
    self.train_config = configs['train_config']
    global_batch = self.train_config.batch_size
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
      raise ValueError(f'train_config.batch_size {global_batch} is not divisible by the '
                       f'{replicas} replicas of the distribution strategy')
    with strategy.scope():
      # the model pads ground truth to the same N as the input pipeline's batches
      max_boxes = max(configs['train_config'].max_number_of_boxes,
                      configs['train_input_config'].max_number_of_boxes)
      self.model = model_builder.build(configs['model'], is_training=True,
                                       max_num_groundtruth_boxes=max_boxes,
                                       use_bfloat16=self.train_config.use_bfloat16)
      self.optimizer, self.learning_rate = optimizer_builder.build(self.train_config.optimizer)

    def dataset_fn(input_context):
      return dataset_builder.build(
          configs['train_input_config'], global_batch, model_config=configs['model'],
          train_config=self.train_config, is_training=True,
          model_preprocess_fn=self.model.preprocess, input_context=input_context, seed=seed)

    self.dataset = strategy.distribute_datasets_from_function(dataset_fn)
    self._build_variables()
    self.variables = select_trainable_variables(self.model.trainable_variables, self.train_config)
    with strategy.scope():
      self.optimizer.build(self.variables)
    self.checkpoint = tf.train.Checkpoint(step=self.optimizer.iterations, model=self.model,
                                          optimizer=self.optimizer)
    self.step_fn = training_utils.GraphFunction(self._distributed_step)
    # model.mtl.train_every_n_steps: the steps between MTL steps run a detector-only trace
    self.mtl_every = 1
    if getattr(self.model, 'mtl_heads', None) is not None:
      self.mtl_every = int(configs['model'].mtl.train_every_n_steps)
    self.detector_step_fn = None
    if self.mtl_every > 1:
      self.detector_step_fn = training_utils.GraphFunction(self._distributed_step)
      # those steps update no MTL variable (not even by weight decay)
      heads = {v.ref() for v in self.model.mtl_heads.trainable_variables}
      self._detector_variables = [v for v in self.variables if v.ref() not in heads]
    self.mtl_on = True  # whether the step running (or last run) trains the MTL heads
    self._gradient_names = {}  # mtl_on -> names of the variables that step updates

  @property
  def gradient_variable_names(self):
    return self._gradient_names.get(self.mtl_on, [])

  def run_step(self, iterator, step):
    """One train step; `step` is the global step it completes (1-based): the MTL heads train
    when it is a multiple of mtl.train_every_n_steps, else the detector alone."""
    self.mtl_on = self.detector_step_fn is None or step % self.mtl_every == 0
    if self.mtl_on:
      return self.step_fn(iterator)
    with self.model.without_mtl():  # traced (once) with the MTL heads left out
      return self.detector_step_fn(iterator)

  def _forward(self, features, labels):
    model_io.provide_groundtruth(self.model, labels)
    predictions = self.model.predict(features[fields.image], features[fields.true_image_shape],
                                     training=True)
    result = model_io.losses_with_total(self.model, predictions,
                                        features[fields.true_image_shape],
                                        self.train_config.add_regularization_loss)
    self.model.clear_groundtruth()
    return result

  def _build_variables(self):
    """One forward pass on a real batch (separate iterator) creates every variable: eagerly on
    the first replica's share, under the strategy's scope (much faster than tracing the pass);
    TPUs need it traced on every replica."""
    features, labels = next(iter(self.dataset))
    if isinstance(self.strategy, tf.distribute.TPUStrategy):
      tf.function(lambda f, l: self.strategy.run(lambda f, l: self._forward(f, l)[1],
                                                 args=(f, l)))(features, labels)
      return
    first = lambda values: tf.nest.map_structure(
        lambda v: self.strategy.experimental_local_results(v)[0], values)
    with self.strategy.scope():
      self._forward(first(features), first(labels))

  def _replica_step(self, features, labels):
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    # some strategies (MultiWorkerMirrored) hand out batches without a static batch size
    batch_size = self.train_config.batch_size // replicas
    features, labels = tf.nest.map_structure(
        lambda t: tf.ensure_shape(t, [batch_size] + t.shape.as_list()[1:]), (features, labels))
    variables = self.variables if self.mtl_on else self._detector_variables
    with tf.GradientTape() as tape:
      losses, total = self._forward(features, labels)
      scaled = total / tf.cast(replicas, total.dtype)
    gradients = tape.gradient(scaled, variables)
    pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
    if len(pairs) < len(variables):
      logging.log_first_n(logging.WARNING, '%d trainable variables get no gradient, e.g. %s', 1,
                          len(variables) - len(pairs),
                          [v.name for g, v in zip(gradients, variables) if g is None][:3])
    gradients = [g for g, _ in pairs]
    self._gradient_names[self.mtl_on] = [v.name for _, v in pairs]
    not_finite = nonfinite.count_not_finite(total)  # summed with the gradients: one decision
    if replicas > 1:
      *gradients, not_finite = tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, gradients + [not_finite])
    gradients, health = nonfinite.zero_if_not_finite(gradients, not_finite)
    gradients = clip_gradients(gradients, self.train_config)
    self.optimizer.apply_gradients(zip(gradients, [v for _, v in pairs]),
                                   skip_gradients_aggregation=True)
    losses = {name: tf.cast(value, tf.float32) for name, value in losses.items()}
    losses['Loss/total_loss'] = total
    losses.update(health)
    return losses

  def _distributed_step(self, iterator):
    features, labels = next(iterator)
    per_replica = self.strategy.run(self._replica_step, args=(features, labels))
    return {name: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            for name, value in per_replica.items()}

  def restore_or_fine_tune(self, model_dir):
    latest = tf.train.latest_checkpoint(model_dir)
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info('Resuming from %s (step %d)', latest, self.optimizer.iterations.numpy())
    elif self.train_config.fine_tune_checkpoint:
      checkpoints.restore_fine_tune_checkpoint(self.model, self.train_config)
    else:
      warning = random_frozen_backbone_warning(self.configs['model'], self.train_config)
      if warning:
        logging.warning(warning)


def _input_pictures(configs, model, category_index, seed):
  """Pictures of a first training batch (own small dataset, with original images; not
  shuffled, so no shuffle buffer is filled for it)."""
  input_config = type(configs['train_input_config'])()
  input_config.CopyFrom(configs['train_input_config'])
  input_config.shuffle = False
  dataset = dataset_builder.build(
      input_config, min(3, configs['train_config'].batch_size),
      model_config=configs['model'], train_config=configs['train_config'], is_training=True,
      model_preprocess_fn=model.preprocess, retain_original_image=True, seed=seed)
  features, labels = next(iter(dataset))
  return summaries.train_input_pictures(features, labels, category_index)


def train_loop(pipeline_config_path, model_dir, config_override=None, train_steps=None,
               strategy=None, checkpoint_every_n=1000, checkpoint_max_to_keep=7,
               record_summaries=True, log_every_n=100, seed=None, on_checkpoint=None,
               scale_lr_schedule=True, deterministic=False):
  """Trains to `train_steps` (default train_config.num_steps) global steps.

  A train_steps other than num_steps replaces it, and stretches the learning-rate schedule with
  it unless scale_lr_schedule=False (mtl_ssl.config.num_steps); <model_dir>/pipeline.config
  records the values used. Nothing is written to model_dir before the model and data are built.
  on_checkpoint(path, step): called on the chief after each checkpoint is written (used by the
  train-and-evaluate mode). deterministic: enable_deterministic_ops() first (for the whole
  process). Returns the list of logged {'step', losses..., 'learning_rate'}.
  """
  configs = validation.load_and_validate(pipeline_config_path, config_override, mode='train')
  input_files.check(configs, ('train',))
  train_config = configs['train_config']
  if train_steps and int(train_steps) != train_config.num_steps:
    changes = num_steps.set_num_steps(train_config, train_steps, scale_lr_schedule)
    logging.warning('--num_train_steps %d replaces train_config.num_steps: %s%s', train_steps,
                    '; '.join(changes), ' (--noscale_lr_schedule keeps the config\'s schedule)'
                    if scale_lr_schedule else
                    ' (without --noscale_lr_schedule the schedule is stretched to fit)')
  train_steps = int(train_steps or train_config.num_steps)
  if train_steps <= 0:
    raise ValueError('no number of training steps: set --num_train_steps or '
                     'train_config.num_steps')
  strategy = strategy or tf.distribute.get_strategy()
  chief = strategies.is_chief(strategy)
  if chief:  # leftovers of a process killed while saving (docs/reliability.md)
    checkpoint_recovery.recover(model_dir)
  latest = tf.train.latest_checkpoint(model_dir)
  if latest and checkpoints.checkpoint_step(latest) >= train_steps:
    logging.info('%s is at step %d >= %d training steps: nothing to do.', latest,
                 checkpoints.checkpoint_step(latest), train_steps)
    return []
  if deterministic:
    seed = enable_deterministic_ops(seed)
  if seed is not None:
    tf.random.set_seed(seed)

  start = time.time()
  trainer = _Trainer(configs, strategy, seed)
  trainer.restore_or_fine_tune(model_dir)
  if chief:  # after a successful start: a failed one leaves no model_dir behind
    config_util.save_pipeline_config(configs, model_dir)
  logging.info('Model, data and optimizer ready in %.1f s (%d replicas, global batch %d)',
               time.time() - start, strategy.num_replicas_in_sync, train_config.batch_size)
  step = int(trainer.optimizer.iterations.numpy())
  if step >= train_steps:
    logging.info('Already at step %d >= %d training steps: nothing to do.', step, train_steps)
    return []

  manager_dir = strategies.task_directory(strategy, model_dir)
  manager = tf.train.CheckpointManager(
      trainer.checkpoint, manager_dir, max_to_keep=checkpoint_max_to_keep,
      keep_checkpoint_every_n_hours=train_config.keep_checkpoint_every_n_hours)
  write = chief and record_summaries
  writer = (tf.summary.create_file_writer(os.path.join(model_dir, 'train')) if write
            else tf.summary.create_noop_writer())
  if write:
    category_index = training_utils.category_index(configs['train_input_config'],
                                                   configs['model'])
    summaries.write_images(writer, _input_pictures(configs, trainer.model, category_index, seed),
                           step, max_outputs=3)

  guard = nonfinite.Guard(lambda: trainer.gradient_variable_names,
                          trainer.model.variables + trainer.optimizer.variables,
                          lambda: manager.latest_checkpoint)

  def save(step):
    guard.check_before_save(step)  # never a checkpoint after a NaN/Inf step
    path = manager.save(checkpoint_number=step)
    logging.info('Saved checkpoint %s', path if chief else '(worker copy)')
    if chief and on_checkpoint is not None:
      on_checkpoint(path, step)

  history = []
  iterator = iter(trainer.dataset)
  last_log_step, last_log_time, last_saved = step, time.time(), step
  with checkpoints.GracefulStop() as stop:
    try:
      while step < train_steps:
        outputs = trainer.run_step(iterator, step + 1)
        step += 1
        losses = guard.after_step(step, outputs)
        if step % log_every_n == 0 or step == train_steps or stop.requested:
          guard.check()
          now = time.time()
          steps_per_sec = (step - last_log_step) / max(now - last_log_time, 1e-9)
          last_log_step, last_log_time = step, now
          values = {name: float(value) for name, value in losses.items()}
          values['learning_rate'] = float(trainer.learning_rate(step - 1))
          values['steps_per_sec'] = steps_per_sec
          logging.info('Step %d/%d: %s | ETA %s', step, train_steps,
                       ' '.join(f'{k}={v:.4g}' for k, v in sorted(values.items())),
                       _format_eta((train_steps - step) / max(steps_per_sec, 1e-9)))
          summaries.write_scalars(writer, values, step)
          history.append(dict(values, step=step))
        if step % checkpoint_every_n == 0 or step == train_steps or stop.requested:
          save(step)
          last_saved = step
        if stop.requested:
          break
    except KeyboardInterrupt:
      if step > last_saved:
        logging.warning('Interrupted: saving a checkpoint at step %d', step)
        guard.check_before_save(step)
        manager.save(checkpoint_number=step)
      raise
    finally:
      writer.close()
      if not chief:
        shutil.rmtree(manager_dir, ignore_errors=True)
  return history
