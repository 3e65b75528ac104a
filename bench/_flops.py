"""Floating-point operations of a traced TensorFlow graph, per part (TensorFlow only, so the
OD API's venv imports it too).

Counts what TensorFlow's profiler has a FLOPs rule for (convolutions and their two gradients,
matmuls, element-wise ops); ops without one (NMS, gathers, crop_and_resize) count 0, the same
way for every graph measured. Only ops that the function's outputs or its stateful ops (the
variable updates) depend on count: a traced gradient also holds ops that execution prunes,
e.g. the first convolution's gradient with respect to the image.
"""
import re

# name prefix -> part; ours and the OD API's Keras models use the same scope names
_PARTS = (('SecondStageFeatureExtractor', 'box-classifier stage (block 4)'),
          ('FirstStageFeatureExtractor', 'backbone to block 3'),
          ('FirstStageBoxPredictor', 'RPN'))


def part_of(op_name):
  """'forward' / 'backward' + the part an op belongs to, from its name."""
  backward = op_name.startswith('gradient_tape/')
  name = op_name[len('gradient_tape/'):] if backward else op_name
  part = next((label for prefix, label in _PARTS if re.search(rf'(^|/){prefix}', name)),
              'other')
  return ('backward' if backward else 'forward'), part


def live_op_names(graph):
  """Names of the ops that a function graph's outputs and control outputs depend on."""
  stack = [tensor.op for tensor in graph.outputs] + list(graph.control_outputs)
  live = set()
  while stack:
    op = stack.pop()
    if op.name in live:
      continue
    live.add(op.name)
    stack.extend(tensor.op for tensor in op.inputs)
    stack.extend(op.control_inputs)
  return live


def graph_flops(graph):
  """(total, {(direction, part): flops}) of a tf.function's graph (its live ops only)."""
  from tensorflow.python.profiler import model_analyzer  # pylint: disable=g-import-not-at-top
  from tensorflow.python.profiler import option_builder  # pylint: disable=g-import-not-at-top
  options = option_builder.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  profile = model_analyzer.profile(graph, options=options)
  live = live_op_names(graph)
  parts = {}
  for node in profile.children:
    if node.name in live:
      key = part_of(node.name)
      parts[key] = parts.get(key, 0) + node.total_float_ops
  return sum(parts.values()), parts
