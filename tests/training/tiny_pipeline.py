"""A tiny real pipeline for the training / evaluation / export tests (not a test module).

64x64 scenes images (mtl_ssl.data.scenes, packaged Fashion-MNIST subset), a MobileNet-v1 Faster
R-CNN (depth multiplier 0.25) with all MTL tasks and refinement. Every sampler keeps all of its
candidates (minibatch >= anchors, second_stage_batch_size == max proposals, balance fractions
1.0) and there is no dropout, so a step does not depend on random sampling: one device and
several replicas compute the same update.

The backbone starts from `backbone.h5` in the data directory (write_scenes), a random MobileNet
whose frozen batch-norm statistics are those of the training images: with Keras' initial
statistics (mean 0, variance 1) a random MobileNet's features fade to ~1e-13 by its stride-16
layer (test_random_frozen_backbone.py), every backbone gradient is then ~0 and the tests that
compare or resume weights would not see the backbone at all.
"""
import os
import random

from mtl_ssl.data.scenes import generator

PIPELINE = """
model {
  faster_rcnn {
    num_classes: 10
    image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
    feature_extractor { type: 'faster_rcnn_mobilenet_v1_keras' depth_multiplier: 0.25 }
    first_stage_anchor_generator {
      grid_anchor_generator { scales: [0.25, 0.5, 1.0] aspect_ratios: [0.5, 1.0, 2.0]
        height: 64 width: 64 height_stride: 16 width_stride: 16 }
    }
    first_stage_box_predictor_conv_hyperparams {
      op: CONV
      regularizer { l2_regularizer { weight: 0.0001 } }
      initializer { truncated_normal_initializer { stddev: 0.01 } }
    }
    first_stage_box_predictor_depth: 16
    first_stage_minibatch_size: 256
    first_stage_positive_balance_fraction: 1.0
    first_stage_max_proposals: 16
    initial_crop_size: 4
    maxpool_kernel_size: 2
    maxpool_stride: 2
    second_stage_batch_size: 16
    second_stage_balance_fraction: 1.0
    second_stage_box_predictor {
      mask_rcnn_box_predictor {
        use_dropout: false
        %(fc)s
      }
    }
    second_stage_post_processing {
      batch_non_max_suppression { score_threshold: 0.0 iou_threshold: 0.6
        max_detections_per_class: 10 max_total_detections: 20 }
      score_converter: SOFTMAX
    }
  }
  mtl {
    window: true window_class_loss_weight: 1.0
    closeness: true closeness_loss_weight: 0.3
    edgemask: true edgemask_loss_weight: 1.0
    refine: true refined_classification_loss_weight: 1.0 refine_residue: true
    num_windows: 4 window_min_size: 16 foreground_grid_size: 8
    window_box_predictor { mask_rcnn_box_predictor { use_dropout: false %(fc)s } }
    closeness_box_predictor { mask_rcnn_box_predictor { use_dropout: false %(fc)s } }
    edgemask_predictor {
      kernel_size: 1
      conv_hyperparams {
        op: CONV
        regularizer { l2_regularizer { weight: 0.0001 } }
        initializer { truncated_normal_initializer { stddev: 0.01 } }
      }
    }
  }
}
train_config {
  batch_size: %(batch_size)d
  num_steps: %(num_steps)d
  optimizer {
    momentum_optimizer {
      learning_rate { constant_learning_rate { learning_rate: 0.01 } }
      momentum_optimizer_value: 0.9
    }
    use_moving_average: false
  }
  gradient_clipping_by_norm: 10.0
}
train_input_reader {
  label_map_path: "%(data)s/scenes_label_map.pbtxt"
  shuffle: false
  tf_record_input_reader { input_path: "%(data)s/scenes_train.record" }
}
eval_config {
  metrics_set: "pascal_voc_detection_metrics"
  metrics_set: "coco_detection_metrics"
  num_visualizations: 2
  batch_size: 2
}
eval_input_reader {
  label_map_path: "%(data)s/scenes_label_map.pbtxt"
  shuffle: false
  num_epochs: 1
  tf_record_input_reader { input_path: "%(data)s/scenes_test.record" }
}
"""

FC_HYPERPARAMS = """fc_hyperparams {
          op: FC
          regularizer { l2_regularizer { weight: 0.0001 } }
          initializer { variance_scaling_initializer { factor: 1.0 uniform: true mode: FAN_AVG } }
        }"""


BACKBONE_WEIGHTS = 'backbone.h5'


def _scenes_config(num_train=8, num_test=4):
  return generator.SceneConfig(height=64, width=64, num_train_images=num_train,
                               num_test_images=num_test, min_objects=2, max_objects=3,
                               min_object_size=16, max_object_size=40, objects='subset')


def write_scenes(directory, num_train=8, num_test=4):
  """Scenes TFRecords + label map + backbone.h5 in directory; returns the directory."""
  config = _scenes_config(num_train, num_test)
  generator.write_dataset(config, str(directory))
  write_backbone_weights(os.path.join(str(directory), BACKBONE_WEIGHTS), config)
  return str(directory)


def write_backbone_weights(path, scenes_config=None):
  """Saves the pipeline's MobileNet (alpha 0.25, random weights, seed 0) with the batch-norm
  statistics of the scenes' training images, as Keras .h5 classification weights."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  config = scenes_config or _scenes_config()
  scenes = generator.SceneGenerator(config)
  images = [scenes.make_scene('train', i).image for i in range(config.num_train_images)]
  # unseeded tf_keras initializers draw their seeds from Python's `random`: seeded here for a
  # reproducible backbone, and restored after, so that the process's later tests (whose model
  # initializations draw from the same generator) see the state they would without this call
  python_state, numpy_state = random.getstate(), np.random.get_state()
  random.seed(0)
  np.random.seed(0)
  try:
    application = tf_keras.applications.MobileNet(weights=None, include_top=False, alpha=0.25,
                                                  input_shape=(None, None, 3))
    for layer in application.layers:
      if isinstance(layer, tf_keras.layers.BatchNormalization):
        layer.momentum = 0.0  # the moving statistics become this batch's
    batch = np.stack(images).astype(np.float32) / 127.5 - 1.0  # MobileNet's 'tf' preprocessing
    application(tf.constant(batch), training=True)
  finally:
    random.setstate(python_state)
    np.random.set_state(numpy_state)
  application.save_weights(path)
  return path


def write_pipeline(directory, data_dir, batch_size=2, num_steps=3, name='pipeline.config',
                   live_backbone=True):
  """Writes the tiny pipeline.config, fine-tuning from data_dir's backbone.h5 (written to
  directory when data_dir has none; live_backbone=False: from random weights, the backbone
  ~dead); returns its path."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(str(directory), name)
  text = PIPELINE % {'data': data_dir, 'batch_size': batch_size, 'num_steps': num_steps,
                     'fc': FC_HYPERPARAMS}
  weights = os.path.join(str(data_dir), BACKBONE_WEIGHTS)
  if not live_backbone:
    weights = None
  elif not os.path.isfile(weights):
    weights = os.path.join(str(directory), BACKBONE_WEIGHTS)
    if not os.path.isfile(weights):
      write_backbone_weights(weights)
  if weights:
    text = text.replace('train_config {\n', 'train_config {\n'
                        f'  fine_tune_checkpoint: "{weights}"\n'
                        '  fine_tune_checkpoint_type: "classification"\n'
                        '  fine_tune_checkpoint_version: V2\n', 1)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  return path


def event_values(directory):
  """{tag: [(step, value or image bytes count)]} read back from the event files of directory."""
  import glob  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorflow.core.util import event_pb2  # pylint: disable=import-outside-toplevel
  values = {}
  for path in sorted(glob.glob(os.path.join(str(directory), 'events.out.tfevents.*'))):
    for record in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        array = tf.make_ndarray(value.tensor)
        scalar = float(array) if array.ndim == 0 else array
        values.setdefault(value.tag, []).append((event.step, scalar))
  return values
