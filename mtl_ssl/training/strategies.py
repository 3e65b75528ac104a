"""Choice of tf.distribute strategy (OD API model_main_tf2 rules, one device by default).

- use_tpu                -> TPUStrategy on the TPU named tpu_name
- num_workers > 1        -> MultiWorkerMirroredStrategy (cluster from the TF_CONFIG env variable)
- several GPUs           -> MirroredStrategy over all of them
- one GPU / only the CPU -> OneDeviceStrategy on that device
"""
import json
import os

import tensorflow as tf


def select_strategy(use_tpu=False, tpu_name=None, num_workers=1, devices=None):
  """The strategy for these flags; `devices` (e.g. ['/cpu:0', '/cpu:1']) forces MirroredStrategy."""
  if use_tpu:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name or '')
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  if num_workers > 1:
    if 'TF_CONFIG' not in os.environ:
      raise ValueError(f'--num_workers={num_workers} needs the TF_CONFIG environment variable '
                       '(cluster spec and this task) for MultiWorkerMirroredStrategy')
    cluster = json.loads(os.environ['TF_CONFIG']).get('cluster', {})
    found = sum(len(cluster.get(kind, [])) for kind in ('chief', 'worker'))
    if found != num_workers:
      raise ValueError(f'--num_workers={num_workers} but TF_CONFIG lists {found} chief/worker '
                       'tasks')
    return tf.distribute.MultiWorkerMirroredStrategy()
  if devices:
    return tf.distribute.MirroredStrategy(devices=list(devices))
  gpus = tf.config.list_logical_devices('GPU')
  if len(gpus) > 1:
    return tf.distribute.MirroredStrategy()
  if len(gpus) == 1:
    return tf.distribute.OneDeviceStrategy(gpus[0].name)
  return tf.distribute.OneDeviceStrategy('/cpu:0')


def split_cpu(num_devices):
  """Makes the CPU appear as num_devices logical devices (call before TF initializes devices)."""
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
  return [device.name for device in tf.config.list_logical_devices('CPU')]


def is_chief(strategy):
  """True for the task that writes checkpoints, summaries and the saved config."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type is None or task_type == 'chief':
    return True
  has_chief = 'chief' in resolver.cluster_spec().as_dict()
  return task_type == 'worker' and task_id == 0 and not has_chief


def task_directory(strategy, directory):
  """`directory` on the chief, a per-task scratch directory next to it on other workers
  (MultiWorkerMirroredStrategy needs every worker to save, only the chief's copy is kept)."""
  if is_chief(strategy):
    return directory
  resolver = strategy.cluster_resolver
  return os.path.join(directory, f'workertemp_{resolver.task_type}_{resolver.task_id}')
