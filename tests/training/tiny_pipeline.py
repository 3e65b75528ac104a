"""A tiny real pipeline for the training / evaluation / export tests (not a test module).

64x64 scenes images (mtl_ssl.data.scenes, packaged Fashion-MNIST subset), a MobileNet-v1 Faster
R-CNN (depth multiplier 0.25) with all MTL tasks and refinement. Every sampler keeps all of its
candidates (minibatch >= anchors, second_stage_batch_size == max proposals, balance fractions
1.0) and there is no dropout, so a step does not depend on random sampling: one device and
several replicas compute the same update.
"""
import os

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


def write_scenes(directory, num_train=8, num_test=4):
  """Scenes TFRecords + label map in directory; returns the directory."""
  config = generator.SceneConfig(height=64, width=64, num_train_images=num_train,
                                 num_test_images=num_test, min_objects=2, max_objects=3,
                                 min_object_size=16, max_object_size=40, objects='subset')
  generator.write_dataset(config, str(directory))
  return str(directory)


def write_pipeline(directory, data_dir, batch_size=2, num_steps=3, name='pipeline.config'):
  """Writes the tiny pipeline.config; returns its path."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(str(directory), name)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(PIPELINE % {'data': data_dir, 'batch_size': batch_size, 'num_steps': num_steps,
                        'fc': FC_HYPERPARAMS})
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
