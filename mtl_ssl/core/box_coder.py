"""Faster R-CNN box coder (OD API FasterRcnnBoxCoder semantics).

Encodes a box relative to an anchor as
  [ty, tx, th, tw] = [dy / ha * s0, dx / wa * s1, log(h / ha) * s2, log(w / wa) * s3]
with dy, dx the centre offsets and EPSILON added to the sizes before dividing,
exactly as the OD API. Decoding inverts it; th and tw are capped at
log(1000 / 16) after dividing by the scale factors so an untrained network
cannot produce inf boxes (the OD API has no cap; no loss depends on it since
losses compare encodings).
"""
import math

import tensorflow as tf

EPSILON = 1e-8
_MAX_LOG_SCALE = math.log(1000.0 / 16.0)


def _center_size(boxes):
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  height = ymax - ymin
  width = xmax - xmin
  return ymin + 0.5 * height, xmin + 0.5 * width, height, width


class FasterRcnnBoxCoder:
  """Box coder with scale factors; code_size 4."""

  code_size = 4

  def __init__(self, scale_factors=(10.0, 10.0, 5.0, 5.0)):
    if scale_factors is not None:
      scale_factors = tuple(float(s) for s in scale_factors)
      if len(scale_factors) != 4 or any(s <= 0 for s in scale_factors):
        raise ValueError(
            'box coder scale_factors must be 4 positive numbers, got %r' %
            (scale_factors,))
    self.scale_factors = scale_factors

  def encode(self, boxes, anchors):
    """boxes and anchors [..., 4] (broadcastable) -> encodings [..., 4]."""
    ycenter, xcenter, h, w = _center_size(boxes)
    ycenter_a, xcenter_a, ha, wa = _center_size(anchors)
    ha += EPSILON
    wa += EPSILON
    h += EPSILON
    w += EPSILON
    ty = (ycenter - ycenter_a) / ha
    tx = (xcenter - xcenter_a) / wa
    th = tf.math.log(h / ha)
    tw = tf.math.log(w / wa)
    if self.scale_factors:
      ty *= self.scale_factors[0]
      tx *= self.scale_factors[1]
      th *= self.scale_factors[2]
      tw *= self.scale_factors[3]
    return tf.stack([ty, tx, th, tw], axis=-1)

  def decode(self, rel_codes, anchors):
    """rel_codes and anchors [..., 4] (broadcastable) -> boxes [..., 4]."""
    ycenter_a, xcenter_a, ha, wa = _center_size(anchors)
    ty, tx, th, tw = tf.unstack(rel_codes, axis=-1)
    if self.scale_factors:
      ty /= self.scale_factors[0]
      tx /= self.scale_factors[1]
      th /= self.scale_factors[2]
      tw /= self.scale_factors[3]
    th = tf.minimum(th, _MAX_LOG_SCALE)
    tw = tf.minimum(tw, _MAX_LOG_SCALE)
    w = tf.exp(tw) * wa
    h = tf.exp(th) * ha
    ycenter = ty * ha + ycenter_a
    xcenter = tx * wa + xcenter_a
    return tf.stack([ycenter - h / 2., xcenter - w / 2.,
                     ycenter + h / 2., xcenter + w / 2.], axis=-1)
