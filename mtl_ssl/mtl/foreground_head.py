"""Task 3 head (foreground labeling, the original "edgemask"): conv on F -> 2 logits per cell,
resized bilinearly to the G x G label grid over the TRUE image region of F.

The label grid covers the true (unpadded) image, so the prediction must too: the original resized
the whole padded map, which misaligns labels and logits whenever an image is padded. Each image of
a batch has its own true extent, so the resize is a per-image separable interpolation
out[b] = Ry[b] @ X[b] @ Rx[b]^T with half-pixel centres and edge clamping, i.e. exactly
tf.image.resize(bilinear) of the true region when the region is a whole number of cells.
"""
import tensorflow as tf
import tf_keras

from mtl_ssl.builders import hyperparams_builder


def resize_weights(extent, in_size, out_size):
    """[B, out_size, in_size] bilinear weights sampling the first `extent` cells of an axis.

    extent: float [B], the true extent in cells (may be fractional); in_size: the axis length.
    Sample i sits at (i + 0.5) * extent / out_size - 0.5 (half-pixel centres), clamped to the
    cells that hold some of the true image, [0, min(in_size, ceil(extent)) - 1].
    """
    extent = tf.cast(extent, tf.float32)
    in_size_f = tf.cast(in_size, tf.float32)
    last = tf.minimum(in_size_f, tf.math.ceil(extent)) - 1.0  # [B]
    last = tf.maximum(last, 0.0)
    steps = tf.range(out_size, dtype=tf.float32) + 0.5
    position = steps[None, :] * (extent[:, None] / float(out_size)) - 0.5  # [B, out]
    position = tf.clip_by_value(position, 0.0, last[:, None])
    low = tf.floor(position)
    high = tf.minimum(low + 1.0, last[:, None])
    frac = position - low
    low_w = tf.one_hot(tf.cast(low, tf.int32), in_size) * (1.0 - frac)[..., None]
    high_w = tf.one_hot(tf.cast(high, tf.int32), in_size) * frac[..., None]
    return low_w + high_w


def resize_true_region(values, true_extent_hw, out_size):
    """values [B, h, w, c], true_extent_hw float [B, 2] (cells) -> [B, out, out, c]."""
    shape = tf.shape(values)
    rows = resize_weights(true_extent_hw[:, 0], shape[1], out_size)
    cols = resize_weights(true_extent_hw[:, 1], shape[2], out_size)
    return tf.einsum('biy,byxc,bjx->bijc', rows, values, cols)


class ForegroundHead(tf_keras.layers.Layer):
    """F [B, h, w, c] -> foreground logits [B, G, G, 2] (channel 0 background, 1 foreground)."""

    def __init__(self, mask_predictor_config=None, grid_size=64, use_tanh=False, **kwargs):
        super().__init__(**kwargs)
        kernel_size = int(getattr(mask_predictor_config, 'kernel_size', 3))
        if kernel_size < 1:
            raise ValueError(f'model.mtl.edgemask_predictor.kernel_size must be >= 1, '
                             f'got {kernel_size}')
        if int(grid_size) < 1:
            raise ValueError(f'model.mtl.foreground_grid_size must be >= 1, got {grid_size}')
        conv_hyperparams = None
        if mask_predictor_config is not None and mask_predictor_config.HasField(
                'conv_hyperparams'):
            conv_hyperparams = mask_predictor_config.conv_hyperparams
        conv_hyperparams = hyperparams_builder.KerasLayerHyperparams(
            conv_hyperparams, 'model.mtl.edgemask_predictor.conv_hyperparams')
        self._grid_size = int(grid_size)
        self._use_tanh = bool(use_tanh)
        # The logits layer itself: no normalizer, no activation (as the original's predictor).
        self.conv = tf_keras.layers.Conv2D(2, kernel_size, padding='same', name='MaskPredictor',
                                           **conv_hyperparams.params(use_bias=True))
        self.conv.trainable = bool(getattr(mask_predictor_config, 'trainable', True))

    def call(self, feature_map, true_extent_hw, training=None):
        logits = self.conv(feature_map)
        if self._use_tanh:  # the original squashed the logits (method.md: an option at most)
            logits = tf.tanh(logits)
        return resize_true_region(logits, true_extent_hw, self._grid_size)
