"""Exact area of a union of boxes inside many windows (Task 1 of MTL-SSL).

Why coordinate compression: the original computed the union by inclusion-exclusion over all subsets
of boxes, which is exponential and, as written, wrong for 12 or more mutually overlapping boxes.
Here the edges of a group of n boxes (plus the image borders 0 and 1) cut the unit square into an
irregular grid of R x C cells (R = C = 2n + 1). Every cell is either entirely inside the union or
entirely outside, so the union is exact for any number of overlapping boxes:

1. coverage: a cell is covered when its centre is inside some box. With row_in[i, r] (row r's
   centre inside box i's y-range) and col_in[i, c], the number of boxes covering cell (r, c) is the
   matrix product row_in^T @ col_in; covered = count > 0.
2. window areas: coverage is constant on a cell, so the covered area inside window m is the exact
   bilinear form  sum_{r,c} Y[m, r] * covered[r, c] * X[m, c],  where Y[m, r] is the length of
   row r inside the window's y-range (X the same for columns): one more matrix product. The window
   edges need not be grid lines, which keeps the grid at (2n+1)^2 instead of (2n+2M+1)^2.

Both steps are batched matmuls (BLAS) rather than a difference array + cumulative sums + a
summed-area table with gathers: measured 2-3x faster in TF on CPU, because TF's cumsum and gather
kernels cost far more per element than a matmul, and there are fewer ops to dispatch.

Per class the grid only holds that class's boxes ("slots" of equal padded length; padding boxes
have zero area and cover no cell). The cost is about U * M * (2 n_max + 1)^2 for U classes present
with at most n_max boxes each, instead of (C+1) * M * (2N+1)^2 for one grid shared by all classes.
Areas are computed in float64 so a 32 px window in a 2000 px image (area ~2.6e-4) stays exact to
~1e-12; the coverage counts are small integers, exact in float32.
"""
import tensorflow as tf

_F = tf.float64


def group_boxes_by_class(boxes, classes, valid):
    """Packs valid boxes into one padded slot per distinct class.

    Args:
      boxes: float64 [N, 4] clipped boxes.
      classes: int32 [N].
      valid: bool [N]; boxes that are False are ignored.
    Returns:
      slot_boxes: float64 [U, n_max, 4], rows past a class's count are zero (zero-area) boxes.
      slot_classes: int32 [U], the class id of each slot (ascending).
    """
    key = tf.where(valid, classes, tf.int32.max)  # invalid rows sort last and are cut off
    order = tf.argsort(key, stable=True)
    num = tf.reduce_sum(tf.cast(valid, tf.int32))
    sorted_key = tf.gather(key, order)[:num]
    sorted_boxes = tf.gather(boxes, order)[:num]
    slot_classes, slot_of_box = tf.unique(sorted_key)  # sorted input -> slots ascending
    num_slots = tf.shape(slot_classes)[0]
    counts = tf.math.unsorted_segment_sum(tf.ones_like(slot_of_box), slot_of_box, num_slots)
    starts = tf.cumsum(counts, exclusive=True)
    rank = tf.range(num) - tf.gather(starts, slot_of_box)
    n_max = tf.reduce_max(tf.concat([counts, [0]], 0))
    slot_boxes = tf.scatter_nd(tf.stack([slot_of_box, rank], 1), sorted_boxes,
                               tf.stack([num_slots, n_max, 4]))
    return slot_boxes, slot_classes


def _cells(low, high):
    """Sorted cell edges of the compressed grid along one axis: lower [U, 2n+1], upper [U, 2n+1]."""
    num_slots = tf.shape(low)[0]
    border = tf.concat([tf.zeros([num_slots, 1], _F), tf.ones([num_slots, 1], _F)], 1)
    lines = tf.sort(tf.concat([border, low, high], 1), axis=1)
    return lines[:, :-1], lines[:, 1:]


def _inside(cell_low, cell_high, low, high):
    """[U, n, R] float32: the centre of cell r lies strictly inside [low_i, high_i] of box i."""
    centre = (cell_low + cell_high)[:, None, :] * 0.5
    return tf.cast((centre > low[:, :, None]) & (centre < high[:, :, None]), tf.float32)


def _overlap(cell_low, cell_high, window_low, window_high):
    """[U, M, R] float64: length of cell r inside each window's range."""
    return tf.maximum(tf.minimum(window_high[None, :, None], cell_high[:, None, :])
                      - tf.maximum(window_low[None, :, None], cell_low[:, None, :]), 0.0)


def union_area_in_windows(slot_boxes, windows):
    """Area of (union of each slot's boxes) intersected with each window.

    Args:
      slot_boxes: float64 [U, n, 4] boxes clipped to [0, 1] (zero-area rows are padding).
      windows: float64 [M, 4]; only their part inside [0, 1]^2 can hold boxes.
    Returns:
      float64 [M, U] covered areas in normalized units (not divided by the window area).
    """
    ymin, xmin, ymax, xmax = tf.unstack(slot_boxes, axis=-1)  # [U, n]
    row_low, row_high = _cells(ymin, ymax)  # [U, R]
    col_low, col_high = _cells(xmin, xmax)
    count = tf.matmul(_inside(row_low, row_high, ymin, ymax),
                      _inside(col_low, col_high, xmin, xmax), transpose_a=True)  # [U, R, C]
    covered = tf.cast(count > 0.5, _F)
    w = tf.clip_by_value(windows, 0.0, 1.0)
    rows = _overlap(row_low, row_high, w[:, 0], w[:, 2])  # [U, M, R]
    cols = _overlap(col_low, col_high, w[:, 1], w[:, 3])  # [U, M, C]
    area = tf.reduce_sum(tf.matmul(rows, covered) * cols, -1)  # [U, M]
    return tf.transpose(area)
