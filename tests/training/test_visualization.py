"""Pictures: boxes land where the coordinates say, masks blend exactly, filters apply."""
import numpy as np

from mtl_ssl.training import visualization as vis

CATEGORY_INDEX = {1: {'id': 1, 'name': 'cat'}, 2: {'id': 2, 'name': 'dog'}}


def test_box_outline_is_drawn_at_the_normalized_coordinates():
  image = np.zeros((100, 200, 3), np.uint8)
  out = vis.draw_boxes(image, [[0.5, 0.25, 0.9, 0.75]], classes=[2], scores=[0.9],
                       category_index=CATEGORY_INDEX, line_width=1)
  color = np.array(vis.class_color(2))
  # left edge x = 50, bottom edge y = 90; rows 50..90 and cols 50..150
  assert (out[70, 50] == color).all() and (out[90, 100] == color).all()
  assert (out[70, 150] == color).all()
  assert (out[70, 100] == 0).all()  # inside stays untouched
  assert (out[20, 20] == 0).all()
  assert (image == 0).all()  # input not modified


def test_min_score_and_max_boxes_filter():
  image = np.zeros((64, 64, 3), np.uint8)
  boxes = [[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.9, 0.9]]
  out = vis.draw_boxes(image, boxes, classes=[1, 1], scores=[0.2, 0.8], min_score=0.5)
  assert (out[int(0.2 * 64), int(0.1 * 64)] == 0).all()  # low score box skipped
  assert (out[int(0.75 * 64), int(0.9 * 64)] != 0).any()
  only_one = vis.draw_boxes(image, boxes, classes=[1, 1], scores=[0.6, 0.8], max_boxes=1)
  assert (only_one[int(0.2 * 64), int(0.1 * 64)] == 0).all()  # the lower-scored one dropped


def test_overlay_mask_blends_exactly_per_cell():
  image = np.full((8, 4, 3), 100, np.uint8)
  mask = np.array([[1.0, 0.0], [0.0, 0.5]])
  out = vis.overlay_mask(image, mask, color=(200, 0, 0), alpha=0.5)
  # top-left cell (rows 0-3, cols 0-1) full mask: 0.5*100 + 0.5*color
  np.testing.assert_array_equal(out[0, 0], [150, 50, 50])
  np.testing.assert_array_equal(out[0, 3], [100, 100, 100])
  # bottom-right cell mask 0.5: weight 0.25
  np.testing.assert_array_equal(out[7, 3], [125, 75, 75])


def test_windows_text_lists_top_classes():
  label = [0.3, 0.62, 0.08]
  assert vis.top_classes_text(label, CATEGORY_INDEX) == 'cat 0.62 bg 0.30'
  image = np.zeros((64, 64, 3), np.uint8)
  out = vis.draw_windows(image, [[0.0, 0.0, 1.0, 1.0]], [label], CATEGORY_INDEX)
  assert (out[40, 0] == vis.class_color(1)).all()


def test_side_by_side_and_crop():
  left = np.ones((10, 5, 3), np.uint8)
  right = np.ones((6, 7, 3), np.uint8) * 2
  both = vis.side_by_side(left, right)
  assert both.shape == (10, 12, 3)
  assert both[8, 6, 0] == 0 and both[2, 6, 0] == 2
  assert vis.crop_to_true_shape(np.zeros((10, 10, 3)), [6, 4, 3]).shape == (6, 4, 3)
  assert vis.same_size_batch([left, right]).shape == (2, 10, 7, 3)


def test_upscale_small_keeps_normalized_geometry():
  image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
  big = vis.upscale_small(image, min_side=10)
  assert big.shape == (8, 12, 3)  # factor ceil(10 / 3) = 4
  np.testing.assert_array_equal(big[7, 11], image[1, 2])
  large = np.zeros((300, 20, 3), np.uint8)
  assert vis.upscale_small(large, min_side=256) is large
