"""Self-supervised MTL-SSL labels made online from the ground-truth boxes (issue 4).

Conventions: boxes are normalized [ymin, xmin, ymax, xmax] (OD API), clipped to [0, 1] here; class
ids are ints 1..num_classes; label outputs have num_classes + 1 columns, column 0 = background.
Every function takes numpy arrays or tensors, works eagerly, in tf.function and in
tf.data.Dataset.map, and returns float32 tensors. `num_valid` (a scalar count, or a bool mask of
the rows) marks padded boxes: they never influence a label, and padded output rows are zeros.
Boxes with zero area (after clipping) have no area: they count for no window and no foreground
cell, but their centre still counts as an object for closeness.

The labels are rebuilt for every example in the input pipeline (fresh windows each epoch, from the
boxes of the augmented image), which fixes the original's once-offline labels that were not flipped
with the image. The window-label union is exact (see union_area.py).
"""
import tensorflow as tf

from mtl_ssl.mtl import union_area
from mtl_ssl.mtl.label_inputs import (F64, as_float, checked_boxes, checked_classes, clipped,
                                      graph, optional_tensor, positive_area, valid_classes,
                                      valid_mask, zero_padded_rows)
from mtl_ssl.mtl.window_sampling import as_seed, sample_windows  # both part of this API


def multi_object_labels(windows, boxes, classes, num_classes, num_valid=None):
    """Task 1 soft labels [M, num_classes + 1] of windows [M, 4].

    A_k = area(union of class-k boxes within the window) / area(window); A_0 = max(0, 1 -
    area(union of all boxes within the window) / area(window)); label = sqrt(A) / sum(sqrt(A)).
    Unions are exact (coordinate compression, union_area.py). `num_valid` refers to the boxes; all
    windows are used. A window's area is its own (unclipped) area, so a part outside the image
    counts as background; a zero-area window gets the label "background" (1, 0, ...).
    """
    name = 'multi_object_labels'
    boxes = checked_boxes(boxes, f'{name}: boxes')
    return _multi_object_labels(checked_boxes(windows, f'{name}: windows'), boxes,
                                checked_classes(classes, boxes, name),
                                optional_tensor(num_valid), int(num_classes))


@graph
def _multi_object_labels(windows, boxes, classes, num_valid, num_classes):
    windows = tf.cast(windows, F64)
    boxes = clipped(boxes)
    valid = valid_mask(tf.shape(boxes)[0], num_valid)
    classes = valid_classes(classes, valid, num_classes, 'multi_object_labels')
    valid &= positive_area(boxes)
    slot_boxes, slot_classes = union_area.group_boxes_by_class(boxes, classes, valid)
    class_area = union_area.union_area_in_windows(slot_boxes, windows)  # [M, U]
    total_area = union_area.union_area_in_windows(tf.boolean_mask(boxes, valid)[None], windows)

    win_area = (tf.maximum(windows[:, 2] - windows[:, 0], 0.0)
                * tf.maximum(windows[:, 3] - windows[:, 1], 0.0))
    has_area = win_area > 0
    safe_area = tf.where(has_area, win_area, tf.ones_like(win_area))
    class_frac = tf.clip_by_value(class_area / safe_area[:, None], 0.0, 1.0)
    per_class = tf.transpose(tf.scatter_nd(slot_classes[:, None], tf.transpose(class_frac),
                                           tf.stack([num_classes + 1, tf.shape(windows)[0]])))
    per_class = tf.where(has_area[:, None], per_class, tf.zeros_like(per_class))
    background = tf.where(has_area, tf.maximum(1.0 - total_area[:, 0] / safe_area, 0.0),
                          tf.ones_like(win_area))
    roots = tf.sqrt(tf.concat([background[:, None], per_class[:, 1:]], 1))
    # sum(A) >= 1 (A_0 + union <= sum), so the sum of roots is >= 1; the guard is for rounding only.
    labels = roots / tf.maximum(tf.reduce_sum(roots, 1, keepdims=True), 1e-12)
    return tf.cast(labels, tf.float32)


def closeness_labels(boxes, classes, num_classes, image_height, image_width, num_valid=None):
    """Task 2 labels [N, num_classes + 1]: closeness of each box to the other classes' boxes.

    s_ij = 1 - |centre_i - centre_j| / image diagonal (pixels), for boxes j of another class;
    v_k = max_j of class k s_ij (0 if none); v_0 = 1 when there is no box of another class (also
    when every v_k is 0, which needs centres in opposite corners: the original's guard, avoids
    0/0); label = v / sum(v). Padded rows are zeros.
    """
    boxes = checked_boxes(boxes, 'closeness_labels: boxes')
    return _closeness_labels(boxes, checked_classes(classes, boxes, 'closeness_labels'),
                             as_float(image_height), as_float(image_width),
                             optional_tensor(num_valid), int(num_classes))


@graph
def _closeness_labels(boxes, classes, image_height, image_width, num_valid, num_classes):
    boxes = clipped(boxes)
    valid = valid_mask(tf.shape(boxes)[0], num_valid)
    classes = valid_classes(classes, valid, num_classes, 'closeness_labels')
    height = tf.cast(image_height, F64)
    width = tf.cast(image_width, F64)
    cy = (boxes[:, 0] + boxes[:, 2]) * 0.5 * height
    cx = (boxes[:, 1] + boxes[:, 3]) * 0.5 * width
    dist = tf.sqrt(tf.square(cy[:, None] - cy[None, :]) + tf.square(cx[:, None] - cx[None, :]))
    diagonal = tf.sqrt(tf.square(height) + tf.square(width))
    closeness = tf.clip_by_value(1.0 - dist / tf.maximum(diagonal, 1e-12), 0.0, 1.0)
    other = valid[:, None] & valid[None, :] & tf.not_equal(classes[:, None], classes[None, :])
    closeness = tf.where(other, closeness, -tf.ones_like(closeness))  # [i, j]
    segment = tf.where(valid, classes, num_classes + 1)  # padded boxes -> a dropped segment
    per_class = tf.math.unsorted_segment_max(tf.transpose(closeness), segment,
                                             num_classes + 2)  # [C + 2, N_i]
    per_class = tf.maximum(tf.transpose(per_class)[:, 1:num_classes + 1], 0.0)  # [N, C]
    background = tf.cast(tf.reduce_sum(per_class, 1, keepdims=True) <= 0, F64)
    values = tf.concat([background, per_class], 1)
    labels = values / tf.reduce_sum(values, 1, keepdims=True)  # sum >= some v_k > 0 or v_0 = 1
    return tf.cast(zero_padded_rows(labels, valid), tf.float32)


def _cell_range(low, high, grid_size):
    """First and last (inclusive) cell of [low, high] on a grid_size grid, the paper's rule."""
    first = tf.minimum(tf.floor(low * grid_size), grid_size - 1)
    last = tf.minimum(tf.floor(high * grid_size + 0.99), grid_size - 1)
    return tf.cast(first, tf.int32), tf.cast(tf.maximum(last, first), tf.int32)


def foreground_labels(boxes, grid_size=64, num_valid=None):
    """Task 3 labels: (mask [g, g], weights [g, g]) over the whole image (aspect ignored).

    Cells rows floor(ymin*g) .. min(g-1, floor(ymax*g + 0.99)) (same for columns) of every box are
    1. Weights start at 1/g^2, become max(weight, 1/#cells of the box) inside each box, then are
    divided by their mean, so every object weighs about the same whatever its size. Note the rule
    (kept from the paper) reaches about one cell past a box's max edges, so it is not
    mirror-symmetric: a flipped image gets the labels of its flipped boxes (computed online), which
    are not exactly the mirrored mask.
    """
    if not isinstance(grid_size, int) or grid_size < 1:
        raise ValueError(f'foreground_labels: grid_size (mtl.foreground_grid_size) must be a '
                         f'positive int, got {grid_size!r}')
    return _foreground_labels(checked_boxes(boxes, 'foreground_labels: boxes'),
                              optional_tensor(num_valid), grid_size)


@graph
def _foreground_labels(boxes, num_valid, grid_size):
    boxes = clipped(boxes)
    valid = valid_mask(tf.shape(boxes)[0], num_valid) & positive_area(boxes)
    g = float(grid_size)
    row0, row1 = _cell_range(boxes[:, 0], boxes[:, 2], g)
    col0, col1 = _cell_range(boxes[:, 1], boxes[:, 3], g)
    cells = tf.range(grid_size)
    in_rows = (cells[None] >= row0[:, None]) & (cells[None] <= row1[:, None]) & valid[:, None]
    in_cols = (cells[None] >= col0[:, None]) & (cells[None] <= col1[:, None])
    box_weight = 1.0 / tf.cast((row1 - row0 + 1) * (col1 - col0 + 1), tf.float32)
    row_weight = tf.where(in_rows, box_weight[:, None], 0.0)  # [N, g]
    # Max over boxes of (1/#cells inside the box, 0 outside): [N, g, g] products, one reduction.
    best = tf.reduce_max(row_weight[:, :, None] * tf.cast(in_cols, tf.float32)[:, None, :], 0)
    mask = tf.cast(best > 0, tf.float32)  # no box: reduce_max gives -inf, the mask 0
    weights = tf.cast(tf.maximum(best, 1.0 / (g * g)), F64)
    return mask, tf.cast(weights / tf.reduce_mean(weights), tf.float32)


def context_boxes(boxes, num_levels=5, num_valid=None):
    """The refiner's context windows [..., P, L, 4]: level i grows the box linearly to the image.

    ymin_i = ymin * (1 - i/(L-1)), ymax_i = ymax + i * (1 - ymax)/(L-1), same for x: level 0 is the
    (clipped) box, level L-1 the whole image. Any leading batch dims; num_valid has their shape.
    """
    if not isinstance(num_levels, int) or num_levels < 2:
        raise ValueError(f'context_boxes: num_levels (mtl.num_context_levels) must be an int >= 2, '
                         f'got {num_levels!r}')
    boxes = tf.clip_by_value(tf.cast(tf.convert_to_tensor(boxes), tf.float32), 0.0, 1.0)
    if boxes.shape.rank is None or boxes.shape.rank < 2 or boxes.shape[-1] != 4:
        raise ValueError(f'context_boxes: boxes must have shape [..., P, 4], got {boxes.shape}')
    step = tf.range(num_levels, dtype=tf.float32) / float(num_levels - 1)  # [L]
    low = boxes[..., None, 0:2] * (1.0 - step[:, None])  # [..., P, L, 2]
    high = boxes[..., None, 2:4] + step[:, None] * (1.0 - boxes[..., None, 2:4])
    out = tf.concat([low, high], -1)
    if num_valid is not None:
        num_valid = tf.convert_to_tensor(num_valid)
        num_rows = tf.shape(boxes)[-2]
        if num_valid.dtype == tf.bool or num_valid.shape.rank == boxes.shape.rank - 1:
            valid = tf.cast(num_valid, tf.bool)
        else:
            valid = tf.range(num_rows) < tf.cast(num_valid, tf.int32)[..., None]
        out = tf.where(valid[..., None, None], out, tf.zeros_like(out))
    return out


def make_mtl_labels(boxes, classes, num_valid, image_height, image_width, num_classes, mtl_config,
                    seed=None):
    """All online labels of one image whose task is on in `mtl_config` (the MTL proto message, or
    any object with fields window, closeness, edgemask, num_windows, window_min_size,
    foreground_grid_size).

    Keys: 'mtl_windows' [M, 4] and 'mtl_window_labels' [M, C+1] (window), 'mtl_closeness_labels'
    [N, C+1] (closeness), 'mtl_foreground_mask' and 'mtl_foreground_weights' [G, G] (edgemask).
    `classes` are int ids [N]; `seed` None, an int or an int [2] stateless seed (for windows).
    """
    tasks = (bool(mtl_config.window), bool(mtl_config.closeness), bool(mtl_config.edgemask))
    num_windows = int(mtl_config.num_windows)
    min_size = float(mtl_config.window_min_size)
    grid_size = int(mtl_config.foreground_grid_size)
    if tasks[0] and num_windows < 1:
        raise ValueError(f'model.mtl.num_windows must be >= 1, got {num_windows}')
    if tasks[0] and min_size < 0:
        raise ValueError(f'model.mtl.window_min_size must be >= 0, got {min_size}')
    if tasks[2] and grid_size < 1:
        raise ValueError(f'model.mtl.foreground_grid_size must be >= 1, got {grid_size}')
    boxes = checked_boxes(boxes, 'make_mtl_labels: boxes')
    classes = checked_classes(classes, boxes, 'make_mtl_labels')
    return _make_mtl_labels(boxes, classes, optional_tensor(num_valid), as_float(image_height),
                            as_float(image_width), as_seed(seed), int(num_classes), tasks,
                            num_windows, min_size, grid_size)


@graph
def _make_mtl_labels(boxes, classes, num_valid, image_height, image_width, seed, num_classes,
                     tasks, num_windows, min_size, grid_size):
    """One graph for all tasks (one dispatch per image when called eagerly)."""
    window, closeness, edgemask = tasks
    out = {}
    if window:
        windows = sample_windows(boxes, image_height, image_width, num_windows=num_windows,
                                 min_size=min_size, seed=seed, num_valid=num_valid)
        out['mtl_windows'] = windows
        out['mtl_window_labels'] = multi_object_labels(windows, boxes, classes, num_classes,
                                                       num_valid=num_valid)
    if closeness:
        out['mtl_closeness_labels'] = closeness_labels(boxes, classes, num_classes, image_height,
                                                       image_width, num_valid=num_valid)
    if edgemask:
        mask, weights = foreground_labels(boxes, grid_size=grid_size, num_valid=num_valid)
        out['mtl_foreground_mask'] = mask
        out['mtl_foreground_weights'] = weights
    return out
