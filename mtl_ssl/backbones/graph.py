"""Rebuild slices of a tf_keras functional model as new, independent sub-models.

A tf_keras.applications model is used only as a blueprint: its layers' classes, configs and
connections are recorded once (`layer_specs`), the blueprint is dropped, and any slice
"from tensor A to tensor B" can then be re-created on a new Input with fresh layers
(`replay`). Each replay has its own variables, which is what the box-classifier copies of
the MTL heads need, and the configs can be edited on the way (strides, padding, frozen
batch norm, trainable=False).

Layers are identified by their position in the blueprint's `model.layers` (a deterministic
topological order), not by name: some applications (Inception-ResNet-v2) use Keras'
auto-generated names, which depend on how many models the process built before.
"""

import copy
import dataclasses

import tf_keras


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """How to re-create one blueprint layer and what it was called on."""
  index: int            # position in blueprint.layers
  name: str
  cls: type
  config: dict
  inbound: tuple        # names of the layers whose (single) outputs feed this one
  list_input: bool      # called with a list of tensors (Add, Concatenate, ...)


def layer_specs(model):
  """Records every layer of a functional model as a LayerSpec, in model.layers order."""
  layer_configs = {entry['name']: entry for entry in model.get_config()['layers']}
  specs = []
  for index, layer in enumerate(model.layers):
    entry = layer_configs[layer.name]
    nodes = entry['inbound_nodes']
    if len(nodes) > 1:
      raise ValueError(f'layer {layer.name!r} of {model.name!r} is shared ({len(nodes)} calls); '
                       'only single-use layers can be replayed')
    inbound = []
    for node in nodes:
      for producer, node_index, tensor_index, kwargs in node:
        if node_index != 0 or tensor_index != 0 or kwargs:
          raise ValueError(f'layer {layer.name!r} of {model.name!r} has an input that cannot be '
                           f'replayed: {producer!r} node {node_index} tensor {tensor_index} {kwargs}')
        inbound.append(producer)
    specs.append(LayerSpec(index=index, name=layer.name, cls=layer.__class__,
                           config=copy.deepcopy(layer.get_config()), inbound=tuple(inbound),
                           list_input=len(inbound) > 1))
  return specs


def ancestors(specs, output_name, stop_names=()):
  """Names of the layers needed to compute `output_name` (itself included), not looking
  past (and not including) the layers in `stop_names`."""
  by_name = {spec.name: spec for spec in specs}
  if output_name not in by_name:
    raise ValueError(f'no layer named {output_name!r} in the blueprint')
  found, stack = set(), [output_name]
  while stack:
    name = stack.pop()
    if name in found or name in stop_names:
      continue
    found.add(name)
    stack.extend(by_name[name].inbound)
  return found


def apply_slice(specs, input_name, output_name, inputs, make_layer):
  """Applies the slice input_name -> output_name to the tensor `inputs`.

  Args:
    specs: the blueprint's LayerSpecs.
    input_name: layer whose output the `inputs` tensor stands for.
    output_name: layer whose output is returned.
    inputs: a (Keras) tensor.
    make_layer: spec -> layer to call (a new one, or an existing one to share it).

  Returns:
    (output tensor, {blueprint index: layer used}).
  """
  outputs, used = apply_slice_outputs(specs, input_name, [output_name], inputs, make_layer)
  return outputs[0], used


def apply_slice_outputs(specs, input_name, output_names, inputs, make_layer):
  """apply_slice with several outputs (e.g. the C2..C5 maps of an FPN backbone): returns
  ([output tensor per name], {blueprint index: layer used}); each layer is made once."""
  needed = set()
  for output_name in output_names:
    needed |= ancestors(specs, output_name, stop_names=(input_name,))
  by_name = {spec.name: spec for spec in specs}
  for layer_name in needed:
    if not by_name[layer_name].inbound:
      raise ValueError(f'{output_names!r} depend on {layer_name!r}, which is not computed '
                       f'from {input_name!r}: cannot cut the model there')
  tensors = {input_name: inputs}
  used = {}
  for spec in specs:
    if spec.name not in needed:
      continue
    layer = make_layer(spec)
    args = [tensors[producer] for producer in spec.inbound]
    tensors[spec.name] = layer(args if spec.list_input else args[0])
    used[spec.index] = layer
  return [tensors[name] for name in output_names], used


def replay(specs, input_name, output_name, inputs, make_layer, name=None, output_dtype=None):
  """Re-creates the slice input_name -> output_name as a model on the tf_keras.Input
  `inputs`, with the layers from make_layer. Returns (tf_keras.Model, {index: layer}).
  output_dtype: cast the output to it (e.g. 'float32' after mixed-precision layers)."""
  outputs, used = apply_slice(specs, input_name, output_name, inputs, make_layer)
  if output_dtype is not None and outputs.dtype != output_dtype:
    outputs = tf_keras.layers.Activation('linear', dtype=output_dtype,
                                         name=f'{name or "model"}_output_cast')(outputs)
  return tf_keras.Model(inputs=inputs, outputs=outputs, name=name), used


def layer_from_spec(spec, config=None, cls=None):
  """A fresh, unbuilt layer with the spec's (or the given) class and config."""
  return (cls or spec.cls).from_config(copy.deepcopy(config if config is not None
                                                     else spec.config))
