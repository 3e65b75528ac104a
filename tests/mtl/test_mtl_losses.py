"""MTL losses vs independent numpy references and hand-worked cases."""
import math

import numpy as np
import pytest
import tensorflow as tf

from mtl_ssl.mtl import losses


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_window_loss(logits, labels):
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for m in range(logits.shape[1]):
            if labels[b, m].sum() <= 0:
                continue
            total += -(labels[b, m] * np_log_softmax(logits[b, m])).sum()
            count += 1
    return total / max(count, 1)


def np_closeness_loss(logits, gt_labels, matched, positive):
    per_image = []
    for b in range(logits.shape[0]):
        total, num_pos = 0.0, 0
        for p in range(logits.shape[1]):
            if not positive[b, p]:
                continue
            num_pos += 1
            target = gt_labels[b, matched[b, p], 1:]
            cross_entropy = -(target * np_log_softmax(logits[b, p, 1:])).sum()
            total += cross_entropy * target.sum()
        per_image.append(total / max(num_pos, 1))
    return float(np.mean(per_image))


def np_foreground_loss(logits, mask, weights):
    log_p = np_log_softmax(logits)
    cross_entropy = -((1 - mask) * log_p[..., 0] + mask * log_p[..., 1])
    if weights is not None:
        cross_entropy = cross_entropy * weights
    return float(cross_entropy.mean())


def soft_labels(rng, shape):
    raw = rng.random(shape)
    return raw / raw.sum(-1, keepdims=True)


def test_window_loss_matches_numpy_with_soft_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 4)).astype(np.float32)
    labels = soft_labels(rng, (3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(losses.window_loss(logits, labels).numpy(),
                               np_window_loss(logits, labels), rtol=1e-5)


def test_window_loss_hand_worked():
    # Uniform logits over 4 columns: CE = log 4 whatever the (normalised) soft label.
    logits = np.zeros((1, 2, 4), np.float32)
    labels = np.array([[[0.5, 0.5, 0, 0], [0.1, 0.2, 0.3, 0.4]]], np.float32)
    assert losses.window_loss(logits, labels).numpy() == pytest.approx(math.log(4.0), rel=1e-6)
    # Soft label [0.5, 0.5] on logits [0, log 3]: p = [1/4, 3/4]: CE = -(.5 log .25 + .5 log .75).
    logits = np.array([[[0.0, math.log(3.0)]]], np.float32)
    labels = np.array([[[0.5, 0.5]]], np.float32)
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert losses.window_loss(logits, labels).numpy() == pytest.approx(expected, rel=1e-6)


def test_window_loss_ignores_padded_windows():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 3)).astype(np.float32)
    labels = soft_labels(rng, (2, 4, 3)).astype(np.float32)
    padded = labels.copy()
    padded[1, 2:] = 0.0
    value = losses.window_loss(logits, padded).numpy()
    kept = np.concatenate([logits[0], logits[1, :2]])[None]
    kept_labels = np.concatenate([labels[0], labels[1, :2]])[None]
    np.testing.assert_allclose(value, np_window_loss(kept, kept_labels), rtol=1e-5)


def test_closeness_loss_matches_numpy():
    rng = np.random.default_rng(2)
    batch, num_props, num_gt, outputs = 3, 6, 4, 5
    logits = rng.normal(size=(batch, num_props, outputs)).astype(np.float32)
    gt_labels = soft_labels(rng, (batch, num_gt, outputs)).astype(np.float32)
    matched = rng.integers(-1, num_gt, size=(batch, num_props)).astype(np.int32)
    positive = (matched >= 0) & (rng.random((batch, num_props)) < 0.8)
    positive[2] = False  # an image without positives contributes 0 (normaliser max(1, 0))
    value = losses.closeness_loss(logits, gt_labels, matched, positive).numpy()
    np.testing.assert_allclose(value, np_closeness_loss(logits, gt_labels, matched, positive),
                               rtol=1e-5)


def test_closeness_neighbourless_box_adds_nothing():
    # GT 0 has no neighbour of another class: label (1, 0, 0) -> target on objects = 0.
    gt_labels = np.array([[[1.0, 0.0, 0.0], [0.0, 0.25, 0.75]]], np.float32)
    logits = np.array([[[3.0, -2.0, 5.0], [0.0, 0.0, math.log(3.0)]]], np.float32)
    positive = np.array([[True, True]])
    # Only proposal 1 (matched to GT 1) counts: CE(t=(.25,.75), p=(.25,.75)) * 1, / 2 positives.
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    value = losses.closeness_loss(logits, gt_labels, [[0, 1]], positive).numpy()
    assert value == pytest.approx(entropy / 2.0, rel=1e-6)
    only_neighbourless = losses.closeness_loss(logits, gt_labels, [[0, 0]], positive).numpy()
    assert only_neighbourless == 0.0


def test_closeness_is_averaged_per_image_not_per_batch():
    # Image 0: 1 positive with CE c0; image 1: 3 positives with CE c1 each.
    # Per image then mean: (c0 + c1) / 2. The original's per-batch sum would differ.
    gt_labels = np.zeros((2, 1, 3), np.float32)
    gt_labels[0, 0] = [0.0, 1.0, 0.0]
    gt_labels[1, 0] = [0.0, 0.0, 1.0]
    logits = np.zeros((2, 3, 3), np.float32)
    logits[0, 0] = [0.0, math.log(3.0), 0.0]  # p(1) = 3/4 -> c0 = -log(.75)
    positive = np.array([[True, False, False], [True, True, True]])  # image 1: p(2) = 1/2
    value = losses.closeness_loss(logits, gt_labels, np.zeros((2, 3), np.int32), positive)
    assert value.numpy() == pytest.approx((-math.log(0.75) - math.log(0.5)) / 2.0, rel=1e-6)
    # mtl.closeness_loss_sum_over_images: the TF1 code read literally (one clone, B images)
    summed = losses.closeness_loss(logits, gt_labels, np.zeros((2, 3), np.int32), positive,
                                   sum_over_images=True)
    assert summed.numpy() == pytest.approx(-math.log(0.75) - math.log(0.5), rel=1e-6)


@pytest.mark.parametrize('weighted', [True, False])
def test_foreground_loss_matches_numpy(weighted):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    mask = (rng.random((2, 8, 8)) < 0.3).astype(np.float32)
    weights = rng.random((2, 8, 8)).astype(np.float32) if weighted else None
    np.testing.assert_allclose(losses.foreground_loss(logits, mask, weights).numpy(),
                               np_foreground_loss(logits, mask, weights), rtol=1e-5)


def test_foreground_loss_hand_worked():
    # One cell, logits (0, 0): CE = log 2 whatever the mask; weight 3 triples it; mean over 2.
    logits = np.zeros((1, 1, 2, 2), np.float32)
    mask = np.array([[[1.0, 0.0]]], np.float32)
    weights = np.array([[[3.0, 1.0]]], np.float32)
    value = losses.foreground_loss(logits, mask, weights).numpy()
    assert value == pytest.approx((3 + 1) * math.log(2.0) / 2.0, rel=1e-6)


def test_losses_are_differentiable_and_work_in_tf_function():
    rng = np.random.default_rng(4)
    logits = tf.Variable(rng.normal(size=(2, 3, 4)).astype(np.float32))
    labels = soft_labels(rng, (2, 3, 4)).astype(np.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = losses.window_loss(logits, labels)
        return value, tape.gradient(value, logits)

    value, grad = step()
    np.testing.assert_allclose(value.numpy(), np_window_loss(logits.numpy(), labels), rtol=1e-5)
    # d CE / d logits = softmax - label, / number of windows.
    p = np.exp(np_log_softmax(logits.numpy()))
    np.testing.assert_allclose(grad.numpy(), (p - labels) / 6.0, atol=1e-6)
