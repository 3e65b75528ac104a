"""Built-in scenes: determinism, tight boxes, context rules, disjoint splits, records, preview."""
import collections
import io
import os

import numpy as np
import pytest
from PIL import Image

from mtl_ssl.data import label_map_util
from mtl_ssl.data import tf_example_util
from mtl_ssl.data.scenes import cli
from mtl_ssl.data.scenes import generator as generator_lib
from mtl_ssl.data.scenes import layouts
from mtl_ssl.data.scenes import sources

SMALL = dict(height=96, width=112, num_train_images=5, num_test_images=3, min_objects=2,
             max_objects=5, min_object_size=16, max_object_size=48, objects='subset')


@pytest.fixture(scope='module')
def objects():
  return sources.load_objects('subset')[0]


@pytest.fixture(scope='module')
def backgrounds():
  return sources.load_backgrounds()


def _generator(objects, backgrounds, **overrides):
  options = dict(SMALL, **overrides)
  return generator_lib.SceneGenerator(generator_lib.SceneConfig(**options), objects, backgrounds)


def _record_bytes(out_dir):
  return {split: open(generator_lib.record_path(out_dir, split), 'rb').read()
          for split in generator_lib.SPLITS}


@pytest.mark.parametrize('layout, image_format', [('random', 'jpeg'), ('context', 'png')])
def test_same_seed_same_bytes_other_seed_differs(tmp_path, objects, backgrounds, layout,
                                                 image_format):
  written = []
  for name, seed in (('a', 7), ('b', 7), ('c', 8)):
    generator = _generator(objects, backgrounds, layout=layout, seed=seed,
                           image_format=image_format)
    generator_lib.write_dataset(generator.config, str(tmp_path / name), generator=generator)
    written.append(_record_bytes(str(tmp_path / name)))
  assert written[0] == written[1]
  assert written[0]['train'] != written[2]['train'] and written[0]['test'] != written[2]['test']
  assert written[0]['train'] != written[0]['test']


def test_records_match_scenes_and_label_map(tmp_path, objects, backgrounds):
  generator = _generator(objects, backgrounds, layout='context', num_shards=2)
  info = generator_lib.write_dataset(generator.config, str(tmp_path), generator=generator)
  paths = info['splits']['train']['paths']
  assert paths == [str(tmp_path / f'scenes_train.record-0000{i}-of-00002') for i in range(2)]
  label_map = label_map_util.get_label_map_dict(str(tmp_path / 'scenes_label_map.pbtxt'))
  assert sorted(label_map.values()) == list(range(1, 11)) and label_map['ankle_boot'] == 10
  records = {r['source_id']: r for r in map(tf_example_util.example_to_dict,
                                            tf_example_util.read_examples(paths))}
  assert len(records) == SMALL['num_train_images']
  total_boxes = 0
  for index in range(SMALL['num_train_images']):
    scene = generator.make_scene('train', index)
    record = records[f'scenes_train_{index:06d}']
    assert (record['height'], record['width'], record['format']) == (96, 112, 'jpeg')
    decoded = np.asarray(Image.open(io.BytesIO(record['encoded'])))
    assert decoded.shape == (96, 112, 3)
    assert np.abs(decoded.astype(int) - scene.image.astype(int)).mean() < 6  # JPEG q95
    np.testing.assert_allclose(record['boxes'], scene.boxes / [96, 112, 96, 112], atol=1e-6)
    assert record['labels'].tolist() == (scene.classes + 1).tolist()
    assert record['texts'] == [sources.LABEL_NAMES[c] for c in scene.classes]
    assert record['difficult'].tolist() == [0] * len(scene.classes)
    total_boxes += len(scene.boxes)
  assert info['splits']['train']['boxes'] == total_boxes


@pytest.mark.parametrize('layout', layouts.LAYOUTS)
def test_boxes_are_tight_around_pasted_objects(objects, backgrounds, layout):
  generator = _generator(objects, backgrounds, layout=layout, height=128, width=128,
                         max_object_size=64, max_objects=6)
  counts = []
  for index in range(12):
    scene = generator.make_scene('train', index, keep_layers=True)
    counts.append(len(scene.boxes))
    assert SMALL['min_objects'] - 1 <= len(scene.boxes) <= 6
    union = np.zeros(scene.image.shape[:2], bool)
    for box, mask in zip(scene.boxes, scene.masks):
      ymin, xmin, ymax, xmax = box.tolist()
      assert 0 <= ymin < ymax <= 128 and 0 <= xmin < xmax <= 128
      rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
      assert (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1) == (ymin, xmin, ymax, xmax)
      union |= mask > 0
    changed = np.any(scene.image != scene.background, axis=-1)
    assert not np.any(changed & ~union)  # nothing drawn outside the objects
    assert changed.sum() > 0.5 * union.sum()  # and the objects are visible
  assert np.mean(counts) >= 2


def _column_checks(boxes, classes):
  """Checks the outfit rules from boxes and classes alone; returns (#columns, outfit pairs)."""
  boxes = np.asarray(boxes)
  center_x = (boxes[:, 1] + boxes[:, 3]) / 2.0
  by_class = lambda members: [i for i, c in enumerate(classes) if c in members]
  def below_aligned(upper, lower):
    width = max(boxes[upper, 3] - boxes[upper, 1], boxes[lower, 3] - boxes[lower, 1])
    return (boxes[upper, 2] <= boxes[lower, 0] and
            abs(center_x[upper] - center_x[lower]) <= 0.5 * width)
  trousers, dresses = by_class([layouts.TROUSER]), by_class([layouts.DRESS])
  tops, footwear = by_class(layouts.TOPS), by_class(layouts.FOOTWEAR)
  assert len(tops) == len(trousers)  # every top comes with trousers
  assert len(footwear) == len(trousers) + len(dresses)  # every outfit has footwear
  pairs = []
  for t in tops:
    under = [r for r in trousers if below_aligned(t, r)]
    assert under, f'top {boxes[t]} has no trouser below it'
    shoes = [f for f in footwear if below_aligned(under[0], f)]
    assert shoes, f'trouser {boxes[under[0]]} has no footwear below it'
    pairs.append((classes[t], classes[shoes[0]]))
  for d in dresses:
    shoes = [f for f in footwear if below_aligned(d, f)]
    assert shoes, f'dress {boxes[d]} has no footwear below it'
    pairs.append((classes[d], classes[shoes[0]]))
  for b in by_class([layouts.BAG]):  # beside a column: touches a column's height range
    assert any(boxes[b, 0] < boxes[o, 2] and boxes[o, 0] < boxes[b, 2] and
               (boxes[b, 3] <= boxes[o, 1] or boxes[o, 3] <= boxes[b, 1])
               for o in tops + dresses + trousers)
  return len(tops) + len(dresses), pairs


def test_context_layout_rules_and_co_occurrence(objects, backgrounds):
  generator = _generator(objects, backgrounds, layout='context', height=256, width=256,
                         min_object_size=24, max_object_size=80, max_objects=8)
  pairs = []
  columns = 0
  for index in range(150):
    scene = generator.make_scene('train', index)
    n, scene_pairs = _column_checks(scene.boxes, scene.classes.tolist())
    assert n >= 1 and len(scene.boxes) <= 8
    columns += n
    pairs.extend(scene_pairs)
  assert columns > 150  # several outfits per image on average
  footwear_given = collections.defaultdict(collections.Counter)
  for upper, shoe in pairs:
    footwear_given[upper][shoe] += 1
  coat, tshirt = footwear_given[layouts.COAT], footwear_given[layouts.TSHIRT]
  assert coat[layouts.ANKLE_BOOT] / sum(coat.values()) > 0.7
  assert tshirt[layouts.ANKLE_BOOT] == 0 and tshirt[layouts.SANDAL] > 0


def test_random_layout_has_no_outfit_structure(objects, backgrounds):
  generator = _generator(objects, backgrounds, layout='random', height=192, width=192,
                         max_objects=6)
  classes = collections.Counter()
  for index in range(120):
    classes.update(generator.make_scene('train', index).classes.tolist())
  frequencies = np.asarray([classes[c] for c in range(10)], float) / sum(classes.values())
  assert np.all(frequencies > 0.04)  # uniform classes, not outfits (no trouser/top coupling)
  assert abs(classes[layouts.TROUSER] - classes[layouts.PULLOVER]) < 0.6 * classes[layouts.TROUSER]


def test_train_and_test_use_disjoint_instances(objects, backgrounds):
  generator = _generator(objects, backgrounds, layout='random', max_objects=5)
  used = {}
  for split in generator_lib.SPLITS:
    pool = generator.pools[split]
    items = set()
    for index in range(20):
      scene = generator.make_scene(split, index)
      items.update(pool.images[i].tobytes() for i in scene.instances)
      assert all(pool.labels[i] == c for i, c in zip(scene.instances, scene.classes))
    used[split] = items
  assert len(used['train']) > 20 and len(used['test']) > 20
  assert not used['train'] & used['test']


def test_preview_and_dataset_from_cli(tmp_path, capsys):
  preview = str(tmp_path / 'preview.png')
  out = str(tmp_path / 'data')
  code = cli.run(['--preview', preview, '--preview_count', '4', '--output_dir', out,
                  '--image_size', '96', '--max_object_size', '48', '--min_object_size', '16',
                  '--num_train_images', '3', '--num_test_images', '2', '--objects', 'subset',
                  '--layout', 'random', '--no_progress'])
  assert code == 0
  picture = Image.open(preview)
  assert picture.format == 'PNG' and picture.width > 2 * 96 and picture.height > 96
  assert sorted(os.listdir(out)) == ['scenes_info.json', 'scenes_label_map.pbtxt',
                                     'scenes_test.record', 'scenes_train.record']
  assert 'train: 3 images' in capsys.readouterr().out
  assert cli.run(['--preview', preview, '--min_objects', '5', '--max_objects', '2']) == 2
  assert 'min_objects' in capsys.readouterr().err


def test_invalid_options_are_named():
  with pytest.raises(ValueError, match='context layout needs min_objects >= 2'):
    generator_lib.SceneConfig(layout='context', min_objects=1).validate()
  with pytest.raises(ValueError, match='max_object_size must fit'):
    generator_lib.SceneConfig(height=64, width=64, max_object_size=96).validate()
  with pytest.raises(ValueError, match='layout must be one of'):
    generator_lib.SceneConfig(layout='grid').validate()


def test_subset_asset_matches_full_set_when_installed():
  subset = sources.load_subset()
  for split in generator_lib.SPLITS:
    images, labels = subset[split]
    assert images.shape[1:] == (28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).min() >= 100
  directory = sources.find_full_dataset_dir()
  if directory is None:
    pytest.skip('full Fashion-MNIST not installed')
  full = sources.load_full(directory)
  with np.load(sources.SUBSET_PATH) as data:
    for split in generator_lib.SPLITS:
      index = data[f'{split}_source_index']
      np.testing.assert_array_equal(full[split][0][index], data[f'{split}_images'])
      np.testing.assert_array_equal(full[split][1][index], data[f'{split}_labels'])
