"""How close the baseline train step is to this machine's arithmetic limit, ours and the OD API's.

Issue 11 asks for our float32 baseline step at <= 0.8x the OD API's on the same config. Both
run the same convolutions on the same oneDNN kernels; this bench measures whether the FLOPs
leave room for that. In one process and one run:

  peak        the machine's float32 rate: a 2048^3 matmul, and block 4's 3 x 3 convolution
              (512 -> 512 channels on 128 RoIs of 4 x 4), forward, medians of 20 calls,
              measured before and after the step rounds (the higher of the two)
  FLOPs       of each traced train step (bench/_flops.py: TensorFlow's profiler rules), ours
              per part (block 4 / backbone / RPN, forward and backward); the OD API's from
              its own traced eager_train_step in its child process
  steps       bench_cost.py's baseline with every layer trained (as the OD API trains; our
              default freezes conv1 and block 1, as the paper) and the OD API's step (TPU
              flags off and on), round robin, medians after two warm-up rounds

  kernels     each convolution shape of the step's largest parts: forward, input gradient and
              filter gradient, GFLOP/s each; and two exact rewrites of block 4's strided 1 x 1
              convolutions (subsample then convolve; its two convolutions as one), forward +
              backward vs the strided convolutions as the step runs them

and prints each step's achieved GFLOP/s as a share of the peak, the step time our FLOPs would
take at the peak (a floor no kernel choice goes below), and the rate 0.8x the OD API's time
would need.

  PYTHONPATH=. python bench/bench_roofline.py [--rounds 8] [--odapi_python PATH] [--skip_kernels]
"""
import argparse
import os
import resource
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _flops  # pylint: disable=g-import-not-at-top,wrong-import-position
import _synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position
import bench_cost  # pylint: disable=g-import-not-at-top,wrong-import-position


def _median_ms(fn, *args, calls=20):
  for _ in range(3):
    fn(*args).numpy()
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    fn(*args).numpy()
    times.append((time.perf_counter() - start) * 1000.0)
  return bench_cost._median(times)  # pylint: disable=protected-access


def peak_gflops():
  """{kernel: GFLOP/s} of float32 matmul and block 4's 3 x 3 convolution on this machine."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  n = 2048
  a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
  matmul_ms = _median_ms(tf.function(tf.matmul), a, b)
  x, w = tf.random.normal([128, 4, 4, 512]), tf.random.normal([3, 3, 512, 512])
  conv_ms = _median_ms(tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, 'SAME')), x, w)
  return {'matmul 2048^3': 2 * n ** 3 / matmul_ms / 1e6,
          'conv 3x3 512->512, 128 x 4 x 4': 2 * 128 * 16 * 9 * 512 * 512 / conv_ms / 1e6}


# (name, batch, input size, kernel, in, out, stride) of the baseline step's convolutions
_CONV_SHAPES = (
    ('block 4, 1x1 /2 1024->2048 (conv5_block1_0)', 128, 7, 1, 1024, 2048, 2),
    ('block 4, 1x1 /2 1024->512 (conv5_block1_1)', 128, 7, 1, 1024, 512, 2),
    ('block 4, 3x3 512->512 at 4x4', 128, 4, 3, 512, 512, 1),
    ('block 4, 1x1 512->2048 at 4x4', 128, 4, 1, 512, 2048, 1),
    ('block 4, 1x1 2048->512 at 4x4', 128, 4, 1, 2048, 512, 1),
    ('RPN, 3x3 1024->512 at 20x20', 2, 20, 3, 1024, 512, 1),
    ('block 3, 3x3 256->256 at 20x20', 2, 20, 3, 256, 256, 1),
    ('block 1, 3x3 64->64 at 80x80', 2, 80, 3, 64, 64, 1),
)


def kernel_rates():
  """{shape name: (forward, input gradient, filter gradient) GFLOP/s}."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rates = {}
  for name, batch, size, kernel, depth_in, depth_out, stride in _CONV_SHAPES:
    padding = 'SAME' if kernel > 1 else 'VALID'
    x = tf.random.normal([batch, size, size, depth_in])
    w = tf.random.normal([kernel, kernel, depth_in, depth_out]) * 0.01
    dy = tf.random.normal(tf.nn.conv2d(x, w, stride, padding).shape)
    strides = [1, stride, stride, 1]
    calls = (
        tf.function(lambda x, w: tf.nn.conv2d(x, w, stride, padding)),
        tf.function(lambda w, dy: tf.compat.v1.nn.conv2d_backprop_input(
            x.shape, w, dy, strides, padding)),
        tf.function(lambda x, dy: tf.compat.v1.nn.conv2d_backprop_filter(
            x, w.shape, dy, strides, padding)))
    flop = 2 * dy.shape[0] * dy.shape[1] * dy.shape[2] * kernel * kernel * depth_in * depth_out
    rates[name] = tuple(flop / _median_ms(call, *args, calls=10) / 1e6
                        for call, args in zip(calls, ((x, w), (w, dy), (x, dy))))
  return rates


def strided_rewrites():
  """ms of block 4's two strided 1 x 1 convolutions, forward + backward: as the step runs
  them, subsampled first (x[:, ::2, ::2] then stride 1), and as one convolution."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = tf.random.normal([128, 7, 7, 1024])
  w0, w1 = tf.random.normal([1, 1, 1024, 2048]) * 0.01, tf.random.normal([1, 1, 1024, 512]) * 0.01
  dy0, dy1 = tf.random.normal([128, 4, 4, 2048]), tf.random.normal([128, 4, 4, 512])
  forms = {
      'strided (as the step)': lambda x, w0, w1: (tf.nn.conv2d(x, w0, 2, 'VALID'),
                                                  tf.nn.conv2d(x, w1, 2, 'VALID')),
      'subsample, then stride 1': lambda x, w0, w1: (
          tf.nn.conv2d(x[:, ::2, ::2], w0, 1, 'VALID'), tf.nn.conv2d(x[:, ::2, ::2], w1, 1, 'VALID')),
      'one strided conv (kernels concatenated)': lambda x, w0, w1: tf.split(
          tf.nn.conv2d(x, tf.concat([w0, w1], -1), 2, 'VALID'), [2048, 512], -1),
  }

  def with_gradients(form):
    def step(x, w0, w1):
      with tf.GradientTape() as tape:
        tape.watch([x, w0, w1])
        y0, y1 = form(x, w0, w1)
        loss = tf.reduce_sum(y0 * dy0) + tf.reduce_sum(y1 * dy1)
      return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, [x, w0, w1])])
    return tf.function(step)

  return {name: _median_ms(with_gradients(form), x, w0, w1, calls=10)
          for name, form in forms.items()}


_OURS = 'baseline all layers'


def odapi_children(python):
  children = []
  for name, extra in bench_cost.ODAPI_VARIANTS.items():
    children.append(bench_cost.OdapiChild(name, python, extra + ['--count_flops']))
    print(f'  started {name}: {children[-1].info["gflop"]:.1f} GFLOP', flush=True)
  return children


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rounds', type=int, default=8)
  parser.add_argument('--odapi_python', default=os.environ.get('MTL_SSL_ODAPI_PYTHON'),
                      help='python of a venv with the OD API TF2 (default '
                           '$MTL_SSL_ODAPI_PYTHON); without it only ours is measured')
  parser.add_argument('--skip_kernels', action='store_true',
                      help='skip the per-kernel rates and the strided-conv rewrites')
  args = parser.parse_args()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  print(f'machine: {bench_cost._machine()}; TensorFlow {tf.__version__}; '  # pylint: disable=protected-access
        f'load average before: {" ".join(f"{x:.2f}" for x in os.getloadavg())}', flush=True)
  peaks = peak_gflops()
  kernels = {} if args.skip_kernels else kernel_rates()
  rewrites = {} if args.skip_kernels else strided_rewrites()
  baseline = bench_cost.TrainVariant(_OURS, _synthetic.batches(4))
  total, parts = _flops.graph_flops(
      baseline._step.get_concrete_function(*baseline.batches[0]).graph)  # pylint: disable=protected-access
  gflop = {_OURS: total / 1e9}
  steps = [baseline] + (odapi_children(args.odapi_python) if args.odapi_python else [])
  for child in steps[1:]:
    gflop[child.name] = child.info['gflop']
  ms = bench_cost.round_robin(steps, args.rounds)
  # the peak again after the rounds: the higher of the two (a busy moment only lowers it)
  peaks = {name: max(rate, again) for (name, rate), again in zip(
      peaks.items(), peak_gflops().values())}
  print_tables(peaks, parts, gflop, ms)
  print_kernels(kernels, rewrites, max(peaks.values()))
  print(f'load average after: {" ".join(f"{x:.2f}" for x in os.getloadavg())}; peak RSS '
        f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB')


def print_tables(peaks, parts, gflop, ms):
  peak = max(peaks.values())
  print('\n| float32 kernel | GFLOP/s |\n|---|---|')
  for name, rate in peaks.items():
    print(f'| {name} | {rate:.0f} |')
  print(f'\n| our train step ({_OURS}): part | GFLOP | share |\n|---|---|---|')
  total = sum(parts.values())
  for (direction, part), flops in sorted(parts.items(), key=lambda item: -item[1]):
    if flops / total >= 0.001:
      print(f'| {part}, {direction} | {flops / 1e9:.1f} | {100 * flops / total:.1f}% |')
  print('\n| train step | GFLOP | median ms | GFLOP/s | of the peak |\n|---|---|---|---|---|')
  for name, step_ms in ms.items():
    rate = gflop[name] / step_ms * 1e3
    print(f'| {name} | {gflop[name]:.1f} | {step_ms:.0f} | {rate:.0f} | '
          f'{100 * rate / peak:.0f}% |')
  floor_ms = gflop[_OURS] / peak * 1e3
  print(f'| our FLOPs at the peak (floor) | {gflop[_OURS]:.1f} | {floor_ms:.0f} | '
        f'{peak:.0f} | 100% |')
  for name in ms:
    if name != _OURS:
      target_ms = 0.8 * ms[name]
      rate = gflop[_OURS] / target_ms * 1e3
      print(f'| 0.8x {name} (goal) | {gflop[_OURS]:.1f} | {target_ms:.0f} | {rate:.0f} | '
            f'{100 * rate / peak:.0f}% |')
  for name in ms:
    if name != _OURS and abs(gflop[name] / gflop[_OURS] - 1) > 0.01:
      print(f'WARNING: {name} computes {gflop[name]:.1f} GFLOP, ours {gflop[_OURS]:.1f}: '
            'not the same work, so the time ratio is not a like-for-like comparison')


def print_kernels(kernels, rewrites, peak):
  if kernels:
    print('\n| convolution (float32) | forward | input grad | filter grad |\n|---|---|---|---|')
    for name, rates in kernels.items():
      print(f'| {name} | ' + ' | '.join(f'{r:.0f} ({100 * r / peak:.0f}%)' for r in rates) + ' |')
  if rewrites:
    base = rewrites['strided (as the step)']
    print('\n| block 4 strided 1x1 convs, fwd + bwd | ms | / as the step |\n|---|---|---|')
    for name, value in rewrites.items():
      print(f'| {name} | {value:.1f} | {value / base:.2f}x |')


if __name__ == '__main__':
  main()
