"""Milliseconds per image of the online MTL labels (mtl_ssl.mtl.labels).

Rows: 64 windows x {10, 50, 100} boxes x {21, 91} label columns. Columns:
- windows eager / tf.function: multi_object_labels (exact union by coordinate compression);
- windows naive numpy: an inclusion-exclusion-free per-window, per-class rasterization on the
  window's own compressed grid (python loops over windows and classes), for comparison;
- all eager / tf.function: make_mtl_labels with every task on (sample_windows + window labels +
  closeness + 64x64 foreground), i.e. the whole per-image cost in the input pipeline.
The target is a few ms per image (under 5% of a ~0.15 s training step).

Run: TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=. python bench/bench_labels.py [--repeats 20]
"""
import argparse
import os
import time
import types

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtl_ssl.mtl import labels  # noqa: E402

NUM_WINDOWS = 64


def naive_window_labels(windows, boxes, classes, num_classes):
    """Straightforward numpy: per window and class, rasterize on the exact grid of the edges."""
    boxes = np.clip(boxes.astype(np.float64), 0, 1)
    out = np.zeros([len(windows), num_classes + 1])
    for m, (wy0, wx0, wy1, wx1) in enumerate(windows.astype(np.float64)):
        area = (wy1 - wy0) * (wx1 - wx0)
        ys = np.unique(np.clip(np.concatenate([[wy0, wy1], boxes[:, 0], boxes[:, 2]]), wy0, wy1))
        xs = np.unique(np.clip(np.concatenate([[wx0, wx1], boxes[:, 1], boxes[:, 3]]), wx0, wx1))
        cy, cx = (ys[1:] + ys[:-1]) / 2, (xs[1:] + xs[:-1]) / 2
        cell_area = np.outer(ys[1:] - ys[:-1], xs[1:] - xs[:-1])
        in_y = (cy[None] > boxes[:, 0:1]) & (cy[None] < boxes[:, 2:3])  # [N, R]
        in_x = (cx[None] > boxes[:, 1:2]) & (cx[None] < boxes[:, 3:4])  # [N, C]
        any_covered = np.zeros(cell_area.shape, bool)
        for k in np.unique(classes):
            sel = classes == k
            covered = np.einsum('nr,nc->rc', in_y[sel].astype(np.int32),
                                in_x[sel].astype(np.int32)) > 0
            any_covered |= covered
            out[m, k] = cell_area[covered].sum() / area
        out[m, 0] = max(0.0, 1 - cell_area[any_covered].sum() / area)
    roots = np.sqrt(out)
    return roots / roots.sum(1, keepdims=True)


def random_image(rng, num_boxes, num_classes):
    centre = rng.uniform(0, 1, [num_boxes, 2])
    size = rng.uniform(0.02, 0.5, [num_boxes, 2])
    boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], 1), 0, 1)
    classes = rng.integers(1, num_classes + 1, num_boxes).astype(np.int32)
    return boxes.astype(np.float32), classes


def ms_per_call(fn, args_list, repeats):
    """(median wall ms, mean CPU ms of this process) per call; CPU time is robust to other load."""
    fn(*args_list[0])  # warm up / trace
    walls = []
    cpu_start = time.process_time()
    for r in range(repeats):
        args = args_list[r % len(args_list)]
        start = time.perf_counter()
        out = fn(*args)
        if isinstance(out, dict):
            [v.numpy() for v in out.values()]
        elif hasattr(out, 'numpy'):
            out.numpy()
        walls.append(time.perf_counter() - start)
    return 1000 * float(np.median(walls)), 1000 * (time.process_time() - cpu_start) / repeats


def _all_labels_fn(num_classes, config):
    def all_labels(b, c, n, seed):
        return labels.make_mtl_labels(b, c, n, 600, 800, num_classes, config, seed=seed)
    return all_labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f'64 windows per image; ms per image as "median wall / mean CPU" over {args.repeats} '
          f'calls; {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}, '
          f'TF {tf.__version__}')
    header = ('boxes', 'columns', 'win eager', 'win tf.fn', 'win numpy', 'all eager', 'all tf.fn')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for num_classes in (20, 90):
        config = types.SimpleNamespace(window=True, closeness=True, edgemask=True,
                                       num_windows=NUM_WINDOWS, window_min_size=32,
                                       foreground_grid_size=64)
        window_fn = tf.function(
            lambda w, b, c: labels.multi_object_labels(w, b, c, num_classes),
            input_signature=[tf.TensorSpec([None, 4], tf.float32),
                             tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)])

        all_labels = _all_labels_fn(num_classes, config)

        all_fn = tf.function(all_labels, input_signature=[
            tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)])
        for num_boxes in (10, 50, 100):
            images = [random_image(rng, num_boxes, num_classes) for _ in range(8)]
            windows = [labels.sample_windows(b, 600, 800, NUM_WINDOWS, seed=i).numpy()
                       for i, (b, _) in enumerate(images)]
            win_args = [(w, b, c) for w, (b, c) in zip(windows, images)]
            all_args = [(tf.constant(b), tf.constant(c), tf.constant(num_boxes),
                         tf.constant([i, 0], tf.int64)) for i, (b, c) in enumerate(images)]
            row = [
                ms_per_call(lambda w, b, c: labels.multi_object_labels(w, b, c, num_classes),
                            win_args, args.repeats),
                ms_per_call(window_fn, win_args, args.repeats),
                ms_per_call(lambda w, b, c: naive_window_labels(w, b, c, num_classes),
                            win_args, max(3, args.repeats // 4)),
                ms_per_call(all_labels, all_args, args.repeats),
                ms_per_call(all_fn, all_args, args.repeats),
            ]
            print(f'| {num_boxes} | {num_classes + 1} | '
                  + ' | '.join(f'{wall:.1f} / {cpu:.1f}' for wall, cpu in row) + ' |')
    for w, b, c in win_args[:2]:  # sanity: both implementations agree
        np.testing.assert_allclose(window_fn(w, b, c).numpy(), naive_window_labels(w, b, c, 90),
                                   atol=1e-5)


if __name__ == '__main__':
    main()
