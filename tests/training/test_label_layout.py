"""Tags of boxes, windows and closeness labels: inside the picture, never over each other."""
import itertools

import numpy as np
import pytest

from mtl_ssl.cli import demo_pictures
from mtl_ssl.config import config_util
from mtl_ssl.data.scenes import generator
from mtl_ssl.training import label_layout
from mtl_ssl.training import visualization as vis

NAMES = {k: {'id': k, 'name': name} for k, name in enumerate(
    ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag',
     'Ankle boot'], start=1)}


def _overlap(a, b):
  return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _assert_legible(tags, width, height):
  for x0, y0, x1, y1, _ in tags:
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (x0, y0, x1, y1)
  for a, b in itertools.combinations(tags, 2):
    assert not _overlap(a, b), (a, b)


def test_layout_prefers_above_the_box_then_moves_aside():
  layout = label_layout.LabelLayout(100, 80)
  assert layout.place((30, 10, 60, 50), 20, 10) == (10, 20)  # above, left-aligned
  assert layout.place((30, 10, 60, 50), 20, 10) == (10, 30)  # same box: inside its top
  assert layout.place((30, 10, 60, 50), 20, 10) == (10, 60)  # then below
  assert layout.place((0, 90, 5, 99), 30, 10) == (70, 0)  # moved into the picture
  assert layout.place((0, 0, 10, 10), 200, 10) is None  # wider than the picture


def test_layout_fills_the_picture_without_overlap_then_gives_up():
  layout = label_layout.LabelLayout(40, 20)
  spots = [layout.place((5, 0, 15, 10), 20, 10) for _ in range(5)]
  # at the box's left edge (x 0) above / inside, then the nearest free spots on the right
  assert spots == [(0, 0), (0, 10), (20, 0), (20, 10), None]  # 4 tags fill a 40x20 picture


@pytest.mark.parametrize('seed', range(3))
def test_crowded_detections_keep_every_tag_visible(seed):
  rng = np.random.default_rng(seed)
  centre = rng.uniform(0.3, 0.7, (12, 2))
  boxes = np.concatenate([centre - 0.1, centre + 0.1], 1)[:, [0, 1, 2, 3]]
  image = np.zeros((256, 256, 3), np.uint8)
  tags = []
  vis.draw_boxes(image, boxes, classes=rng.integers(1, 11, 12), scores=rng.uniform(0.3, 1, 12),
                 category_index=NAMES, tags_out=tags)
  assert len(tags) == 12  # none hidden: there is room for all of them
  _assert_legible(tags, 256, 256)


def test_window_tags_are_shortened_to_fit_and_do_not_overlap():
  windows = [[0.0, 0.5, 1.0, 1.0]] * 6  # same window six times, at the right edge
  label = np.zeros(11)
  label[[2, 10]] = [0.6, 0.4]
  for side, fits in ((128, 6), (64, 4)):  # a 64 px picture has room for 4 rows of tags
    tags = []
    vis.draw_windows(np.zeros((side, side, 3), np.uint8), windows, [label] * 6, NAMES,
                     tags_out=tags)
    assert len(tags) == fits
    _assert_legible(tags, side, side)
    assert all(text.endswith('..') and text.startswith('Trouser') for *_, text in tags)


def test_closeness_tags_name_the_nearest_other_classes():
  label = [0.0, 0.25, 0.0, 0.75]  # background, class 1, 2, 3
  assert vis.closeness_text(label, NAMES) == 'near: Pullover 0.75 T-shirt/top 0.25'
  assert vis.closeness_text([1.0, 0.0, 0.0], NAMES) == 'no other class'
  image = np.zeros((100, 100, 3), np.uint8)
  boxes = [[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.9, 0.9]]
  tags = []
  out = vis.draw_closeness(image, boxes, [1, 2], [[0, 0, 1.0], [0, 1.0, 0]], NAMES,
                           tags_out=tags)
  assert [t[-1] for t in tags] == ['near: Trouser 1.00', 'near: T-shirt/top 1.00']
  # the line from the first box's centre (20, 20) towards the second's (75, 75)
  assert (out[50, 50] != 0).any()


def test_mtl_labels_picture_has_a_task_2_panel(tmp_path):
  config = generator.SceneConfig(num_train_images=1, num_test_images=2, objects='subset')
  items = demo_pictures.write_test_images(config, str(tmp_path / 'images'), 2)
  configs = config_util.get_configs_from_pipeline_file(
      demo_pictures_config(), 'model { mtl { num_windows: 8 } }')
  png = str(tmp_path / 'labels.png')
  demo_pictures.mtl_labels_picture(configs, items, NAMES, 0, png)
  from PIL import Image  # pylint: disable=import-outside-toplevel
  assert Image.open(png).size == (4 * 256 + 12, 2 * (256 + 16) + 4)


def demo_pictures_config():
  from mtl_ssl.cli import demo  # pylint: disable=import-outside-toplevel
  return demo.shipped_config(demo.MAIN_CONFIG)
