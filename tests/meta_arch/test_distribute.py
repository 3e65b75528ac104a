"""The Faster R-CNN train step runs under tf.distribute.MirroredStrategy with
two replicas (two logical CPUs, in a subprocess: devices are fixed at start)."""
import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent('''
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tf_keras
    from google.protobuf import text_format
    from mtl_ssl.builders import model_builder
    from mtl_ssl.protos import model_pb2
    CFG = """
    faster_rcnn {
      num_classes: 2
      image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
      feature_extractor { type: 'faster_rcnn_mobilenet_v1_keras' }
      first_stage_anchor_generator { grid_anchor_generator {
        scales: [0.125, 0.25] aspect_ratios: [1.0] } }
      first_stage_box_predictor_depth: 8
      first_stage_max_proposals: 6
      initial_crop_size: 4 maxpool_kernel_size: 2 maxpool_stride: 2
      second_stage_box_predictor { mask_rcnn_box_predictor { } }
      second_stage_batch_size: 4
      second_stage_post_processing { score_converter: SOFTMAX
        batch_non_max_suppression { max_detections_per_class: 3 max_total_detections: 3 } }
    }
    """
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
      model = model_builder.build(text_format.Parse(CFG, model_pb2.DetectionModel()),
                                  is_training=True, depth_multiplier=0.25)
      optimizer = tf_keras.optimizers.SGD(0.01)
      model.build_for_shapes(64, 64)
    images = tf.random.uniform([4, 64, 64, 3], 0, 255)
    boxes = tf.constant([[[0.1, 0.1, 0.6, 0.6]]] * 4)
    classes = tf.one_hot([[1]] * 4, 2)
    dataset = tf.data.Dataset.from_tensor_slices((images, boxes, classes)).batch(
        4, drop_remainder=True)
    dist = strategy.experimental_distribute_dataset(dataset)

    @tf.function
    def train_step(batch):
      def replica_fn(images, boxes, classes):
        preprocessed, shapes = model.preprocess(images)
        model.provide_groundtruth(tf.unstack(boxes), tf.unstack(classes))
        with tf.GradientTape() as tape:
          losses = model.loss(model.predict(preprocessed, shapes, training=True),
                              shapes)
          total = tf.add_n(list(losses.values())) / strategy.num_replicas_in_sync
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return total
      per_replica = strategy.run(replica_fn, args=batch)
      return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    for batch in dist:
      value = float(train_step(batch))
    assert np.isfinite(value), value
    print('OK', value)
''')


def test_train_step_under_mirrored_strategy():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
  out = subprocess.run([sys.executable, '-c', _SCRIPT], env=env, capture_output=True,
                       text=True, timeout=600, check=False)
  assert out.returncode == 0 and 'OK' in out.stdout, out.stderr[-4000:]
