"""Faster R-CNN C4 feature extractor on top of a tf_keras.applications model.

The application is split at the stride-16 feature map F (e.g. ResNet conv4_x output):
  proposal model:        images [B,H,W,3] -> F [B,h,w,C_F]
  box-classifier model:  crops [N,k,k,C_F] -> [N,k',k',C'] (the last stage, e.g. conv5_x)
Both are rebuilt from the application's layer configs (see graph.py), so the box classifier
can be instantiated any number of times with independent variables (main head + MTL copies).

Training switches (as the MTL-SSL paper trained):
  batch_norm_trainable=False  every BN layer is a FrozenBatchNormalization: always normalizes
                              with its moving statistics, never updates them, and its
                              gamma/beta are not trainable (OD API: train BN only when
                              batch_norm_trainable and is_training).
  num_frozen_blocks=N         the stem ("conv1") and the first N blocks of the proposal
                              model get trainable=False (N=0: nothing frozen). The paper froze
                              conv1 + block1 (ResNet default N=1). `freeze_layer` ('', 'conv1',
                              'block1'..'block3', the original TF1 config field) says the same.
  weight_decay=w              regularization_losses() = w/2 * sum of squared trainable
                              kernels (TF1 slim l2_regularizer convention, as the paper's code).
  compute_dtype='bfloat16'    every layer computes in bfloat16 with float32 variables (the
                              tf_keras 'mixed_bfloat16' policy; batch norm keeps float32
                              statistics); the models' outputs (F, box-classifier features)
                              are cast back to float32, so nothing downstream changes.
"""

import tensorflow as tf
import tf_keras

from mtl_ssl.backbones import graph
from mtl_ssl.backbones import weights as weights_lib


@tf_keras.saving.register_keras_serializable(package='mtl_ssl')
class FrozenBatchNormalization(tf_keras.layers.BatchNormalization):
  """Batch norm fixed to inference mode with non-trainable gamma/beta (paper: 'BN frozen').

  `training` is ignored, so even a training=True call neither uses batch statistics nor
  updates the moving mean/variance; a parent's `trainable = True` does not unfreeze it.
  """

  @property
  def trainable(self):
    return False

  @trainable.setter
  def trainable(self, value):
    del value  # always frozen

  def call(self, inputs, training=None):
    last_axis = inputs.shape.rank is not None and self.axis == [inputs.shape.rank - 1]
    if not training or inputs.dtype != tf.float32 or not last_axis:
      # inference: the fused kernel, which graph optimizers fold into the convolution
      return super().call(inputs, training=False)
    # training calls: y = x * a + b with a, b from the fixed statistics, the same values, but
    # its gradient is one multiply, where the fused kernel's gradient also reduces over x and
    # dy for gamma / beta (frozen here) (bench/bench_frozen_bn.py, docs/performance.md).
    scale = tf.math.rsqrt(self.moving_variance + self.epsilon)
    if self.gamma is not None:
      scale = scale * self.gamma
    offset = -self.moving_mean * scale
    if self.beta is not None:
      offset = offset + self.beta
    return inputs * scale + offset


COMPUTE_DTYPES = ('float32', 'bfloat16')
_LAYER_DTYPES = {'float32': None, 'bfloat16': 'mixed_bfloat16'}  # None: the blueprint's own


_KERNEL_ATTRIBUTES = ('kernel', 'depthwise_kernel', 'pointwise_kernel')


def _trainable_kernels(model):
  kernels = []
  for layer in model.layers:
    if not layer.trainable:
      continue
    for attribute in _KERNEL_ATTRIBUTES:
      variable = getattr(layer, attribute, None)
      if variable is not None and variable.trainable:
        kernels.append(variable)
  return kernels


def freeze_layer_to_num_stages(freeze_layer):
  """Original config string -> number of frozen stages (stem counts as stage 1)."""
  freeze_layer = (freeze_layer or '').strip()
  if freeze_layer == '':
    return 0
  if freeze_layer == 'conv1':
    return 1
  if freeze_layer.startswith('block') and freeze_layer[5:].isdigit():
    return int(freeze_layer[5:]) + 1
  raise ValueError(f"feature_extractor.freeze_layer must be '', 'conv1' or 'blockN', "
                   f'got {freeze_layer!r}')


class ApplicationFeatureExtractor:
  """Base class; subclasses describe one tf_keras.applications backbone.

  Subclass attributes / hooks:
    proposal_output_layer: name of the layer whose output is F.
    box_output_layer: name of the layer whose output is the box-classifier feature.
    preprocess_mode: 'caffe' (BGR, ImageNet mean subtraction) or 'tf' (scale to [-1, 1]),
      as tf_keras.applications.<model>.preprocess_input.
    default_num_frozen_blocks: used when neither num_frozen_blocks nor freeze_layer is given.
    _application(weights, include_top): the tf_keras.applications model.
    _stage_ends(specs): names ending the stem and each proposal-stage block, in order.
    _edit_proposal_config(spec, config) / _edit_box_config(spec, config): config changes.
  """

  proposal_output_layer = None
  box_output_layer = None
  preprocess_mode = 'tf'
  default_num_frozen_blocks = 0

  def __init__(self, is_training, first_stage_features_stride=16, batch_norm_trainable=False,
               weight_decay=0.0, num_frozen_blocks=None, freeze_layer=None,
               compute_dtype='float32'):
    if first_stage_features_stride != 16:
      raise ValueError('feature_extractor.first_stage_features_stride must be 16 for '
                       f'{type(self).__name__}, got {first_stage_features_stride}')
    if weight_decay < 0:
      raise ValueError(f'feature_extractor.weight_decay must be >= 0, got {weight_decay}')
    self._is_training = bool(is_training)
    self._first_stage_features_stride = first_stage_features_stride
    self._train_batch_norm = bool(batch_norm_trainable) and self._is_training
    self._weight_decay = float(weight_decay)
    if compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(f'compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}')
    self._layer_dtype = _LAYER_DTYPES[compute_dtype]
    self.compute_dtype = compute_dtype

    blueprint = self._application(weights=None, include_top=False)
    self._specs = graph.layer_specs(blueprint)
    self._input_name = blueprint.layers[0].name
    self.proposal_feature_depth = int(
        blueprint.get_layer(self.proposal_output_layer).output.shape[-1])
    self.box_classifier_feature_depth = int(
        blueprint.get_layer(self.box_output_layer).output.shape[-1])
    del blueprint

    self._stage_of_layer = self._assign_stages()
    num_stages = len(set(self._stage_of_layer.values()))
    if num_frozen_blocks is not None and freeze_layer is not None:
      raise ValueError('give num_frozen_blocks or freeze_layer, not both')
    if freeze_layer is not None:
      self._num_frozen_stages = freeze_layer_to_num_stages(freeze_layer)
    else:
      blocks = self.default_num_frozen_blocks if num_frozen_blocks is None else num_frozen_blocks
      if blocks < 0:
        raise ValueError(f'num_frozen_blocks must be >= 0, got {blocks}')
      self._num_frozen_stages = blocks + 1 if blocks > 0 else 0
    if self._num_frozen_stages > num_stages:
      raise ValueError(f'{type(self).__name__} has a stem and {num_stages - 1} blocks before F; '
                       f'cannot freeze {self._num_frozen_stages - 1} blocks')

    self._proposal_model = None
    self._proposal_layers = {}
    self._box_copies = []          # [(model, {blueprint index: layer})] with classification init
    self._own_init_copies = []     # the same, for copies that keep their own initialization
    self._box_names = set()
    self._pending_weights = None   # {blueprint index: arrays} from load_classification_weights
    self._classification_backbone = None

  # ----- hooks -----------------------------------------------------------------------------
  def _application(self, weights, include_top):
    raise NotImplementedError

  def _stage_ends(self, specs):
    raise NotImplementedError

  def _edit_proposal_config(self, spec, config):
    del spec
    return config

  def _edit_box_config(self, spec, config):
    del spec
    return config

  # ----- OD API interface ------------------------------------------------------------------
  @property
  def is_training(self):
    return self._is_training

  @property
  def first_stage_features_stride(self):
    return self._first_stage_features_stride

  @property
  def num_frozen_stages(self):
    """Frozen stages counted from the stem (0 = none, 1 = stem, 2 = stem + block1, ...)."""
    return self._num_frozen_stages

  def preprocess(self, resized_inputs):
    """float32 images in 0..255 -> what the ImageNet weights expect (Keras preprocess_input)."""
    images = tf.convert_to_tensor(resized_inputs, dtype=tf.float32)
    if images.shape.rank != 4 or images.shape[-1] != 3:
      raise ValueError(f'preprocess expects [batch, height, width, 3] images, got {images.shape}')
    if self.preprocess_mode == 'caffe':
      return images[..., ::-1] - tf.constant([103.939, 116.779, 123.68], tf.float32)
    return images / 127.5 - 1.0

  def get_proposal_feature_extractor_model(self, name='FirstStageFeatureExtractor'):
    """images [B,H,W,3] -> F [B,ceil(H/16),ceil(W/16),C_F]. Built once; later calls return it."""
    if self._proposal_model is None:
      inputs = tf_keras.Input(shape=(None, None, 3), name=f'{name}_images')
      self._proposal_model, self._proposal_layers = graph.replay(
          self._specs, self._input_name, self.proposal_output_layer, inputs,
          self._make_proposal_layer, name=name, output_dtype=self._output_dtype())
      self._apply_weights(self._proposal_layers, self._pending_weights)
      if self._pending_weights:
        self._pending_weights = {index: arrays for index, arrays in self._pending_weights.items()
                                 if index not in self._proposal_layers}
    return self._proposal_model

  def get_box_classifier_feature_extractor_model(self, name='SecondStageFeatureExtractor',
                                                 classification_init=True):
    """crops [N,k,k,C_F] -> [N,k',k',C']; every call builds a NEW copy with its own variables.

    A copy starts from the classification weights when load_classification_weights was
    called before (or later), else from a fresh random initialization.
    classification_init=False: this copy never takes classification weights (nor the main
    copy's, see propagate_main_box_classifier_weights) and keeps its own initialization (the
    original's MTL copies with share_second_stage_init false). A name used before by this
    extractor gets a numeric suffix (name_1, name_2, ...).
    """
    unique_name, suffix = name, 0
    while unique_name in self._box_names:
      suffix += 1
      unique_name = f'{name}_{suffix}'
    self._box_names.add(unique_name)
    inputs = tf_keras.Input(shape=(None, None, self.proposal_feature_depth),
                            name=f'{unique_name}_crops')
    model, layers = graph.replay(self._specs, self.proposal_output_layer, self.box_output_layer,
                                 inputs, self._make_box_layer, name=unique_name,
                                 output_dtype=self._output_dtype())
    if classification_init:
      self._apply_weights(layers, self._pending_weights)
      self._box_copies.append((model, layers))
    else:
      self._own_init_copies.append((model, layers))
    return model

  @property
  def box_classifier_models(self):
    """The box-classifier copies made so far that take classification weights, in creation
    order (the first is the main one)."""
    return [model for model, _ in self._box_copies]

  def copy_box_classifier_weights(self, src_model, dst_model):
    """dst := src (all weights, incl. BN moving statistics); both made by this extractor."""
    src_layers, dst_layers = self._layers_of(src_model), self._layers_of(dst_model)
    for index, src_layer in src_layers.items():
      if src_layer.weights:
        dst_layers[index].set_weights(src_layer.get_weights())

  def load_classification_weights(self, source):
    """Loads ImageNet classification weights into the proposal model and every box copy.

    `source`: 'imagenet' (Keras download; online only), a Keras .h5 weights file of the
    corresponding tf_keras.applications model, or a TF checkpoint of it (see weights.py).
    Box-classifier copies made later start from the same weights (paper: the auxiliary
    block4 copies start from the same ImageNet weights).
    """
    loaded = weights_lib.load_application_weights(self._application, source)
    expected = {spec.index for spec in self._specs if self._has_weights(spec)}
    missing = sorted(expected - set(loaded))
    if missing:
      raise ValueError(f'classification weights {source!r} lack layers '
                       f'{[self._specs[i].name for i in missing][:5]}')
    if self._proposal_model is not None:
      self._apply_weights(self._proposal_layers, loaded)
      # Only box copies made later still need these: keep the box-stage arrays only.
      loaded = {index: arrays for index, arrays in loaded.items()
                if index not in self._proposal_layers}
    for _, layers in self._box_copies:
      self._apply_weights(layers, loaded)
    self._pending_weights = loaded

  load_imagenet_weights = load_classification_weights  # name used in docs/architecture.md

  @property
  def classification_backbone(self):
    """The application rebuilt from the proposal layers + the main box classifier's layers.

    Its object graph mirrors the tf_keras.applications model, so a tf.train.Checkpoint of
    the application (e.g. `tf.train.Checkpoint(feature_extractor=app)`) restores into it.
    """
    if self._classification_backbone is None:
      if not self._box_copies:
        raise ValueError('classification_backbone needs the main box classifier: call '
                         'get_box_classifier_feature_extractor_model() first')
      self.get_proposal_feature_extractor_model()
      inputs = tf_keras.Input(shape=(None, None, 3), name='classification_backbone_images')
      reuse = dict(self._proposal_layers)
      reuse.update(self._box_copies[0][1])
      self._classification_backbone, _ = graph.replay(
          self._specs, self._input_name, self.box_output_layer, inputs,
          lambda spec: reuse[spec.index], name='classification_backbone')
      # Same layer objects (shared with the proposal model and the main box classifier),
      # in the application's order: checkpoints of the application fit (see tests).
    return self._classification_backbone

  def classification_backbone_objects(self):
    """Trackables for tf.train.Checkpoint restore of a classification checkpoint."""
    return {'feature_extractor': self.classification_backbone}

  def propagate_main_box_classifier_weights(self):
    """Copies the main box classifier's weights into every other copy (e.g. after a
    tf.train.Checkpoint restore through classification_backbone_objects)."""
    if not self._box_copies:
      return
    main = self._box_copies[0][0]
    for model, _ in self._box_copies[1:]:
      self.copy_box_classifier_weights(main, model)

  def regularization_losses(self):
    """[w/2 * sum(kernel**2)] per model (proposal + each box copy) over trainable kernels."""
    if not self._weight_decay:
      return []
    models = ([self._proposal_model] if self._proposal_model is not None else [])
    models += [model for model, _ in self._box_copies + self._own_init_copies]
    losses = []
    for model in models:
      kernels = _trainable_kernels(model)
      if kernels:
        losses.append(0.5 * self._weight_decay *
                      tf.add_n([tf.reduce_sum(tf.square(kernel)) for kernel in kernels]))
    return losses

  # ----- internals -------------------------------------------------------------------------
  def _assign_stages(self):
    """{blueprint index: stage} for the proposal layers: 0 = stem, k = block k."""
    stage_of, seen = {}, set()
    ends = self._stage_ends(self._specs)
    for stage, end in enumerate(ends):
      names = graph.ancestors(self._specs, end, stop_names=(self._input_name,)) - seen
      seen |= names
      for spec in self._specs:
        if spec.name in names:
          stage_of[spec.index] = stage
    if ends[-1] != self.proposal_output_layer:
      raise ValueError('the last stage must end at the proposal output layer')
    return stage_of

  def _make_proposal_layer(self, spec):
    config = self._edit_proposal_config(spec, dict(spec.config))
    frozen = self._stage_of_layer.get(spec.index, 0) < self._num_frozen_stages
    return self._make_layer(spec, config, frozen)

  def _make_box_layer(self, spec):
    return self._make_layer(spec, self._edit_box_config(spec, dict(spec.config)), frozen=False)

  def _output_dtype(self):
    return 'float32' if self._layer_dtype else None

  def _make_layer(self, spec, config, frozen):
    if self._layer_dtype:
      config['dtype'] = self._layer_dtype
    if issubclass(spec.cls, tf_keras.layers.BatchNormalization) and not self._train_batch_norm:
      return graph.layer_from_spec(spec, config, cls=FrozenBatchNormalization)
    if frozen:
      config['trainable'] = False
    return graph.layer_from_spec(spec, config)

  @staticmethod
  def _has_weights(spec):
    return issubclass(spec.cls, (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D,
                                 tf_keras.layers.BatchNormalization, tf_keras.layers.Dense))

  def _layers_of(self, model):
    for candidate, layers in self._box_copies + self._own_init_copies:
      if candidate is model:
        return layers
    raise ValueError(f'model {getattr(model, "name", model)!r} is not a box classifier made by '
                     'this feature extractor')

  def _apply_weights(self, layers, loaded):
    if not loaded:
      return
    for index, layer in layers.items():
      if index not in loaded:
        continue
      try:
        layer.set_weights(loaded[index])
      except ValueError as error:
        raise ValueError(f'classification weights do not fit layer {layer.name!r}: '
                         f'{error}') from error
