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
import tensorflow as tf

from mtl_ssl.builders import dataset_builder
from mtl_ssl.builders import model_builder
from mtl_ssl.config import validation
from mtl_ssl.data.fields import InputDataFields as fields
from mtl_ssl.evaluation import builder as evaluator_builder
from mtl_ssl.training import checkpoints
from mtl_ssl.training import data_checks
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


def write_metrics_json(directory, step, metrics):
  tf.io.gfile.makedirs(directory)
  path = os.path.join(directory, f'metrics_{int(step)}.json')
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump({'step': int(step), 'metrics': {k: _json_value(v) for k, v in metrics.items()}},
              f, indent=2, sort_keys=True)
  return path


class CheckpointEvaluation:
  """The inference model, eval data and writers, reused for every checkpoint evaluated."""

  def __init__(self, configs, model_dir, eval_index=0, sample_1_of_n_eval_examples=None):
    self.configs = configs
    self.eval_config = configs['eval_config']
    self.input_config = eval_input_config(configs, eval_index, sample_1_of_n_eval_examples)
    self.model = model_builder.build(configs['model'], is_training=False)
    self.num_visualizations = int(self.eval_config.num_visualizations)
    retain = bool(self.eval_config.retain_original_images) and self.num_visualizations > 0
    self.dataset = dataset_builder.build(
        self.input_config, max(1, self.eval_config.batch_size), model_config=configs['model'],
        is_training=False, model_preprocess_fn=self.model.preprocess,
        retain_original_image=retain)
    self.categories = training_utils.categories(self.input_config, configs['model'])
    self.category_index = {c['id']: c for c in self.categories}
    self.eval_dir = os.path.join(model_dir, 'eval')
    self.writer = tf.summary.create_file_writer(self.eval_dir)
    self.checkpoint = tf.train.Checkpoint(model=self.model)
    self._built = False
    self._data_checked = False  # the ground truth vs model checks run on the first pass
    self._eval_step = training_utils.GraphFunction(self._step)

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
    num_batches, num_images, pictures = 0, 0, []
    summary = None if self._data_checked else data_checks.GroundTruthSummary()
    start = time.time()
    for features, labels in self.dataset:
      losses, detections, aux = self._eval_step(features, labels)
      for name, value in losses.items():
        loss_sums[name] += float(value)
      for name, value in aux.items():
        aux_sums[name] += float(value)
      numpy_batch = [{k: v.numpy() for k, v in d.items()} for d in (features, labels, detections)]
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
    write_metrics_json(self.eval_dir, step, metrics)
    return metrics


def eval_continuously(pipeline_config_path, model_dir, checkpoint_dir, config_override=None,
                      train_steps=None, sample_1_of_n_eval_examples=None, wait_interval=None,
                      timeout=3600, eval_index=0):
  """Evaluates each new checkpoint of checkpoint_dir until one at >= train_steps is done or no
  new checkpoint appears for `timeout` seconds. Returns {step: metrics}."""
  configs = validation.load_and_validate(pipeline_config_path, config_override, mode='eval')
  train_steps = int(train_steps or configs['train_config'].num_steps)
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

