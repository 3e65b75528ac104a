"""RoI crops from a feature pyramid (FPN Faster R-CNN, OD API semantics).

Level assignment (OD API `ops.fpn_feature_levels`, called by its Faster R-CNN meta-architecture
with unit_scale_index = L - 2 and image_ratio = sqrt(H * W) / 224): a box of w x h pixels goes to
pyramid index

    clip(floor(log2(sqrt(w * h) / 224)) + L - 2, 0, L - 1)

of the L feature maps, finest first. With the OD API's levels 2..6: boxes under 56 px -> P2,
56-111 -> P3, 112-223 -> P4, 224-447 -> P5, 448 px and more -> P6 (the FPN paper's k0 = 4 rule
shifted one level up, which the OD API found to work best for ResNets). A degenerate box
(zero area, e.g. padding) goes to index 0.

`multilevel_crop_and_pool` is the multi-level counterpart of `crop_ops.crop_and_pool`: each box is
cropped (bilinear crop_and_resize, the OD API's native crop) from ITS level only, then the same
valid max-pool. Boxes are normalized w.r.t. the image the pyramid was computed from; that image's
size is the finest map's size times its stride (exact when the image is padded to a multiple of
the coarsest backbone stride, as the FPN detector does). Only one crop per box is computed: the
boxes are partitioned by level, cropped per level and stitched back into their order.
"""
import math

import tensorflow as tf

# The FPN paper's canonical ImageNet pre-training size (OD API: image_ratio = sqrt(H*W) / 224).
CANONICAL_SIZE = 224.0


def fpn_feature_levels(boxes_normalized, image_height, image_width, num_levels,
                       unit_scale_index=None):
  """Pyramid index (0 = finest) of every box: int32 [..., K] for boxes [..., K, 4].

  unit_scale_index: the index a box of CANONICAL_SIZE pixels goes to; default num_levels - 2
  (the OD API Faster R-CNN choice).
  """
  if num_levels < 1:
    raise ValueError('fpn_feature_levels: num_levels must be >= 1, got %d' % num_levels)
  if unit_scale_index is None:
    unit_scale_index = max(num_levels - 2, 0)
  if not 0 <= unit_scale_index < num_levels:
    raise ValueError('fpn_feature_levels: unit_scale_index must be in [0, %d), got %d' %
                     (num_levels, unit_scale_index))
  boxes = tf.convert_to_tensor(boxes_normalized, tf.float32)
  image_ratio = tf.sqrt(tf.cast(image_height, tf.float32) *
                        tf.cast(image_width, tf.float32)) / CANONICAL_SIZE
  height_width = tf.maximum(boxes[..., 2:4] - boxes[..., 0:2], 0.0)
  area_sqrt = tf.sqrt(tf.reduce_prod(height_width, axis=-1))
  # a zero-area box would give log(0) = -inf: send it to the finest level instead
  scaled = tf.maximum(area_sqrt * image_ratio, 1e-12)
  levels = tf.floor(tf.math.log(scaled) / math.log(2.0)) + float(unit_scale_index)
  levels = tf.clip_by_value(levels, 0.0, float(num_levels - 1))
  return tf.cast(levels, tf.int32)


def pyramid_image_size(features, min_level):
  """(height, width) of the image a pyramid was computed from: finest map size x its stride."""
  shape = tf.shape(features[0])
  stride = 2 ** int(min_level)
  return shape[1] * stride, shape[2] * stride


def multilevel_crop_and_pool(features, boxes_normalized, crop_size, pool_kernel, pool_stride,
                             min_level, unit_scale_index=None):
  """features: list of L maps [B, h_l, w_l, c] (levels min_level.., finest first);
  boxes [B, K, 4] normalized -> [B * K, k, k, c], k as crop_ops.crop_and_pool.

  Equals crop_and_pool(features[level(box)], box) for every box (test); no gradient flows into
  the boxes.
  """
  features = list(features) if isinstance(features, (list, tuple)) else [features]
  num_levels = len(features)
  depths = {int(f.shape[-1]) for f in features if f.shape[-1] is not None}
  if len(depths) > 1:
    raise ValueError('multilevel_crop_and_pool: every pyramid level needs the same depth, got '
                     '%s' % sorted(depths))
  boxes = tf.stop_gradient(tf.convert_to_tensor(boxes_normalized, tf.float32))
  batch = tf.shape(boxes)[0]
  num_boxes = tf.shape(boxes)[1]
  flat_boxes = tf.reshape(boxes, [-1, 4])
  box_indices = tf.repeat(tf.range(batch), num_boxes)
  size = [int(crop_size), int(crop_size)]
  if num_levels == 1:
    crops = tf.image.crop_and_resize(features[0], flat_boxes, box_indices, size)
  else:
    height, width = pyramid_image_size(features, min_level)
    levels = tf.reshape(fpn_feature_levels(flat_boxes, height, width, num_levels,
                                           unit_scale_index), [-1])
    positions = tf.dynamic_partition(tf.range(tf.shape(flat_boxes)[0]), levels, num_levels)
    per_level = []
    for level, level_positions in enumerate(positions):
      per_level.append(tf.image.crop_and_resize(
          features[level], tf.gather(flat_boxes, level_positions),
          tf.gather(box_indices, level_positions), size))
    crops = tf.dynamic_stitch(positions, per_level)
  if pool_kernel > 1 or pool_stride > 1:
    crops = tf.nn.max_pool2d(crops, pool_kernel, pool_stride, 'VALID')
  return crops
