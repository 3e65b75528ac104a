"""multi_object_labels (Task 1) against an independent brute-force numpy reference."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

from mtl_ssl.mtl import labels  # noqa: E402


def reference_window_labels(windows, boxes, classes, num_classes):
    """Brute force: per window, cut it into elementary rectangles by every box edge inside it and
    test each rectangle's centre against every box (python loops, no difference arrays)."""
    boxes = np.clip(np.asarray(boxes, np.float64), 0.0, 1.0)
    out = np.zeros([len(windows), num_classes + 1])
    for m, (wy0, wx0, wy1, wx1) in enumerate(np.asarray(windows, np.float64)):
        area = max(wy1 - wy0, 0.0) * max(wx1 - wx0, 0.0)
        if area <= 0:
            out[m, 0] = 1.0
            continue
        ys = np.unique(np.clip(np.concatenate([[wy0, wy1], boxes[:, 0], boxes[:, 2]]), wy0, wy1))
        xs = np.unique(np.clip(np.concatenate([[wx0, wx1], boxes[:, 1], boxes[:, 3]]), wx0, wx1))
        cy, cx = (ys[1:] + ys[:-1]) / 2, (xs[1:] + xs[:-1]) / 2
        cell_area = np.outer(ys[1:] - ys[:-1], xs[1:] - xs[:-1])
        covered_any = np.zeros(cell_area.shape, bool)
        fractions = np.zeros(num_classes + 1)
        for k in range(1, num_classes + 1):
            covered = np.zeros(cell_area.shape, bool)
            for (y0, x0, y1, x1), c in zip(boxes, classes):
                if c == k:
                    covered |= np.outer((cy > y0) & (cy < y1), (cx > x0) & (cx < x1))
            covered_any |= covered
            fractions[k] = cell_area[covered].sum() / area
        fractions[0] = max(0.0, 1.0 - cell_area[covered_any].sum() / area)
        roots = np.sqrt(fractions)
        out[m] = roots / roots.sum()
    return out


def random_boxes(rng, num_boxes, num_classes, spread=1.0):
    centre = rng.uniform(0, 1, [num_boxes, 2])
    size = rng.uniform(0.0, spread, [num_boxes, 2])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
    classes = rng.integers(1, num_classes + 1, num_boxes)
    return boxes.astype(np.float32), classes  # may stick out of [0, 1]: clipped by both sides


def random_windows(rng, num_windows):
    a, b = rng.uniform(0, 1, [2, num_windows, 2])
    return np.concatenate([np.minimum(a, b), np.maximum(a, b)], 1).astype(np.float32)


def check(windows, boxes, classes, num_classes, atol=2e-6):
    got = labels.multi_object_labels(windows, boxes, classes, num_classes).numpy()
    want = reference_window_labels(windows, boxes, classes, num_classes)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=atol)


def test_hand_worked_three_boxes():
    # class 1: [0,0,.5,.5] and [.25,.25,.75,.75] (overlap .25*.25 = .0625); class 2: [.5,.5,1,1].
    boxes = [[0, 0, .5, .5], [.25, .25, .75, .75], [.5, .5, 1, 1]]
    classes = [1, 1, 2]
    windows = [[0, 0, 1, 1], [0, 0, .5, .5], [.5, .5, 1, 1], [0, .5, .5, 1]]
    got = labels.multi_object_labels(windows, boxes, classes, 3).numpy()
    # Whole image: A1 = .25 + .25 - .0625 = .4375; A2 = .25; union of all = .4375 + .25 - (class 2
    # within class-1 union = [.5,.5,.75,.75] = .0625) = .625 -> A0 = .375.
    v = np.sqrt([.375, .4375, .25, 0.0])
    np.testing.assert_allclose(got[0], v / v.sum(), atol=1e-6)
    # [0,0,.5,.5] is entirely class 1: A = (0, 1, 0, 0).
    np.testing.assert_allclose(got[1], [0, 1, 0, 0], atol=1e-6)
    # [.5,.5,1,1]: class 1 covers [.5,.5,.75,.75] = .0625/.25 = .25, class 2 all -> A0 = 0;
    # v = (0, .5, 1, 0) / 1.5.
    np.testing.assert_allclose(got[2], [0, 1 / 3, 2 / 3, 0], atol=1e-6)
    # [0,.5,.5,1] (area .25): class 1 covers [.25,.5,.5,.75] = .0625 -> A1 = .25, A0 = .75;
    # v = (sqrt(.75), .5, 0, 0).
    v = np.array([np.sqrt(.75), .5, 0, 0])
    np.testing.assert_allclose(got[3], v / v.sum(), atol=1e-6)


def test_hand_worked_many_identical_and_nested_boxes():
    # 20 copies of [.2,.2,.6,.6] (class 1) and 15 nested boxes of class 2 all inside [.5,.5,.9,.9]:
    # inclusion-exclusion over 2^35 subsets is hopeless; the union is simply the outer boxes.
    nested = [[.5 + i * .01, .5 + i * .01, .9 - i * .01, .9 - i * .01] for i in range(15)]
    boxes = [[.2, .2, .6, .6]] * 20 + nested
    classes = [1] * 20 + [2] * 15
    got = labels.multi_object_labels([[0, 0, 1, 1]], boxes, classes, 2).numpy()[0]
    # A1 = .16, A2 = .16, overlap [.5,.5,.6,.6] = .01 -> union .31, A0 = .69.
    v = np.sqrt([.69, .16, .16])
    np.testing.assert_allclose(got, v / v.sum(), atol=1e-6)


@pytest.mark.parametrize('num_boxes', [12, 20, 30, 40])
def test_many_mutually_overlapping_boxes(num_boxes):
    # All boxes contain the centre of the image: every subset intersects (the original's failure).
    rng = np.random.default_rng(num_boxes)
    for _ in range(5):
        low = rng.uniform(0.0, 0.45, [num_boxes, 2])
        high = rng.uniform(0.55, 1.0, [num_boxes, 2])
        boxes = np.concatenate([low, high], 1).astype(np.float32)
        classes = rng.integers(1, 4, num_boxes)
        check(random_windows(rng, 8), boxes, classes, 3)


def test_random_cases_against_reference():
    rng = np.random.default_rng(0)
    for case in range(200):
        num_boxes = int(rng.integers(1, 25))
        num_classes = int(rng.integers(1, 8))
        boxes, classes = random_boxes(rng, num_boxes, num_classes, spread=rng.uniform(0.05, 1.2))
        windows = random_windows(rng, 6)
        if case % 4 == 0:  # windows and boxes on a coarse grid: shared edges and touching borders
            boxes = np.round(boxes * 8) / 8
            windows = np.round(windows * 8) / 8
        check(windows, boxes, classes, num_classes)


def test_small_windows_in_large_image_are_accurate():
    # A 32 px window in a 2000 px image has area 2.6e-4: float64 inside keeps the labels exact.
    rng = np.random.default_rng(1)
    boxes, classes = random_boxes(rng, 60, 5, spread=0.2)
    corner = rng.uniform(0, 0.98, [16, 2])
    windows = np.concatenate([corner, corner + 0.016], 1).astype(np.float32)
    check(windows, boxes, classes, 5, atol=1e-5)


def test_windows_without_boxes_and_zero_area_inputs():
    boxes = [[.1, .1, .2, .2], [.5, .5, .5, .9], [.3, .3, .3, .3]]  # two zero-area boxes
    windows = [[.6, .6, .9, .9], [.4, .4, .4, .8], [.45, .45, .55, .95]]
    got = labels.multi_object_labels(windows, boxes, [1, 2, 2], 2).numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [[1, 0, 0]] * 3, atol=1e-7)  # zero-area box adds no area
    empty = labels.multi_object_labels(windows, np.zeros([0, 4]), np.zeros([0], int), 4).numpy()
    np.testing.assert_allclose(empty, np.eye(5)[[0, 0, 0]])


def test_boxes_outside_the_image_are_clipped():
    boxes = [[-0.2, -0.1, 0.5, 1.3]]
    got = labels.multi_object_labels([[0, 0, 1, 1]], boxes, [1], 1).numpy()[0]
    v = np.sqrt([.5, .5])  # clipped box covers half the image
    np.testing.assert_allclose(got, v / v.sum(), atol=1e-6)


def test_padded_boxes_do_not_change_labels():
    rng = np.random.default_rng(2)
    for _ in range(30):
        n = int(rng.integers(0, 10))
        boxes, classes = random_boxes(rng, n, 4)
        junk_boxes, _ = random_boxes(rng, 6, 4)
        junk_classes = rng.integers(-3, 99, 6)  # out-of-range ids in padding must be ignored
        windows = random_windows(rng, 5)
        unpadded = labels.multi_object_labels(windows, boxes, classes, 4).numpy()
        padded_boxes = np.concatenate([boxes, junk_boxes])
        padded_classes = np.concatenate([classes, junk_classes])
        for num_valid in (n, tf.constant(n), np.arange(n + 6) < n):
            padded = labels.multi_object_labels(windows, padded_boxes, padded_classes, 4,
                                                num_valid=num_valid).numpy()
            np.testing.assert_allclose(padded, unpadded, atol=1e-7)


def test_bad_class_ids_and_shapes_raise():
    with pytest.raises(tf.errors.InvalidArgumentError, match='class ids'):
        labels.multi_object_labels([[0, 0, 1, 1]], [[0, 0, .5, .5]], [0], 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match='class ids'):
        labels.multi_object_labels([[0, 0, 1, 1]], [[0, 0, .5, .5]], [4], 3)
    with pytest.raises(ValueError, match='boxes must have shape'):
        labels.multi_object_labels([[0, 0, 1, 1]], [0, 0, .5, .5], [1], 3)
    with pytest.raises(ValueError, match='2 classes for 1 boxes'):
        labels.multi_object_labels([[0, 0, 1, 1]], [[0, 0, .5, .5]], [1, 2], 3)
    with pytest.raises(ValueError, match='not one-hot'):
        labels.multi_object_labels([[0, 0, 1, 1]], [[0, 0, .5, .5]], [[0, 1.0]], 2)


def test_tf_function_with_unknown_shapes_matches_eager():
    fn = tf.function(lambda w, b, c, n: labels.multi_object_labels(w, b, c, 6, num_valid=n),
                     input_signature=[tf.TensorSpec([None, 4], tf.float32),
                                      tf.TensorSpec([None, 4], tf.float32),
                                      tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)])
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 30):
        boxes, classes = random_boxes(rng, n + 3, 6)
        windows = random_windows(rng, 9)
        got = fn(windows, boxes, classes.astype(np.int32), n)
        want = labels.multi_object_labels(windows, boxes[:n], classes[:n], 6)
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-7)


def _flip(boxes):
    boxes = np.asarray(boxes)
    return np.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], 1)


box_strategy = st.tuples(*[st.integers(0, 256)] * 4).map(
    lambda t: [min(t[0], t[2]) / 256, min(t[1], t[3]) / 256, max(t[0], t[2]) / 256,
               max(t[1], t[3]) / 256])


@settings(max_examples=60, deadline=None)
@given(boxes=st.lists(box_strategy, min_size=0, max_size=15),
       windows=st.lists(box_strategy, min_size=1, max_size=6),
       class_seed=st.integers(0, 1000), num_classes=st.integers(1, 6))
def test_properties_rows_sum_to_one_and_flip_invariance(boxes, windows, class_seed, num_classes):
    classes = np.random.default_rng(class_seed).integers(1, num_classes + 1, len(boxes))
    boxes = np.asarray(boxes, np.float32).reshape([-1, 4])
    windows = np.asarray(windows, np.float32)
    got = labels.multi_object_labels(windows, boxes, classes, num_classes).numpy()
    assert got.shape == (len(windows), num_classes + 1)
    assert np.all(got >= 0) and np.all(got <= 1)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-6)
    flipped = labels.multi_object_labels(_flip(windows), _flip(boxes), classes, num_classes)
    np.testing.assert_allclose(flipped.numpy(), got, atol=1e-6)
    np.testing.assert_allclose(got, reference_window_labels(windows, boxes, classes, num_classes),
                               atol=2e-6)
