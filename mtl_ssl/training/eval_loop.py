"""Evaluation of checkpoints (the OD API model_lib_v2 eager_eval_loop / eval_continuously role).

For each checkpoint: one pass over the eval input (num_epochs forced to 1) with the inference
model (is_training=False); detections go to the evaluators of eval_config.metrics_set in absolute
pixels of the original image with 1-based classes; the mean of every Loss/* on the eval data and
the auxiliary-task quality (MTL/*) are added. Metrics are written to TensorBoard under
<model_dir>/eval and to <model_dir>/eval/metrics_<step>.json; the first num_visualizations
images go to TensorBoard as 'detections | ground truth' pictures. The first pass also checks the
ground truth against the model's detection caps and anchors (data_checks: warnings). Runs on one
device.
"""
import collections
import json
import math
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

from mtl_ssl import io_util
from mtl_ssl.builders import dataset_builder
from mtl_ssl.builders import model_builder
from mtl_ssl.config import config_util
from mtl_ssl.config import validation
from mtl_ssl.data.fields import InputDataFields as fields
from mtl_ssl.evaluation import builder as evaluator_builder
from mtl_ssl.training import checkpoints
from mtl_ssl.training import data_checks
from mtl_ssl.training import input_files
from mtl_ssl.training import model_io
from mtl_ssl.training import summaries
from mtl_ssl.training import training_utils


def eval_input_config(configs, eval_index=0, sample_1_of_n_eval_examples=None):
  """A copy of the eval input config that is read once (num_epochs 1), optionally subsampled."""
  inputs = configs['eval_input_configs']
  if not inputs:
    raise ValueError('the pipeline config has no eval_input_reader')
  if eval_index >= len(inputs):
    raise ValueError(f'eval_index {eval_index} but the config has {len(inputs)} '
                     'eval_input_reader(s)')
  config = type(inputs[eval_index])()
  config.CopyFrom(inputs[eval_index])
  config.num_epochs = 1
  if sample_1_of_n_eval_examples:
    config.sample_1_of_n_examples = int(sample_1_of_n_eval_examples)
  return config


def _json_value(value):
  value = float(value)
  return value if math.isfinite(value) else None


def _has_nonfinite_outputs(detections):
  """Per image of a numpy detections batch: True when any float output holds NaN/Inf."""
  bad = np.zeros([len(detections['num_detections'])], bool)
  for value in detections.values():
    if np.issubdtype(value.dtype, np.floating):
      bad |= ~np.isfinite(value.reshape(value.shape[0], -1)).all(axis=1)
  return bad


def nonfinite_warning(metrics, images_with_nonfinite, num_images):
  """A message naming the NaN/Inf losses and auxiliary metrics and the count of images with
  NaN/Inf detections, or None. (A per-class AP is NaN, as documented, for a class without ground
  truth: not reported.)"""
  names = sorted(k for k, v in metrics.items()
                 if k.startswith(('Loss/', 'MTL/')) and not math.isfinite(v))
  if not names and not images_with_nonfinite:
    return None
  parts = []
  if names:
    parts.append('non-finite ' + ', '.join(f'{k}={metrics[k]}' for k in names))
  if images_with_nonfinite:
    parts.append(f'{images_with_nonfinite} of {num_images} images gave NaN/Inf detection outputs')
  return ('; '.join(parts) + ': the checkpoint probably holds NaN/Inf weights (training diverged), '
          'so the detection metrics are not meaningful')


def write_metrics_json(directory, step, metrics, warnings=None):
  """<directory>/metrics_<step>.json: {"step", "metrics" (NaN/Inf as null)[, "warnings"]}."""
  path = os.path.join(directory, f'metrics_{int(step)}.json')
  content = {'step': int(step), 'metrics': {k: _json_value(v) for k, v in metrics.items()}}
  if warnings:
    content['warnings'] = list(warnings)
  text = json.dumps(content, indent=2, sort_keys=True)
  return io_util.atomic_write_text(path, text)  # never a truncated file, even when killed


class CheckpointEvaluation:
  """The inference model, eval data and writers, reused for every checkpoint evaluated."""

  def __init__(self, configs, model_dir, eval_index=0, sample_1_of_n_eval_examples=None):
    self.configs = configs
    self.eval_config = configs['eval_config']
    self.input_config = eval_input_config(configs, eval_index, sample_1_of_n_eval_examples)
    input_files.check(configs, ('eval',), eval_index)
    self.model = model_builder.build(configs['model'], is_training=False,
                                     use_bfloat16=configs['train_config'].use_bfloat16)
    self.num_visualizations = int(self.eval_config.num_visualizations)
    retain = bool(self.eval_config.retain_original_images) and self.num_visualizations > 0
    self.dataset = dataset_builder.build(
        self.input_config, max(1, self.eval_config.batch_size), model_config=configs['model'],
        is_training=False, model_preprocess_fn=self.model.preprocess,
        retain_original_image=retain)
    self.categories = training_utils.categories(self.input_config, configs['model'])
    self.category_index = {c['id']: c for c in self.categories}
    self.eval_dir = os.path.join(model_dir, 'eval')
    self._writer = None  # made at the first evaluation: a failed start writes nothing
    self.checkpoint = tf.train.Checkpoint(model=self.model)
    self._built = False
    self._data_checked = False  # the ground truth vs model checks run on the first pass
    self._eval_step = training_utils.GraphFunction(self._step, relax_image_size=True)

  @property
  def writer(self):
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(self.eval_dir)
    return self._writer

  def _step(self, features, labels):
    model_io.provide_groundtruth(self.model, labels)
    true_shapes = features[fields.true_image_shape]
    predictions = self.model.predict(features[fields.image], true_shapes, training=False)
    losses, total = model_io.losses_with_total(
        self.model, predictions, true_shapes,
        self.configs['train_config'].add_regularization_loss)
    losses = {name: tf.cast(value, tf.float32) for name, value in losses.items()}
    losses['Loss/total_loss'] = total
    detections = self.model.postprocess(predictions, true_shapes)
    self.model.clear_groundtruth()
    return losses, detections, model_io.auxiliary_statistics(predictions, labels)

  def restore(self, checkpoint_path):
    """Loads a training (or exported) checkpoint into the inference model; returns its step."""
    if not self._built:  # create the variables first, so the restore can be checked
      features, labels = next(iter(self.dataset))
      self._eval_step(features, labels)
      self._built = True
    status = self.checkpoint.read(checkpoint_path)
    status.assert_existing_objects_matched()
    status.expect_partial()  # optimizer slots and training-only parts are not needed here
    return checkpoints.checkpoint_step(checkpoint_path)

  def evaluate_checkpoint(self, checkpoint_path, step=None):
    restored_step = self.restore(checkpoint_path)
    step = restored_step if step is None else step
    logging.info('Evaluating %s (step %d)', checkpoint_path, step)
    return self.evaluate(step)

  def evaluate(self, step):
    """One pass over the eval data with the current weights; returns the metrics dict."""
    evaluators = evaluator_builder.build_evaluators(self.eval_config, self.categories)
    loss_sums = collections.defaultdict(float)
    aux_sums = collections.defaultdict(float)
    num_batches, num_images, pictures, nonfinite_images = 0, 0, [], 0
    summary = None if self._data_checked else data_checks.GroundTruthSummary()
    start = time.time()
    for features, labels in self.dataset:
      losses, detections, aux = self._eval_step(features, labels)
      for name, value in losses.items():
        loss_sums[name] += float(value)
      for name, value in aux.items():
        aux_sums[name] += float(value)
      numpy_batch = [{k: v.numpy() for k, v in d.items()} for d in (features, labels, detections)]
      nonfinite_images += int(_has_nonfinite_outputs(numpy_batch[2]).sum())
      if summary is not None:
        summary.add_batch(numpy_batch[0], numpy_batch[1])
      for image_id, groundtruth, detected in model_io.evaluation_examples(*numpy_batch,
                                                                          num_images):
        for evaluator in evaluators:
          evaluator.add_single_ground_truth_image_info(image_id, groundtruth)
          evaluator.add_single_detected_image_info(image_id, detected)
      if len(pictures) < self.num_visualizations and fields.original_image in features:
        pictures.extend(summaries.eval_side_by_side(
            *numpy_batch, self.category_index, min_score=self.eval_config.min_score_threshold,
            max_boxes=self.eval_config.max_num_boxes_to_visualize))
      num_batches += 1
      num_images += int(features[fields.image].shape[0])
    if num_batches == 0:
      raise ValueError('the eval input yielded no examples: check eval_input_reader input_path')
    if summary is not None:
      self._data_checked = True
      data_checks.warn(summary.warnings(self.configs['model']))
    metrics = {}
    for evaluator in evaluators:
      metrics.update(evaluator.evaluate())
    metrics.update({name: total / num_batches for name, total in loss_sums.items()})
    metrics.update(model_io.auxiliary_metrics(aux_sums))
    logging.info('Eval at step %d on %d images (%.1f s):\n%s', step, num_images,
                 time.time() - start,
                 '\n'.join(f'  {k}: {v:.4f}' for k, v in sorted(metrics.items())))
    summaries.write_scalars(self.writer, metrics, step)
    if pictures:
      summaries.write_images(
          self.writer, {f'eval_side_by_side_{i}': picture[None]
                        for i, picture in enumerate(pictures[:self.num_visualizations])}, step,
          max_outputs=1)
    warning = nonfinite_warning(metrics, nonfinite_images, num_images)
    if warning:
      logging.warning('Eval at step %d: %s', step, warning)
    write_metrics_json(self.eval_dir, step, metrics, [warning] if warning else None)
    return metrics


def recorded_num_steps(checkpoint_dir):
  """train_config.num_steps of the pipeline.config a training run wrote to checkpoint_dir (the
  steps it really trains, e.g. after --num_train_steps), or None."""
  path = os.path.join(checkpoint_dir, config_util.PIPELINE_CONFIG_NAME)
  if not tf.io.gfile.exists(path):
    return None
  try:
    return int(config_util.get_configs_from_pipeline_file(path)['train_config'].num_steps) or None
  except ValueError as error:
    logging.warning('cannot read the number of training steps from %s: %s', path, error)
    return None


def eval_continuously(pipeline_config_path, model_dir, checkpoint_dir, config_override=None,
                      train_steps=None, sample_1_of_n_eval_examples=None, wait_interval=None,
                      timeout=3600, eval_index=0):
  """Evaluates each new checkpoint of checkpoint_dir until one at >= the final training step is
  done or no new checkpoint appears for `timeout` seconds. Returns {step: metrics}.

  The final step is train_steps if given, else the num_steps recorded in checkpoint_dir's
  pipeline.config by the training run (which holds its --num_train_steps), else the config's.
  """
  configs = validation.load_and_validate(pipeline_config_path, config_override, mode='eval')
  if not train_steps:
    recorded = recorded_num_steps(checkpoint_dir)
    train_steps = recorded or configs['train_config'].num_steps
    if recorded:
      logging.info('The training run in %s ends at step %d (its pipeline.config)',
                   checkpoint_dir, recorded)
  train_steps = int(train_steps)
  if wait_interval is None:
    wait_interval = configs['eval_config'].eval_interval_secs
  evaluation = CheckpointEvaluation(configs, model_dir, eval_index, sample_1_of_n_eval_examples)
  results = {}
  for path in tf.train.checkpoints_iterator(checkpoint_dir, min_interval_secs=wait_interval,
                                            timeout=timeout):
    step = checkpoints.checkpoint_step(path)
    results[step] = evaluation.evaluate_checkpoint(path)
    if train_steps and step >= train_steps:
      logging.info('Evaluated the final checkpoint (step %d >= %d): done.', step, train_steps)
      break
  if not results:
    logging.warning('No checkpoint appeared in %s within %s s', checkpoint_dir, timeout)
  return results
