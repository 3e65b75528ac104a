"""Anchors against each image's TRUE extent (the original's unpadded batch-1 behaviour), whatever
zero padding the batch adds: ignored in RPN training when not fully inside, clipped at inference."""
import numpy as np
import tensorflow as tf

from mtl_ssl.core import anchor_generator
from mtl_ssl.meta_arch import rpn


def _anchors():
  # 4 x 4 cells of stride 16 (a 64 x 64 padded image), one 32 x 32 anchor per cell
  generator = anchor_generator.GridAnchorGenerator(scales=[1.0], aspect_ratios=[1.0],
                                                   base_anchor_size=(32, 32),
                                                   anchor_stride=(16, 16), anchor_offset=(16, 16))
  return generator.generate(4, 4)


def test_training_ignores_anchors_outside_the_true_image_even_inside_the_padding():
  anchors = _anchors().numpy()
  true_shapes = tf.constant([[64, 64, 3], [40, 64, 3]])  # image 2: rows 40..63 are padding
  per_image, valid = rpn.anchor_validity(tf.constant(anchors), true_shapes, is_training=True,
                                         clip_anchors_to_image=False)
  assert per_image.shape == (2, 16, 4) and valid.shape == (2, 16)
  for b, (h, w, _) in enumerate(true_shapes.numpy()):
    expected = ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= h) &
                (anchors[:, 3] <= w))
    np.testing.assert_array_equal(valid[b].numpy(), expected)
    np.testing.assert_allclose(per_image[b].numpy(), anchors)  # unchanged in training
  # the anchor centred at (48, 16) spans rows 32..64: inside the padded 64 x 64 image, but it
  # crosses the true border of image 2 (40 rows) so it is ignored there
  index = 2 * 4 + 0
  np.testing.assert_allclose(anchors[index], [32, 0, 64, 32])
  assert valid[0, index] and not valid[1, index]


def test_inference_clips_anchors_to_each_true_image():
  anchors = _anchors()
  true_shapes = tf.constant([[64, 64, 3], [40, 50, 3]])
  clipped, valid = rpn.anchor_validity(anchors, true_shapes, is_training=False,
                                       clip_anchors_to_image=False)
  boxes = clipped.numpy()
  assert boxes[1, :, 2].max() == 40 and boxes[1, :, 3].max() == 50
  assert boxes[0, :, 2].max() == 64
  np.testing.assert_array_equal(valid.numpy(), (boxes[..., 2] > boxes[..., 0]) &
                                (boxes[..., 3] > boxes[..., 1]))


def test_clip_anchors_to_image_clips_in_training_too():
  clipped, valid = rpn.anchor_validity(_anchors(), tf.constant([[40, 40, 3]]), is_training=True,
                                       clip_anchors_to_image=True)
  boxes = clipped.numpy()[0]
  assert boxes[:, 2:].max() == 40
  # clipped, not pruned: an anchor crossing the border stays valid; one wholly outside has no area
  crossing = 1 * 4 + 2  # centre (32, 48): spans 16..48 in both axes
  np.testing.assert_allclose(boxes[crossing], [16, 32, 40, 40])
  assert valid[0, crossing] and not valid[0, 15]
