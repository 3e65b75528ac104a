"""Task-1 random windows of MTL-SSL (the paper's sampling, seeded and vectorized)."""
import tensorflow as tf

from mtl_ssl.mtl.label_inputs import (as_float, checked_boxes, clipped, graph, optional_tensor,
                                      positive_area, valid_mask)


def as_seed(seed):
    """int64 [2] stateless seed from None (a fresh random one), a python int or an int tensor."""
    if seed is None:
        return tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int64)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        return tf.stack([seed, tf.zeros([], tf.int64)])
    if seed.shape.rank == 1 and seed.shape[0] == 2:
        return seed
    raise ValueError(f'seed must be None, an int, or an int tensor of shape [2], got {seed.shape}')


_CANDIDATES_PER_WINDOW = 4  # candidates drawn per round, per window still missing
_MAX_ROUNDS = 50


def sample_windows(boxes, image_height, image_width, num_windows=64, min_size=32, seed=None,
                   num_valid=None):
    """Task-1 random windows [M, 4] (normalized) that each overlap a box, as in the paper.

    Height h = U*(H - s) + s and width w = U*(W - s) + s pixels (s = min_size, at most the image
    size), centre uniform in the image; the window is clipped to the image and a clipped side
    shorter than s is stretched back to s away from the border it touches; a window that overlaps
    no box with positive area is rejected and redrawn. Candidates are drawn in vectorized rounds of
    4*M from tf.random.stateless_uniform (seed folded with the round number), so the result is
    fixed by the seed in eager mode, tf.function and tf.data alike, and M is fixed so batches
    stack.

    No boxes: an image without a positive-area box gets M copies of the whole image [0, 0, 1, 1]
    (whose label is pure background). The original stored one random window with that label; with a
    fixed M the mean loss over M identical windows equals the loss of that one window, and the whole
    image is the deterministic "nothing here" crop. The same fill is used for any windows still
    missing after 50 rounds (200*M candidates; only for a tiny box in a corner of a huge image).
    """
    if int(num_windows) < 1 or (isinstance(min_size, (int, float)) and min_size < 0):
        raise ValueError(f'sample_windows: need num_windows >= 1 (mtl.num_windows) and '
                         f'min_size >= 0 (mtl.window_min_size), got {num_windows}, {min_size}')
    return _sample_windows(checked_boxes(boxes, 'sample_windows: boxes', tf.float32),
                           as_float(image_height), as_float(image_width), as_seed(seed),
                           optional_tensor(num_valid), as_float(min_size), int(num_windows))


@graph
def _sample_windows(boxes, image_height, image_width, seed, num_valid, min_size, num_windows):
    boxes32 = clipped(boxes, tf.float32)
    valid = valid_mask(tf.shape(boxes32)[0], num_valid) & positive_area(boxes32)
    has_boxes = tf.reduce_any(valid)
    height = tf.maximum(image_height, 1.0)  # guards the normalization of an empty image
    width = tf.maximum(image_width, 1.0)
    min_h = tf.minimum(min_size, height)
    min_w = tf.minimum(min_size, width)
    num_candidates = _CANDIDATES_PER_WINDOW * num_windows

    def clip_and_stretch(centre, length, size, min_length):
        low = tf.maximum(centre - length / 2, 0.0)
        high = tf.minimum(centre + length / 2, size)
        short = high - low < min_length
        new_high = tf.where(short & (low <= 0.0), min_length, high)
        new_low = tf.where(short & (low > 0.0) & (high >= size), size - min_length, low)
        return new_low / size, new_high / size

    def draw(round_index):
        round_seed = tf.random.experimental.stateless_fold_in(seed, round_index)
        u = tf.random.stateless_uniform([num_candidates, 4], round_seed, dtype=tf.float32)
        win_h = u[:, 0] * (height - min_h) + min_h
        win_w = u[:, 1] * (width - min_w) + min_w
        ymin, ymax = clip_and_stretch(u[:, 2] * height, win_h, height, min_h)
        xmin, xmax = clip_and_stretch(u[:, 3] * width, win_w, width, min_w)
        return tf.stack([ymin, xmin, ymax, xmax], 1)

    def touches_a_box(windows):
        dy = (tf.minimum(windows[:, None, 2], boxes32[None, :, 2])
              - tf.maximum(windows[:, None, 0], boxes32[None, :, 0]))
        dx = (tf.minimum(windows[:, None, 3], boxes32[None, :, 3])
              - tf.maximum(windows[:, None, 1], boxes32[None, :, 1]))
        return tf.reduce_any((dy > 0) & (dx > 0) & valid[None, :], 1)

    slots = tf.range(num_windows)

    def body(round_index, count, accepted):
        candidates = draw(round_index)
        ok = touches_a_box(candidates)
        num_ok = tf.reduce_sum(tf.cast(ok, tf.int32))
        ok_first = tf.gather(candidates, tf.argsort(tf.cast(~ok, tf.int32), stable=True))
        source = slots - count  # slot j takes the (j - count)-th accepted candidate
        take = (source >= 0) & (source < num_ok)
        rows = tf.gather(ok_first, tf.clip_by_value(source, 0, num_candidates - 1))
        accepted = tf.where(take[:, None], rows, accepted)
        return round_index + 1, tf.minimum(count + num_ok, num_windows), accepted

    def cond(round_index, count, accepted):
        del accepted
        return has_boxes & (count < num_windows) & (round_index < _MAX_ROUNDS)

    whole_image = tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [num_windows, 1])
    _, count, accepted = tf.while_loop(
        cond, body, [tf.constant(0, tf.int32), tf.constant(0, tf.int32), whole_image])
    return tf.where((slots < count)[:, None], accepted, whole_image)
