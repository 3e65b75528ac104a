"""FrozenBatchNormalization: inference-mode batch norm whatever `training` says; training calls
(float32, channels last) compute it as x * a + b, with the values of the fused kernel."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from mtl_ssl.backbones import FrozenBatchNormalization

EPSILON = 1e-3


def _layer(center=True, scale=True, channels=5, seed=0):
    rng = np.random.default_rng(seed)
    layer = FrozenBatchNormalization(center=center, scale=scale, epsilon=EPSILON)
    layer.build((None, 3, 4, channels))
    stats = {'moving_mean': rng.normal(size=channels),
             'moving_variance': rng.uniform(0.2, 3.0, channels),
             'gamma': rng.uniform(0.5, 2.0, channels), 'beta': rng.normal(size=channels)}
    for name, value in stats.items():
        if getattr(layer, name, None) is not None:
            getattr(layer, name).assign(value.astype(np.float32))
    return layer, stats


@pytest.mark.parametrize('center, scale', [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize('training', [True, False, None])
def test_normalizes_with_the_moving_statistics_and_gradient_is_the_scale(center, scale,
                                                                         training):
    layer, stats = _layer(center, scale)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 3, 4, 5)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
    gamma = stats['gamma'] if scale else 1.0
    beta = stats['beta'] if center else 0.0
    factor = gamma / np.sqrt(stats['moving_variance'] + EPSILON)
    expected = (x.numpy() - stats['moving_mean']) * factor + beta  # numpy reference
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(),
                               np.broadcast_to(factor, x.shape), rtol=1e-6)
    # the same as tf_keras' own batch norm in inference mode (the fused kernel)
    keras_bn = tf_keras.layers.BatchNormalization(center=center, scale=scale, epsilon=EPSILON)
    keras_bn.build(x.shape)
    keras_bn.set_weights(layer.get_weights())
    np.testing.assert_allclose(y.numpy(), keras_bn(x, training=False).numpy(), rtol=1e-5,
                               atol=1e-5)
    # nothing trains and the statistics never move
    assert not layer.trainable_weights
    np.testing.assert_array_equal(layer.moving_mean.numpy(),
                                  stats['moving_mean'].astype(np.float32))


def test_bfloat16_layers_use_the_fused_kernel_with_the_same_values():
    layer, _ = _layer()
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 3, 4, 5)), tf.float32)
    y32 = layer(x).numpy()
    mixed = FrozenBatchNormalization(epsilon=EPSILON, dtype='mixed_bfloat16')
    mixed.build(x.shape)
    mixed.set_weights(layer.get_weights())
    y16 = mixed(tf.cast(x, tf.bfloat16))
    assert y16.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y16, tf.float32).numpy(), y32, rtol=0.05, atol=0.05)


@pytest.mark.parametrize('training, fused', [(True, False), (False, True), (None, True)])
def test_training_calls_avoid_the_fused_kernel_and_inference_keeps_it(training, fused):
    layer, _ = _layer()
    graph = tf.function(lambda x: layer(x, training=training)).get_concrete_function(
        tf.TensorSpec((2, 3, 4, 5), tf.float32)).graph
    ops = {op.type for op in graph.get_operations()}
    assert any(op.startswith('FusedBatchNorm') for op in ops) == fused, ops
