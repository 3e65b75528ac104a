"""The OD API children's timed train step (odapi_train_step.py, odapi_fpn_train_step.py).

Imported only in the OD API's venv: `model_lib_v2.eager_train_step` inside a tf.function, as
`model_lib_v2.train_loop` runs it, on batches already preprocessed by the model (as the OD API
input pipeline does).
"""
import time


def _train_step_fn(model, optimizer):
  """The OD API's train step for tf.function: returns the total loss."""
  from object_detection import model_lib_v2  # pylint: disable=g-import-not-at-top

  def train_step(features, labels):
    losses = model_lib_v2.eager_train_step(
        model, features, labels, unpad_groundtruth_tensors=True, optimizer=optimizer,
        training_step=optimizer.iterations, add_regularization_loss=True,
        clip_gradients_value=10.0, num_replicas=1.0)
    # the OD API 2.8 returns the losses dict (older versions the total)
    return losses['Loss/total_loss'] if isinstance(losses, dict) else losses

  return train_step


def timed_train_steps(model, optimizer, batches):
  """Traces and warms up the step (2 steps); returns run_steps(count) -> ms of each step."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  train_step = tf.function(_train_step_fn(model, optimizer))
  counter = [0]

  def run_steps(count):
    times = []
    for _ in range(count):
      features, labels = batches[counter[0] % len(batches)]
      counter[0] += 1
      start = time.perf_counter()
      train_step(features, labels).numpy()
      times.append((time.perf_counter() - start) * 1000.0)
    return times

  run_steps(2)  # trace + warm-up
  return run_steps


def step_gflop(model, optimizer, batches):
  """GFLOP of the OD API's traced train step (bench/_flops.py's count; traced, not run)."""
  import _flops  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  concrete = tf.function(_train_step_fn(model, optimizer)).get_concrete_function(*batches[0])
  total, _ = _flops.graph_flops(concrete.graph)
  return total / 1e9
