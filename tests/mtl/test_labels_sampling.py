"""sample_windows and make_mtl_labels: the paper's sampling, determinism, tf.function, tf.data."""
import os
import types

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtl_ssl.mtl import labels  # noqa: E402
from mtl_ssl.protos import mtl_pb2  # noqa: E402


def reference_sample_windows(boxes, height, width, num_windows, min_size, rng):
    """The sampling of method.md, one window at a time with python floats and rejection."""
    boxes = np.asarray(boxes, np.float64) * [height, width, height, width]
    s_h, s_w = min(min_size, height), min(min_size, width)
    out = []
    while len(out) < num_windows:
        h = rng.random() * (height - s_h) + s_h
        w = rng.random() * (width - s_w) + s_w
        cy, cx = rng.random() * height, rng.random() * width
        y0, y1 = max(0.0, cy - h / 2), min(height, cy + h / 2)
        x0, x1 = max(0.0, cx - w / 2), min(width, cx + w / 2)
        if y1 - y0 < s_h:
            y0, y1 = (0.0, s_h) if y0 == 0 else (height - s_h, y1)
        if x1 - x0 < s_w:
            x0, x1 = (0.0, s_w) if x0 == 0 else (width - s_w, x1)
        if any(min(y1, b[2]) > max(y0, b[0]) and min(x1, b[3]) > max(x0, b[1]) for b in boxes):
            out.append([y0 / height, x0 / width, y1 / height, x1 / width])
    return np.array(out)


def _stats(windows):
    h = windows[:, 2] - windows[:, 0]
    w = windows[:, 3] - windows[:, 1]
    cy = (windows[:, 2] + windows[:, 0]) / 2
    cx = (windows[:, 3] + windows[:, 1]) / 2
    return np.concatenate([np.percentile(v, [10, 50, 90]) for v in (h, w, cy, cx)] +
                          [[v.mean() for v in (h, w, cy, cx)]])


@pytest.mark.parametrize('boxes,height,width', [
    ([[0., 0., 1., 1.]], 300, 500),  # every window accepted: the raw size/centre distribution
    ([[.8, .85, .9, .95], [.2, .2, .25, .24]], 200, 600),  # rejection shapes the distribution
    ([[.1, .1, .3, .9]], 20, 50),  # image smaller than min_size: windows are min(32, H) tall
])
def test_distribution_matches_the_method(boxes, height, width):
    got = labels.sample_windows(boxes, height, width, num_windows=4096, min_size=32, seed=5)
    want = reference_sample_windows(boxes, height, width, 4096, 32, np.random.default_rng(0))
    np.testing.assert_allclose(_stats(got.numpy()), _stats(want), atol=0.03)


def _check_windows(windows, boxes, height, width, min_size):
    windows = windows.numpy()
    boxes = np.asarray(boxes)
    assert windows.dtype == np.float32
    assert np.all(windows >= 0) and np.all(windows <= 1)
    assert np.all((windows[:, 2] - windows[:, 0]) * height >= min(min_size, height) - 1e-3)
    assert np.all((windows[:, 3] - windows[:, 1]) * width >= min(min_size, width) - 1e-3)
    dy = np.minimum(windows[:, None, 2], boxes[None, :, 2]) - np.maximum(windows[:, None, 0],
                                                                         boxes[None, :, 0])
    dx = np.minimum(windows[:, None, 3], boxes[None, :, 3]) - np.maximum(windows[:, None, 1],
                                                                         boxes[None, :, 1])
    assert np.all(np.any((dy > 0) & (dx > 0), 1)), 'a window overlaps no box'


def test_windows_inside_min_size_and_touch_a_box():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 8))
        corner = rng.uniform(0, 0.95, [n, 2])
        boxes = np.concatenate([corner, corner + rng.uniform(0.005, 0.05, [n, 2])], 1)
        height, width = rng.integers(40, 1200, 2)
        min_size = int(rng.integers(0, 64))
        windows = labels.sample_windows(boxes.astype(np.float32), height, width, num_windows=64,
                                        min_size=min_size, seed=int(rng.integers(1 << 30)))
        assert windows.shape == (64, 4)
        _check_windows(windows, boxes, height, width, min_size)


def test_padded_boxes_never_attract_windows():
    boxes = np.array([[.0, .0, .05, .05], [.5, .5, 1., 1.], [.1, .6, .9, .9]], np.float32)
    for num_valid in (1, np.array([True, False, False])):
        windows = labels.sample_windows(boxes, 100, 100, num_windows=200, seed=3,
                                        num_valid=num_valid)
        _check_windows(windows, boxes[:1], 100, 100, 32)


def test_deterministic_for_a_seed_and_different_for_another():
    boxes = [[.1, .2, .5, .6], [.4, .4, .9, .7]]
    a = labels.sample_windows(boxes, 300, 400, seed=7).numpy()
    np.testing.assert_array_equal(a, labels.sample_windows(boxes, 300, 400, seed=7).numpy())
    np.testing.assert_array_equal(a, labels.sample_windows(boxes, 300, 400, seed=[7, 0]).numpy())
    assert not np.allclose(a, labels.sample_windows(boxes, 300, 400, seed=8).numpy())
    assert not np.allclose(a, labels.sample_windows(boxes, 300, 400, seed=[7, 1]).numpy())
    assert not np.allclose(labels.sample_windows(boxes, 300, 400).numpy(),
                           labels.sample_windows(boxes, 300, 400).numpy())  # seed=None: fresh
    with pytest.raises(ValueError, match='seed'):
        labels.sample_windows(boxes, 300, 400, seed=[1, 2, 3])


def test_no_boxes_gives_whole_image_windows():
    whole = np.tile([[0, 0, 1, 1]], [16, 1])
    for boxes, num_valid in ((np.zeros([0, 4]), None), ([[.5, .5, .5, .9]], None),
                             ([[.1, .1, .4, .4]], 0)):
        got = labels.sample_windows(boxes, 100, 200, num_windows=16, seed=1, num_valid=num_valid)
        np.testing.assert_array_equal(got.numpy(), whole)
    # A degenerate 0 x 0 image gives finite windows, not NaN.
    got = labels.sample_windows([[.1, .1, .4, .4]], 0, 0, num_windows=4, seed=1).numpy()
    assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1))


def _config(**overrides):
    values = dict(window=True, closeness=True, edgemask=True, num_windows=16, window_min_size=32,
                  foreground_grid_size=8)
    values.update(overrides)
    return types.SimpleNamespace(**values)


BOXES = np.array([[.1, .1, .5, .4], [.3, .5, .8, .9], [.6, .2, .9, .45], [0, 0, 0, 0]], np.float32)
CLASSES = np.array([1, 3, 3, 0], np.int32)


def test_make_mtl_labels_matches_the_single_functions():
    out = labels.make_mtl_labels(BOXES, CLASSES, 3, 240, 320, 4, _config(), seed=11)
    assert sorted(out) == ['mtl_closeness_labels', 'mtl_foreground_mask',
                           'mtl_foreground_weights', 'mtl_window_labels', 'mtl_windows']
    windows = labels.sample_windows(BOXES, 240, 320, num_windows=16, min_size=32, seed=11,
                                    num_valid=3)
    np.testing.assert_array_equal(out['mtl_windows'].numpy(), windows.numpy())
    np.testing.assert_array_equal(
        out['mtl_window_labels'].numpy(),
        labels.multi_object_labels(windows, BOXES[:3], CLASSES[:3], 4).numpy())
    closeness = out['mtl_closeness_labels'].numpy()
    assert closeness.shape == (4, 5) and np.all(closeness[3] == 0)
    np.testing.assert_array_equal(
        closeness[:3], labels.closeness_labels(BOXES[:3], CLASSES[:3], 4, 240, 320).numpy())
    mask, weights = labels.foreground_labels(BOXES[:3], grid_size=8)
    np.testing.assert_array_equal(out['mtl_foreground_mask'].numpy(), mask.numpy())
    np.testing.assert_array_equal(out['mtl_foreground_weights'].numpy(), weights.numpy())
    for value in out.values():
        assert value.dtype == tf.float32


def test_make_mtl_labels_only_tasks_that_are_on_and_with_the_proto():
    out = labels.make_mtl_labels(BOXES, CLASSES, 3, 240, 320, 4, _config(window=False), seed=1)
    assert sorted(out) == ['mtl_closeness_labels', 'mtl_foreground_mask', 'mtl_foreground_weights']
    out = labels.make_mtl_labels(BOXES, CLASSES, 3, 240, 320, 4,
                                 _config(closeness=False, edgemask=False), seed=1)
    assert sorted(out) == ['mtl_window_labels', 'mtl_windows']
    proto = mtl_pb2.MTL(window=True, closeness=True)  # defaults: 64 windows, min 32, grid 64
    out = labels.make_mtl_labels(BOXES, CLASSES, 3, 240, 320, 4, proto, seed=1)
    assert sorted(out) == ['mtl_closeness_labels', 'mtl_window_labels', 'mtl_windows']
    assert out['mtl_windows'].shape == (64, 4) and out['mtl_window_labels'].shape == (64, 5)
    with pytest.raises(ValueError, match='num_windows'):
        labels.make_mtl_labels(BOXES, CLASSES, 3, 240, 320, 4, _config(num_windows=0), seed=1)


def test_make_mtl_labels_in_tf_function_and_tf_data_equal_eager():
    config = _config()
    seeds = np.array([[0, 0], [0, 1], [5, 2]], np.int64)
    heights, widths = np.array([240, 100, 600]), np.array([320, 700, 60])
    num_valid = np.array([3, 0, 2], np.int32)
    eager = [labels.make_mtl_labels(BOXES, CLASSES, num_valid[i], heights[i], widths[i], 4, config,
                                    seed=seeds[i]) for i in range(3)]

    def element(boxes, classes, n, height, width, seed):
        return labels.make_mtl_labels(boxes, classes, n, height, width, 4, config, seed=seed)

    dataset = tf.data.Dataset.from_tensor_slices(
        (np.stack([BOXES] * 3), np.stack([CLASSES] * 3), num_valid, heights, widths, seeds))
    from_data = list(dataset.map(element, num_parallel_calls=2, deterministic=True))
    graph_fn = tf.function(element)
    for i in range(3):
        from_graph = graph_fn(BOXES, CLASSES, num_valid[i], heights[i], widths[i], seeds[i])
        for key, value in eager[i].items():
            np.testing.assert_allclose(from_data[i][key].numpy(), value.numpy(), atol=1e-6)
            np.testing.assert_allclose(from_graph[key].numpy(), value.numpy(), atol=1e-6)
    assert from_data[0]['mtl_windows'].shape == (16, 4)
    np.testing.assert_array_equal(from_data[1]['mtl_windows'].numpy(), [[0, 0, 1, 1]] * 16)


def test_bad_classes_raise_inside_tf_data():
    dataset = tf.data.Dataset.from_tensors((BOXES, np.array([1, 9, 3, 0], np.int32)))
    dataset = dataset.map(lambda b, c: labels.closeness_labels(b, c, 4, 10, 10, num_valid=3))
    with pytest.raises(tf.errors.InvalidArgumentError, match='class ids must be <= num_classes'):
        list(dataset)
