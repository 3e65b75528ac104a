"""Does XLA (jit_compile) pay for the detector's heavy parts on this machine?

A whole train / inference step cannot be compiled: the detector's NMS
(tf.image.combined_non_max_suppression) has no XLA kernel. This times the two parts that hold
nearly all the FLOPs, with and without jit_compile, in float32 and in bfloat16
(train_config.use_bfloat16), round robin, median of --repeats after a warm-up:
  backbone   ResNet-50 C4 proposal model on 2 x 320 x 320 images, forward + backward
  stage      the box-classifier stage (conv5, stride 2) on 128 RoI crops 7 x 7 x 1024,
             forward + backward (input and weight gradients)

  PYTHONPATH=. python bench/bench_xla.py [--repeats 5]
"""
import argparse
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mtl_ssl import backbones  # pylint: disable=g-import-not-at-top
  from mtl_ssl.protos import faster_rcnn_pb2  # pylint: disable=g-import-not-at-top

  config = faster_rcnn_pb2.FasterRcnnFeatureExtractor(type='faster_rcnn_resnet50_keras')
  inputs = {'backbone': tf.random.uniform([2, 320, 320, 3], -100.0, 100.0),
            'stage': tf.random.uniform([128, 7, 7, 1024])}
  passes = {}
  for dtype in ('float32', 'bfloat16'):
    extractor = backbones.build(config, True, box_classifier_stride=2, compute_dtype=dtype)
    models = {'backbone': extractor.get_proposal_feature_extractor_model(),
              'stage': extractor.get_box_classifier_feature_extractor_model()}
    for part, model in models.items():
      def forward_backward(x, model=model):
        with tf.GradientTape() as tape:
          tape.watch(x)
          y = tf.reduce_mean(model(x, training=True))
        return tape.gradient(y, [x] + model.trainable_variables)[-1]
      for jit in (False, True):
        passes[(part, dtype, jit)] = tf.function(forward_backward, jit_compile=jit)
  times = {key: [] for key in passes}
  for round_index in range(args.repeats + 1):
    for key, fn in passes.items():
      start = time.perf_counter()
      fn(inputs[key[0]]).numpy()
      if round_index:  # the first round traces / compiles
        times[key].append((time.perf_counter() - start) * 1000.0)
  print(f'load average after: {" ".join(f"{x:.2f}" for x in os.getloadavg())}')
  print('| part | dtype | ms | ms with jit_compile | jit / no jit |\n|---|---|---|---|---|')
  for part in ('backbone', 'stage'):
    for dtype in ('float32', 'bfloat16'):
      plain = sorted(times[(part, dtype, False)])[len(times[(part, dtype, False)]) // 2]
      jit = sorted(times[(part, dtype, True)])[len(times[(part, dtype, True)]) // 2]
      print(f'| {part} | {dtype} | {plain:.0f} | {jit:.0f} | {jit / plain:.2f} |')


if __name__ == '__main__':
  main()
