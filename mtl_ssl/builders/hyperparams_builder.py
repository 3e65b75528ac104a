"""Hyperparams proto -> Keras layer arguments (OD API KerasLayerHyperparams).

OD API TF2 conventions kept: an l2_regularizer weight w becomes
tf_keras.regularizers.l2(w / 2) (slim's l2 had the 1/2); activation RELU_6
is relu capped at 6; batch_norm puts a BatchNormalization after the layer and
drops the layer's bias. An unset initializer falls back to Keras' glorot
uniform (= variance_scaling factor 1, uniform, FAN_AVG), an unset regularizer
to none (the OD API requires both to be set).
"""
import tf_keras

_ACTIVATIONS = {0: None, 1: 'relu', 3: 'swish'}


def _relu6(x):
  return tf_keras.activations.relu(x, max_value=6.0)


class KerasLayerHyperparams:
  """Wraps an optional Hyperparams proto (None -> Keras defaults, RELU)."""

  def __init__(self, hyperparams_config=None, field_name='hyperparams'):
    self._config = hyperparams_config
    self._field = field_name
    cfg = hyperparams_config
    if cfg is not None and cfg.WhichOneof('normalizer_oneof') == 'group_norm':
      raise ValueError('%s: group_norm is not supported' % field_name)

  def _has(self, field):
    return self._config is not None and self._config.HasField(field)

  def initializer(self):
    if not self._has('initializer'):
      return tf_keras.initializers.GlorotUniform()
    init = self._config.initializer
    which = init.WhichOneof('initializer_oneof')
    if which == 'truncated_normal_initializer':
      c = init.truncated_normal_initializer
      return tf_keras.initializers.TruncatedNormal(mean=c.mean, stddev=c.stddev)
    if which == 'random_normal_initializer':
      c = init.random_normal_initializer
      return tf_keras.initializers.RandomNormal(mean=c.mean, stddev=c.stddev)
    if which == 'variance_scaling_initializer':
      c = init.variance_scaling_initializer
      mode = {0: 'fan_in', 1: 'fan_out', 2: 'fan_avg'}[int(c.mode)]
      return tf_keras.initializers.VarianceScaling(
          scale=c.factor, mode=mode,
          distribution='uniform' if c.uniform else 'truncated_normal')
    if which == 'keras_initializer_by_name':
      return tf_keras.initializers.get(init.keras_initializer_by_name)
    raise ValueError('%s.initializer: nothing set' % self._field)

  def regularizer(self):
    if not self._has('regularizer'):
      return None
    reg = self._config.regularizer
    which = reg.WhichOneof('regularizer_oneof')
    if which == 'l2_regularizer':
      weight = float(reg.l2_regularizer.weight)
      return tf_keras.regularizers.l2(0.5 * weight) if weight else None
    if which == 'l1_regularizer':
      weight = float(reg.l1_regularizer.weight)
      return tf_keras.regularizers.l1(weight) if weight else None
    return None

  def activation(self):
    value = 1 if self._config is None else int(self._config.activation)
    if value == 2:
      return _relu6
    if value not in _ACTIVATIONS:
      raise ValueError('%s.activation %d is unknown' % (self._field, value))
    return _ACTIVATIONS[value]

  def use_batch_norm(self):
    return self._config is not None and self._config.WhichOneof(
        'normalizer_oneof') in ('batch_norm', 'sync_batch_norm')

  def params(self, include_activation=False, use_bias=None):
    """kwargs for Conv2D / Dense. use_bias None: a bias unless batch norm
    follows (or force_use_bias); True/False: exactly that."""
    if use_bias is None:
      use_bias = not self.use_batch_norm() or (
          self._config is not None and self._config.force_use_bias)
    kwargs = {'kernel_initializer': self.initializer(),
              'kernel_regularizer': self.regularizer(),
              'use_bias': bool(use_bias)}
    if include_activation:
      kwargs['activation'] = self.activation()
    return kwargs

  def build_batch_norm(self, name):
    """A BatchNormalization layer, or None without batch_norm."""
    if not self.use_batch_norm():
      return None
    which = self._config.WhichOneof('normalizer_oneof')
    bn = getattr(self._config, which)
    layer = tf_keras.layers.BatchNormalization(
        momentum=bn.decay, epsilon=bn.epsilon, center=bn.center,
        scale=bn.scale, name=name)
    layer.trainable = bool(bn.train)
    return layer

  def build_activation_layer(self, name):
    activation = self.activation()
    if activation is None:
      return None
    return tf_keras.layers.Activation(activation, name=name)
