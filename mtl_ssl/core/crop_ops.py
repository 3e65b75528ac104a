"""Crop operations on a stride-16 feature map.

`crop_and_pool` is THE RoI feature op of the C4 detectors and of the MTL
heads: bilinear crop_and_resize to initial_crop_size, then a valid max-pool
(OD API _compute_second_stage_input_feature_maps). Boxes are normalized to
the feature map's extent (= the padded image), the crop_and_resize convention.
`position_sensitive_crop_regions` is R-FCN's position-sensitive RoI pooling
(OD API ops.position_sensitive_crop_regions with global_pool=True).
"""
import tensorflow as tf


def crop_and_pool(features, boxes_normalized, crop_size, pool_kernel,
                  pool_stride):
  """features [B, h, w, c], boxes [B, K, 4] -> [B * K, k, k, c].

  k = (crop_size - pool_kernel) // pool_stride + 1 (valid max-pool); a
  pool_kernel of 1 with stride 1 keeps the crop as is.
  """
  batch = tf.shape(boxes_normalized)[0]
  num_boxes = tf.shape(boxes_normalized)[1]
  flat_boxes = tf.reshape(boxes_normalized, [-1, 4])
  box_indices = tf.repeat(tf.range(batch), num_boxes)
  crops = tf.image.crop_and_resize(features, tf.stop_gradient(flat_boxes),
                                   box_indices, [crop_size, crop_size])
  if pool_kernel > 1 or pool_stride > 1:
    crops = tf.nn.max_pool2d(crops, pool_kernel, pool_stride, 'VALID')
  return crops


def true_to_padded_normalized(boxes, true_image_shapes, padded_height,
                              padded_width):
  """Boxes [B, K, 4] normalized w.r.t. the true image -> normalized w.r.t. the
  zero-padded image of size padded_height x padded_width (what crop_and_pool
  expects; the true image sits at the top-left of the padded one)."""
  shapes = tf.cast(true_image_shapes, boxes.dtype)
  y_scale = (shapes[:, 0] / tf.cast(padded_height, boxes.dtype))[:, tf.newaxis]
  x_scale = (shapes[:, 1] / tf.cast(padded_width, boxes.dtype))[:, tf.newaxis]
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  return tf.stack([ymin * y_scale, xmin * x_scale, ymax * y_scale,
                   xmax * x_scale], axis=-1)


def position_sensitive_crop_regions(features, boxes_normalized, crop_size,
                                    num_spatial_bins):
  """R-FCN PS-RoI pooling averaged over bins.

  features [B, h, w, kh * kw * D] (channel group g = bin_y * kw + bin_x),
  boxes [B, K, 4] normalized, crop_size (ch, cw) divisible by the bins
  -> [B, K, D]: for every bin, bilinear-crop its sub-box from its channel
  group to (ch / kh, cw / kw), average; then average over bins.
  """
  bins_y, bins_x = num_spatial_bins
  crop_h, crop_w = crop_size
  if crop_h % bins_y or crop_w % bins_x:
    raise ValueError('rfcn crop size (%d, %d) must be divisible by the number '
                     'of spatial bins (%d, %d)' % (crop_h, crop_w, bins_y,
                                                   bins_x))
  total_bins = bins_y * bins_x
  depth = features.shape[-1]
  if depth is None or depth % total_bins:
    raise ValueError('feature depth %s is not divisible by %d bins' %
                     (depth, total_bins))
  batch = tf.shape(boxes_normalized)[0]
  num_boxes = tf.shape(boxes_normalized)[1]
  flat = tf.reshape(tf.stop_gradient(boxes_normalized), [-1, 4])
  box_indices = tf.repeat(tf.range(batch), num_boxes)
  ymin, xmin, ymax, xmax = tf.unstack(flat, axis=1)
  step_y = (ymax - ymin) / bins_y
  step_x = (xmax - xmin) / bins_x
  groups = tf.split(features, total_bins, axis=3)
  bin_size = [crop_h // bins_y, crop_w // bins_x]
  pooled = []
  for by in range(bins_y):
    for bx in range(bins_x):
      sub_box = tf.stack([ymin + by * step_y, xmin + bx * step_x,
                          ymin + (by + 1) * step_y, xmin + (bx + 1) * step_x],
                         axis=1)
      crop = tf.image.crop_and_resize(groups[by * bins_x + bx], sub_box,
                                      box_indices, bin_size)
      pooled.append(tf.reduce_mean(crop, axis=[1, 2]))
  result = tf.add_n(pooled) / float(total_bins)
  return tf.reshape(result, [batch, num_boxes, depth // total_bins])
