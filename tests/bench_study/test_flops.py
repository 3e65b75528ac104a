"""bench/_flops.py: the FLOP count behind bench_roofline.py's ours-vs-OD-API comparison."""
import os
import sys

import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'bench'))  # bench/ is not installed

import _flops  # pylint: disable=g-import-not-at-top,wrong-import-position

# a 3 x 3 convolution, 8 -> 16 channels, stride 2 on 2 x 10 x 10: 2 x outputs x (k * k * C_in)
_CONV = 2 * (2 * 5 * 5 * 16) * (3 * 3 * 8)


def test_part_of_reads_direction_and_stage_from_op_names():
  assert _flops.part_of('SecondStageFeatureExtractor/conv5_block1_0_conv/Conv2D') == (
      'forward', 'box-classifier stage (block 4)')
  assert _flops.part_of(
      'gradient_tape/model/FirstStageFeatureExtractor/conv4_block1_0_conv/Conv2D/'
      'Conv2DBackpropFilter') == ('backward', 'backbone to block 3')
  assert _flops.part_of('gradient_tape/FirstStageBoxPredictor/RPNConv/Conv2D') == (
      'backward', 'RPN')
  assert _flops.part_of('Loss/BoxClassifierLoss/mul') == ('forward', 'other')
  # a scope that merely contains the word is not the stage
  assert _flops.part_of('NotFirstStageFeatureExtractor/x')[1] == 'other'


@pytest.mark.parametrize('input_gradient', [False, True])
def test_graph_flops_counts_what_execution_runs(input_gradient):
  kernel = tf.Variable(tf.random.normal([3, 3, 8, 16]))

  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      with tf.name_scope('FirstStageBoxPredictor'):
        y = tf.nn.conv2d(x, kernel, 2, 'SAME')
      loss = tf.reduce_sum(y)
    gradients = tape.gradient(loss, [kernel, x])
    kernel.assign_sub(0.1 * gradients[0])  # a stateful output, as an optimizer's update
    return (loss, gradients[1]) if input_gradient else loss

  graph = tf.function(step).get_concrete_function(tf.random.normal([2, 10, 10, 8])).graph
  # the traced graph holds both gradients either way; execution prunes the unused one
  assert 'Conv2DBackpropInput' in {op.type for op in graph.get_operations()}
  total, parts = _flops.graph_flops(graph)
  assert parts[('forward', 'RPN')] == _CONV
  # Conv2DBackpropFilter, and Conv2DBackpropInput only when the input gradient is returned
  assert parts[('backward', 'RPN')] == (2 if input_gradient else 1) * _CONV
  # the rest (the sum, the update) is small and element-wise
  assert 0 < total - parts[('forward', 'RPN')] - parts[('backward', 'RPN')] < _CONV // 10


def test_graph_flops_leaves_out_ops_no_output_needs():
  kernel = tf.Variable(tf.random.normal([3, 3, 8, 16]))

  def step(x):
    with tf.name_scope('FirstStageBoxPredictor'):
      y = tf.nn.conv2d(x, kernel, 2, 'SAME')
    unused = tf.nn.conv2d(x, kernel, 1, 'SAME')  # traced, never returned: execution prunes it
    del unused
    return y

  graph = tf.function(step).get_concrete_function(tf.random.normal([2, 10, 10, 8])).graph
  assert sum(op.type == 'Conv2D' for op in graph.get_operations()) == 2
  assert _flops.graph_flops(graph) == (_CONV, {('forward', 'RPN'): _CONV})
