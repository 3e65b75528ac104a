"""Box operations on [..., 4] tensors in [ymin, xmin, ymax, xmax] order.

Batched, static-shape versions of the OD API's box_list_ops that the two-stage
detectors need. Padded boxes are handled with explicit validity masks instead
of dynamic slicing, so everything runs inside tf.function / tf.distribute.
"""
import tensorflow as tf


def area(boxes):
  """Area of boxes [..., 4] -> [...]."""
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  return (ymax - ymin) * (xmax - xmin)


def pairwise_iou(boxes1, boxes2):
  """IoU between every pair: boxes1 [..., N, 4], boxes2 [..., M, 4] -> [..., N, M].

  Same definition as the OD API's IouSimilarity: intersection / union, 0 where
  the union is 0 (degenerate, e.g. zero padding).
  """
  y1a, x1a, y2a, x2a = tf.split(boxes1, 4, axis=-1)  # [..., N, 1]
  y1b, x1b, y2b, x2b = [tf.linalg.matrix_transpose(t)
                        for t in tf.split(boxes2, 4, axis=-1)]  # [..., 1, M]
  inter_h = tf.maximum(tf.minimum(y2a, y2b) - tf.maximum(y1a, y1b), 0.0)
  inter_w = tf.maximum(tf.minimum(x2a, x2b) - tf.maximum(x1a, x1b), 0.0)
  inter = inter_h * inter_w
  area_a = (y2a - y1a) * (x2a - x1a)
  area_b = (y2b - y1b) * (x2b - x1b)
  union = area_a + area_b - inter
  return tf.where(union > 0.0, inter / tf.where(union > 0.0, union, 1.0), 0.0)


def clip_to_window(boxes, window):
  """Clips boxes [B, N, 4] to per-image windows [B, 4] (OD API clip_to_window
  without filtering: boxes keep their slot, possibly with zero area)."""
  win = window[:, tf.newaxis, :]
  ymin = tf.clip_by_value(boxes[..., 0], win[..., 0], win[..., 2])
  xmin = tf.clip_by_value(boxes[..., 1], win[..., 1], win[..., 3])
  ymax = tf.clip_by_value(boxes[..., 2], win[..., 0], win[..., 2])
  xmax = tf.clip_by_value(boxes[..., 3], win[..., 1], win[..., 3])
  return tf.stack([ymin, xmin, ymax, xmax], axis=-1)


def inside_window(boxes, window):
  """Boolean [B, N]: box lies fully inside its image window [B, 4]
  (the OD API's prune_outside_window criterion)."""
  win = window[:, tf.newaxis, :]
  return ((boxes[..., 0] >= win[..., 0]) & (boxes[..., 1] >= win[..., 1]) &
          (boxes[..., 2] <= win[..., 2]) & (boxes[..., 3] <= win[..., 3]))


def scale(boxes, y_scale, x_scale):
  """Multiplies y coords by y_scale and x coords by x_scale.

  boxes [B, N, 4]; scales are scalars or [B] tensors (one per image).
  """
  y_scale = tf.reshape(tf.cast(y_scale, boxes.dtype), [-1, 1])
  x_scale = tf.reshape(tf.cast(x_scale, boxes.dtype), [-1, 1])
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  return tf.stack([ymin * y_scale, xmin * x_scale, ymax * y_scale,
                   xmax * x_scale], axis=-1)


def to_absolute(boxes, heights, widths):
  """Normalized [B, N, 4] -> absolute pixels, heights/widths [B] or scalars."""
  return scale(boxes, heights, widths)


def to_normalized(boxes, heights, widths):
  """Absolute [B, N, 4] -> normalized by heights/widths [B] or scalars."""
  heights = tf.cast(heights, boxes.dtype)
  widths = tf.cast(widths, boxes.dtype)
  return scale(boxes, 1.0 / heights, 1.0 / widths)


def true_image_window(true_image_shapes):
  """[B, 3] true image shapes -> absolute clip windows [B, 4] = [0, 0, h, w]."""
  shapes = tf.cast(true_image_shapes, tf.float32)
  zeros = tf.zeros_like(shapes[:, 0])
  return tf.stack([zeros, zeros, shapes[:, 0], shapes[:, 1]], axis=1)


def valid_mask(num_valid, size):
  """[B] counts -> boolean [B, size] with the first num_valid[b] entries True."""
  return tf.sequence_mask(num_valid, size)


def gather_rows(values, indices):
  """Per-image gather: values [B, N, ...], indices [B, K] -> [B, K, ...]."""
  return tf.gather(values, indices, batch_dims=1)
