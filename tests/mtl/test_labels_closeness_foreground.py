"""closeness_labels (Task 2), foreground_labels (Task 3) and context_boxes vs numpy references."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

from mtl_ssl.mtl import labels  # noqa: E402


def reference_closeness(boxes, classes, num_classes, height, width):
    """Python double loop over box pairs, as the method text reads."""
    boxes = np.clip(np.asarray(boxes, np.float64), 0, 1)
    diagonal = np.hypot(height, width)
    out = np.zeros([len(boxes), num_classes + 1])
    for i, (bi, ci) in enumerate(zip(boxes, classes)):
        v = np.zeros(num_classes + 1)
        for bj, cj in zip(boxes, classes):
            if cj == ci:
                continue
            dy = (bi[0] + bi[2] - bj[0] - bj[2]) / 2 * height
            dx = (bi[1] + bi[3] - bj[1] - bj[3]) / 2 * width
            v[cj] = max(v[cj], 1 - np.hypot(dy, dx) / diagonal)
        if v[1:].sum() == 0:
            v[0] = 1
        out[i] = v / v.sum()
    return out


def reference_foreground(boxes, g, mirrored_columns=False):
    """Original-style loop over boxes with slicing. mirrored_columns: the paper's column rule seen
    in a mirror (its extra cell on the min side), what a horizontally flipped image maps back to."""
    boxes = np.clip(np.asarray(boxes, np.float64), 0, 1).reshape([-1, 4])
    mask = np.zeros([g, g])
    weights = np.full([g, g], 1.0 / (g * g))

    def cells(low, high, mirrored=False):
        if not mirrored:
            return min(int(np.floor(low * g)), g - 1), min(g - 1, int(np.floor(high * g + 0.99)))
        return max(0, int(np.ceil(low * g - 0.99)) - 1), int(np.ceil(high * g)) - 1

    for ymin, xmin, ymax, xmax in boxes:
        if ymax <= ymin or xmax <= xmin:
            continue
        r0, r1 = cells(ymin, ymax)
        c0, c1 = cells(xmin, xmax, mirrored_columns)
        mask[r0:r1 + 1, c0:c1 + 1] = 1
        n = (r1 - r0 + 1) * (c1 - c0 + 1)
        weights[r0:r1 + 1, c0:c1 + 1] = np.maximum(weights[r0:r1 + 1, c0:c1 + 1], 1.0 / n)
    return mask, weights / weights.mean()


def test_closeness_hand_worked():
    # Image 300 x 400 (diagonal 500 px). Centres (y, x) in px:
    # A class 1 (150, 200); B class 2 (60, 80); C class 3 (150, 360); D class 1 (30, 40).
    boxes = [[.4, .4, .6, .6], [.1, .1, .3, .3], [.4, .85, .6, .95], [.05, .05, .15, .15]]
    classes = [1, 2, 3, 1]
    got = labels.closeness_labels(boxes, classes, 3, 300, 400).numpy()
    ab = 1 - 150 / 500  # |(90, 120)| = 150
    ac = 1 - 160 / 500  # |(0, 160)| = 160
    bc = 1 - np.sqrt(90**2 + 280**2) / 500
    bd = 1 - 50 / 500  # |(30, 40)| = 50
    cd = 1 - np.sqrt(120**2 + 320**2) / 500
    want = np.array([[0, 0, ab, ac],
                     [0, max(ab, bd), 0, bc],  # nearest class-1 box of B is D
                     [0, max(ac, cd), bc, 0],
                     [0, 0, bd, cd]])
    np.testing.assert_allclose(got, want / want.sum(1, keepdims=True), atol=1e-6)


def test_closeness_single_class_and_single_box_are_background():
    got = labels.closeness_labels([[0, 0, .5, .5], [.5, .5, 1, 1]], [2, 2], 4, 10, 10).numpy()
    np.testing.assert_allclose(got, [[1, 0, 0, 0, 0]] * 2)
    got = labels.closeness_labels([[.2, .2, .3, .3]], [3], 4, 10, 10).numpy()
    np.testing.assert_allclose(got, [[1, 0, 0, 0, 0]])
    # Centres in opposite corners: s = 0 for the only other-class box -> background (no 0/0).
    got = labels.closeness_labels([[0, 0, 0, 0], [1, 1, 1, 1]], [1, 2], 2, 30, 40).numpy()
    np.testing.assert_allclose(got, [[1, 0, 0]] * 2)


def test_closeness_random_and_padded_against_reference():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n, c = int(rng.integers(1, 30)), int(rng.integers(1, 6))
        boxes = rng.uniform(-0.1, 1.1, [n, 4])
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]),
                                np.maximum(boxes[:, :2], boxes[:, 2:])], 1).astype(np.float32)
        classes = rng.integers(1, c + 1, n)
        height, width = rng.integers(20, 1000, 2)
        want = reference_closeness(boxes, classes, c, height, width)
        got = labels.closeness_labels(boxes, classes, c, height, width).numpy()
        np.testing.assert_allclose(got, want, atol=1e-6)
        np.testing.assert_allclose(got.sum(1), 1, atol=1e-6)
        pad_boxes = np.concatenate([boxes, rng.uniform(0, 1, [5, 4]).astype(np.float32)])
        pad_classes = np.concatenate([classes, rng.integers(-5, 50, 5)])
        padded = labels.closeness_labels(pad_boxes, pad_classes, c, height, width,
                                         num_valid=n).numpy()
        np.testing.assert_allclose(padded[:n], want, atol=1e-6)
        np.testing.assert_array_equal(padded[n:], 0)


def test_foreground_hand_worked():
    # g = 4, box [.25,.25,.5,.5]: rows floor(1) = 1 .. floor(2 + .99) = 2, same columns: 4 cells.
    # Weights 1/16 outside, max(1/16, 1/4) = 1/4 inside; mean = (12/16 + 4/4)/16 = .109375.
    mask, weights = labels.foreground_labels([[.25, .25, .5, .5]], grid_size=4)
    want_mask = np.zeros([4, 4])
    want_mask[1:3, 1:3] = 1
    np.testing.assert_array_equal(mask.numpy(), want_mask)
    want = np.where(want_mask > 0, .25, 1 / 16) / .109375
    np.testing.assert_allclose(weights.numpy(), want, rtol=1e-6)
    # A box ending exactly on the border: rows 2 .. min(3, floor(4.99)) = 3; zero-area box ignored.
    mask, _ = labels.foreground_labels([[.5, .75, 1., 1.], [.1, .1, .1, .6]], grid_size=4)
    np.testing.assert_array_equal(np.argwhere(mask.numpy()), [[2, 3], [3, 3]])


def test_foreground_random_and_padded_against_reference():
    rng = np.random.default_rng(1)
    for _ in range(100):
        n, g = int(rng.integers(0, 20)), int(rng.choice([4, 7, 16, 64]))
        boxes = rng.uniform(-0.05, 1.05, [n, 4])
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]),
                                np.maximum(boxes[:, :2], boxes[:, 2:])], 1).astype(np.float32)
        want_mask, want_weights = reference_foreground(boxes, g)
        junk = rng.uniform(0, 1, [3, 4]).astype(np.float32)
        mask, weights = labels.foreground_labels(np.concatenate([boxes, junk]), grid_size=g,
                                                 num_valid=n)
        np.testing.assert_array_equal(mask.numpy(), want_mask)
        np.testing.assert_allclose(weights.numpy(), want_weights, rtol=1e-5)
        assert abs(weights.numpy().mean() - 1) < 1e-5


def _flip(boxes):
    boxes = np.asarray(boxes, np.float32).reshape([-1, 4])
    return np.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], 1)


box_strategy = st.tuples(*[st.integers(0, 256)] * 4).map(
    lambda t: [min(t[0], t[2]) / 256, min(t[1], t[3]) / 256, max(t[0], t[2]) / 256,
               max(t[1], t[3]) / 256])


@settings(max_examples=60, deadline=None)
@given(boxes=st.lists(box_strategy, min_size=1, max_size=12), class_seed=st.integers(0, 999),
       num_classes=st.integers(1, 5), grid=st.sampled_from([4, 8, 13, 64]))
def test_properties_under_horizontal_flip(boxes, class_seed, num_classes, grid):
    boxes = np.asarray(boxes, np.float32)
    classes = np.random.default_rng(class_seed).integers(1, num_classes + 1, len(boxes))
    close = labels.closeness_labels(boxes, classes, num_classes, 480, 640).numpy()
    assert np.all(close >= 0) and np.all(close <= 1)
    np.testing.assert_allclose(close.sum(1), 1, atol=1e-6)
    flipped = labels.closeness_labels(_flip(boxes), classes, num_classes, 480, 640).numpy()
    np.testing.assert_allclose(flipped, close, atol=1e-6)

    mask, weights = labels.foreground_labels(boxes, grid_size=grid)
    np.testing.assert_array_equal(mask.numpy(), reference_foreground(boxes, grid)[0])
    # The paper's cell rule reaches ~1 cell past the max edges, so the flipped boxes' mask, seen
    # in a mirror, is the rule with that extra cell on the min side instead (exact, dyadic inputs).
    f_mask, f_weights = labels.foreground_labels(_flip(boxes), grid_size=grid)
    mirror_mask, mirror_weights = reference_foreground(boxes, grid, mirrored_columns=True)
    np.testing.assert_array_equal(f_mask.numpy()[:, ::-1], mirror_mask)
    np.testing.assert_allclose(f_weights.numpy()[:, ::-1], mirror_weights, rtol=1e-5)
    # Swapping the axes is an exact symmetry of the rule: the mask transposes.
    t_mask, t_weights = labels.foreground_labels(boxes[:, [1, 0, 3, 2]], grid_size=grid)
    np.testing.assert_array_equal(t_mask.numpy(), mask.numpy().T)
    np.testing.assert_allclose(t_weights.numpy(), weights.numpy().T, rtol=1e-6)


def test_context_boxes_levels_and_padding():
    boxes = np.array([[.2, .4, .6, .5], [.0, .0, 1., 1.], [.3, .3, .3, .3]], np.float32)
    got = labels.context_boxes(boxes, num_levels=5, num_valid=2).numpy()
    assert got.shape == (3, 5, 4)
    # Box 0, level 2 (halfway): ymin .2*.5 = .1, xmin .4*.5 = .2, ymax .6+.5*.4 = .8, xmax .5+.25.
    np.testing.assert_allclose(got[0, 2], [.1, .2, .8, .75], atol=1e-6)
    np.testing.assert_allclose(got[0, 0], boxes[0])
    np.testing.assert_allclose(got[:2, -1], [[0, 0, 1, 1]] * 2)
    np.testing.assert_array_equal(got[2], 0)
    for i in range(5):  # the general formula, level by level
        f = i / 4
        np.testing.assert_allclose(got[0, i, :2], boxes[0, :2] * (1 - f), atol=1e-6)
        np.testing.assert_allclose(got[0, i, 2:], boxes[0, 2:] + f * (1 - boxes[0, 2:]), atol=1e-6)
    batched = labels.context_boxes(np.stack([boxes, boxes[::-1]]), 3, num_valid=[3, 1]).numpy()
    assert batched.shape == (2, 3, 3, 4)
    np.testing.assert_allclose(batched[0], labels.context_boxes(boxes, 3).numpy())
    np.testing.assert_array_equal(batched[1, 1:], 0)
    with pytest.raises(ValueError, match='num_levels'):
        labels.context_boxes(boxes, num_levels=1)
