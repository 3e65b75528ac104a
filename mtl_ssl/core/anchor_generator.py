"""Grid anchor generators (OD API GridAnchorGenerator / MultiscaleGridAnchorGenerator).

For every cell (y, x) of a feature map and every (aspect ratio, scale) pair,
an anchor centred at (y * stride_y + offset_y, x * stride_x + offset_x) with
height = scale / sqrt(ratio) * base_h and width = scale * sqrt(ratio) * base_w,
in absolute pixels. Order: y, then x, then anchor; the anchor index runs over
scales fastest (ratio-major), as the OD API's meshgrid(scales, ratios).

MultiscaleGridAnchorGenerator (FPN): one such grid per pyramid level l = min..max with stride
2^l, base size anchor_scale * 2^l, scales 2^(i / scales_per_octave) and offset 2^l / 2 (the
offset the OD API Faster R-CNN gets, as it generates without an image size); the levels'
anchors are concatenated finest first.
"""
import numpy as np
import tensorflow as tf


class GridAnchorGenerator:
  """Anchors on a regular grid; `generate(h, w)` -> [h * w * A, 4] float32."""

  def __init__(self, scales=(0.5, 1.0, 2.0), aspect_ratios=(0.5, 1.0, 2.0),
               base_anchor_size=(256, 256), anchor_stride=(16, 16),
               anchor_offset=(0, 0)):
    scales = [float(s) for s in scales]
    aspect_ratios = [float(r) for r in aspect_ratios]
    if not scales or any(s <= 0 for s in scales):
      raise ValueError('grid_anchor_generator.scales must be positive, got %r'
                       % scales)
    if not aspect_ratios or any(r <= 0 for r in aspect_ratios):
      raise ValueError('grid_anchor_generator.aspect_ratios must be positive, '
                       'got %r' % aspect_ratios)
    self.scales = scales
    self.aspect_ratios = aspect_ratios
    self.base_anchor_size = [float(v) for v in base_anchor_size]
    self.anchor_stride = [float(v) for v in anchor_stride]
    self.anchor_offset = [float(v) for v in anchor_offset]
    # ratio-major, scale-minor, as the OD API's meshgrid(scales, ratios)
    ratio_grid, scale_grid = np.meshgrid(aspect_ratios, scales, indexing='ij')
    ratio_sqrt = np.sqrt(ratio_grid.reshape(-1))
    scale_flat = scale_grid.reshape(-1)
    self._heights = (scale_flat / ratio_sqrt *
                     self.base_anchor_size[0]).astype(np.float32)
    self._widths = (scale_flat * ratio_sqrt *
                    self.base_anchor_size[1]).astype(np.float32)

  @property
  def num_anchors_per_location(self):
    return len(self.scales) * len(self.aspect_ratios)

  def generate(self, grid_height, grid_width):
    """Anchors [grid_height * grid_width * A, 4] in absolute coordinates.

    grid_height / grid_width may be Python ints or scalar int tensors.
    """
    y_centers = (tf.cast(tf.range(grid_height), tf.float32) *
                 self.anchor_stride[0] + self.anchor_offset[0])
    x_centers = (tf.cast(tf.range(grid_width), tf.float32) *
                 self.anchor_stride[1] + self.anchor_offset[1])
    half_h = tf.constant(self._heights / 2.0)
    half_w = tf.constant(self._widths / 2.0)
    yc = y_centers[:, tf.newaxis, tf.newaxis]  # [H, 1, 1]
    xc = x_centers[tf.newaxis, :, tf.newaxis]  # [1, W, 1]
    zeros = tf.zeros_like(yc) + tf.zeros_like(xc) + tf.zeros_like(half_h)
    anchors = tf.stack([yc - half_h + zeros, xc - half_w + zeros,
                        yc + half_h + zeros, xc + half_w + zeros], axis=-1)
    return tf.reshape(anchors, [-1, 4])


class MultiscaleGridAnchorGenerator:
  """Anchors on every pyramid level; `generate([(h_l, w_l), ...])` -> [sum h*w*A, 4]."""

  def __init__(self, min_level=3, max_level=7, anchor_scale=4.0,
               aspect_ratios=(0.5, 1.0, 2.0), scales_per_octave=2):
    if not 1 <= min_level <= max_level:
      raise ValueError('multiscale_anchor_generator: need 1 <= min_level <= max_level, '
                       'got min_level %d, max_level %d' % (min_level, max_level))
    if scales_per_octave < 1:
      raise ValueError('multiscale_anchor_generator.scales_per_octave must be >= 1, got %d'
                       % scales_per_octave)
    if anchor_scale <= 0:
      raise ValueError('multiscale_anchor_generator.anchor_scale must be positive, got %s'
                       % anchor_scale)
    self.min_level = int(min_level)
    self.max_level = int(max_level)
    self.anchor_scale = float(anchor_scale)
    self.scales_per_octave = int(scales_per_octave)
    self.aspect_ratios = [float(r) for r in aspect_ratios]
    scales = [2.0 ** (float(i) / scales_per_octave) for i in range(scales_per_octave)]
    self.level_generators = []
    for level in range(self.min_level, self.max_level + 1):
      stride = 2.0 ** level
      self.level_generators.append(GridAnchorGenerator(
          scales, self.aspect_ratios, base_anchor_size=(stride * anchor_scale,) * 2,
          anchor_stride=(stride, stride), anchor_offset=(stride / 2.0, stride / 2.0)))

  @property
  def num_levels(self):
    return len(self.level_generators)

  @property
  def num_anchors_per_location(self):
    """Anchors per location, the same on every level."""
    return len(self.aspect_ratios) * self.scales_per_octave

  def generate(self, feature_map_shapes):
    """feature_map_shapes: one (height, width) per level, finest first."""
    if len(feature_map_shapes) != self.num_levels:
      raise ValueError('multiscale_anchor_generator has %d levels (%d..%d) but got %d feature '
                       'maps' % (self.num_levels, self.min_level, self.max_level,
                                 len(feature_map_shapes)))
    return tf.concat([generator.generate(height, width) for generator, (height, width)
                      in zip(self.level_generators, feature_map_shapes)], 0)


def build(anchor_generator_config):
  """AnchorGenerator proto -> GridAnchorGenerator, or MultiscaleGridAnchorGenerator (FPN),
  the kinds the OD API Faster R-CNN uses."""
  which = anchor_generator_config.WhichOneof('anchor_generator_oneof')
  if which == 'multiscale_anchor_generator':
    cfg = anchor_generator_config.multiscale_anchor_generator
    if cfg.normalize_coordinates:
      raise ValueError(
          'model.faster_rcnn.first_stage_anchor_generator.multiscale_anchor_generator.'
          'normalize_coordinates must be false: Faster R-CNN anchors are in pixels (the OD '
          'API fails on true here too)')
    if not cfg.aspect_ratios:
      raise ValueError(
          'model.faster_rcnn.first_stage_anchor_generator.multiscale_anchor_generator.'
          'aspect_ratios is empty: give at least one (e.g. [1.0, 2.0, 0.5])')
    return MultiscaleGridAnchorGenerator(
        cfg.min_level, cfg.max_level, cfg.anchor_scale, list(cfg.aspect_ratios),
        cfg.scales_per_octave)
  if which != 'grid_anchor_generator':
    raise ValueError(
        'model.faster_rcnn.first_stage_anchor_generator must be a '
        'grid_anchor_generator or a multiscale_anchor_generator, got %r' % which)
  cfg = anchor_generator_config.grid_anchor_generator
  return GridAnchorGenerator(
      scales=list(cfg.scales) or (0.5, 1.0, 2.0),
      aspect_ratios=list(cfg.aspect_ratios) or (0.5, 1.0, 2.0),
      base_anchor_size=(cfg.height, cfg.width),
      anchor_stride=(cfg.height_stride, cfg.width_stride),
      anchor_offset=(cfg.height_offset, cfg.width_offset))
