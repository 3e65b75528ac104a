"""The TF Object Detection API's own train step on bench_cost.py's setting (child process).

Run by bench_cost.py with the Python of a venv where the OD API TF2 (`object_detection`) is
importable (see docs/performance.md); it never imports mtl_ssl. Builds the OD API Faster R-CNN
ResNet-50 C4 (faster_rcnn_resnet50_keras) with the same settings as bench_cost.py's baseline,
feeds the same synthetic batches (bench/_synthetic.py; images preprocessed by the model outside
the step, as the OD API input pipeline does) and times `model_lib_v2.eager_train_step` in a
tf.function, as `model_lib_v2.train_loop` runs it. Speaks the round-robin protocol of
_synthetic.step_protocol on stdin/stdout.

  TF_USE_LEGACY_KERAS=1 <odapi python> bench/odapi_train_step.py [--tpu_flags]
"""
import argparse
import os
import resource
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')  # the OD API's tf.keras is Keras 2
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _odapi_step  # pylint: disable=g-import-not-at-top,wrong-import-position
import _synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position

# what the OD API's TF2 sample configs (..._tpu-8.config) set for TPUs
_TPU_FLAGS = ('use_static_shapes: true use_matmul_crop_and_resize: true '
              'clip_anchors_to_image: true use_static_balanced_label_sampler: true '
              'use_matmul_gather_in_matcher: true')


def odapi_text(tpu_flags):
  """bench_cost.py's baseline detector in the OD API's pipeline text (BN frozen, as ours)."""
  return 'model { %s }' % _synthetic.faster_rcnn_c4_text(
      extractor_fields='batch_norm_trainable: false ',
      extra=_TPU_FLAGS if tpu_flags else '')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--tpu_flags', action='store_true',
                      help='set the TPU-oriented flags of the OD API sample configs')
  parser.add_argument('--batches', type=int, default=4)
  parser.add_argument('--count_flops', action='store_true',
                      help="also report the traced step's GFLOP (bench/_flops.py)")
  args = parser.parse_args()

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from object_detection.builders import model_builder  # pylint: disable=g-import-not-at-top
  from object_detection.protos import pipeline_pb2  # pylint: disable=g-import-not-at-top

  text = odapi_text(args.tpu_flags)
  pipeline = text_format.Parse(text, pipeline_pb2.TrainEvalPipelineConfig())
  model = model_builder.build(pipeline.model, is_training=True)
  optimizer = tf.keras.optimizers.SGD(1e-3, momentum=0.9)
  batches = []
  for images, labels in _synthetic.batches(args.batches):
    preprocessed, shapes = model.preprocess(tf.constant(images))
    batches.append(({'image': preprocessed, 'true_image_shape': shapes},
                    {key: tf.constant(value) for key, value in labels.items()}))

  run_steps = _odapi_step.timed_train_steps(model, optimizer, batches)
  rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  info = {'ready': True, 'rss_mb': rss_mb, 'tf': tf.__version__}
  if args.count_flops:
    info['gflop'] = _odapi_step.step_gflop(model, optimizer, batches)
  _synthetic.step_protocol(run_steps, info)


if __name__ == '__main__':
  main()
