"""The TF Object Detection API's own FPN Faster R-CNN train step (child process of bench_fpn.py).

Run with the Python of a venv where the OD API TF2 (`object_detection`) is importable and mtl_ssl
is NOT (see bench_fpn.py). Builds the OD API model from the pipeline text bench_fpn.py writes to
stdin's first line (JSON), makes the same synthetic batches (same seed and generator as the
parent), preprocesses them outside the step as the OD API input pipeline does, and times
`model_lib_v2.eager_train_step` inside a tf.function, as `model_lib_v2.train_loop` runs it.

Protocol (one JSON object per line): parent -> {"config": text, "batch": B, "size": S,
"batches": N, "seed": s}; child -> {"ready": true, ...}; then parent -> {"steps": k},
child -> {"times_ms": [...]}; parent -> {"quit": true}.
"""
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')  # the OD API's tf.keras is Keras 2
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _odapi_step  # pylint: disable=g-import-not-at-top,wrong-import-position
import fpn_synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position


def _send(message):
  sys.stdout.write(json.dumps(message) + '\n')
  sys.stdout.flush()


def main():
  setup = json.loads(sys.stdin.readline())
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from object_detection.builders import model_builder  # pylint: disable=g-import-not-at-top
  from object_detection.protos import pipeline_pb2  # pylint: disable=g-import-not-at-top

  pipeline = text_format.Parse(setup['config'], pipeline_pb2.TrainEvalPipelineConfig())
  model = model_builder.build(pipeline.model, is_training=True)
  num_classes = pipeline.model.faster_rcnn.num_classes
  optimizer = tf.keras.optimizers.SGD(1e-3, momentum=0.9)
  batches = []
  for images, boxes, classes, counts in fpn_synthetic.batches(
      setup['batches'], setup['batch'], setup['size'], num_classes, setup['seed']):
    preprocessed, shapes = model.preprocess(tf.constant(images))
    labels = {'groundtruth_boxes': tf.constant(boxes),
              'groundtruth_classes': tf.one_hot(classes - 1, num_classes),
              'groundtruth_weights': tf.ones(boxes.shape[:2]),
              'num_groundtruth_boxes': tf.constant(counts)}
    batches.append(({'image': preprocessed, 'true_image_shape': shapes}, labels))

  run = _odapi_step.timed_train_steps(model, optimizer, batches)
  _send({'ready': True, 'tf': tf.__version__,
         'trainable_variables': len(model.trainable_variables)})
  for line in sys.stdin:
    message = json.loads(line)
    if message.get('quit'):
      break
    _send({'times_ms': run(int(message['steps']))})


if __name__ == '__main__':
  main()
