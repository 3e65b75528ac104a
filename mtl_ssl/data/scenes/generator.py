"""Seeded generator of the built-in "scenes" detection data (OD API TFRecords + label map).

Every image is made from its own random generator seeded by (seed, split, layout, index), so the
output is the same bytes for the same options, and image i does not depend on how many images are
made. Train and test scenes draw their objects from disjoint Fashion-MNIST instances.
"""
import dataclasses
import io
import json
import os
import time

import numpy as np
from PIL import Image

from mtl_ssl.data import label_map_util
from mtl_ssl.data.scenes import layouts
from mtl_ssl.data.scenes import render
from mtl_ssl.data.scenes import sources

SPLITS = ('train', 'test')
FORMATS = ('jpeg', 'png')
LABEL_MAP_NAME = 'scenes_label_map.pbtxt'
INFO_NAME = 'scenes_info.json'


@dataclasses.dataclass
class SceneConfig:
  """Options of a scenes dataset (the command line flags of mtl_ssl_make_scenes)."""
  height: int = 256
  width: int = 256
  num_train_images: int = 512
  num_test_images: int = 128
  min_objects: int = 2
  max_objects: int = 6
  min_object_size: int = 24  # side in px of the scaled 28x28 item canvas
  max_object_size: int = 96
  layout: str = 'context'
  seed: int = 0
  image_format: str = 'jpeg'
  jpeg_quality: int = 95
  num_shards: int = 1
  objects: str = 'auto'  # auto | subset | full (see sources.load_objects)

  def validate(self):
    """Raises ValueError naming the bad option."""
    checks = [
        (self.height >= 32 and self.width >= 32, 'height and width must be >= 32'),
        (self.num_train_images >= 0 and self.num_test_images >= 0, 'image counts must be >= 0'),
        (1 <= self.min_objects <= self.max_objects, 'need 1 <= min_objects <= max_objects'),
        (self.layout != 'context' or self.min_objects >= 2,
         'the context layout needs min_objects >= 2 (an outfit has at least 2 objects)'),
        (8 <= self.min_object_size <= self.max_object_size,
         'need 8 <= min_object_size <= max_object_size'),
        (self.max_object_size <= min(self.height, self.width),
         'max_object_size must fit in the image'),
        (self.layout in layouts.LAYOUTS, f'layout must be one of {layouts.LAYOUTS}'),
        (self.image_format in FORMATS, f'image_format must be one of {FORMATS}'),
        (1 <= self.jpeg_quality <= 100, 'jpeg_quality must be in 1..100'),
        (self.num_shards >= 1, 'num_shards must be >= 1'),
        (self.objects in ('auto', 'subset', 'full'), 'objects must be auto, subset or full'),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(f'scenes option: {message} (got {dataclasses.asdict(self)})')
    return self


@dataclasses.dataclass
class Scene:
  """One generated image with its objects (pixel boxes ymin, xmin, ymax, xmax; max exclusive)."""
  image: np.ndarray  # uint8 [H, W, 3]
  boxes: np.ndarray  # int32 [N, 4]
  classes: np.ndarray  # int32 [N], 0-based Fashion-MNIST class (label id = class + 1)
  instances: np.ndarray  # int32 [N], item index in the split's object pool
  groups: np.ndarray  # int32 [N], person column of the context layout, -1 otherwise
  roles: list  # per object: 'top', 'trouser', 'dress', 'footwear', 'bag' or ''
  background: np.ndarray = None  # uint8 [H, W, 3], only with keep_layers
  masks: list = None  # per object float32 [H, W] alpha in the full image, only with keep_layers

  def normalized_boxes(self):
    h, w = self.image.shape[:2]
    return self.boxes.astype(np.float64) / np.asarray([h, w, h, w], np.float64)


class SceneGenerator:
  """Holds the object pools and background photos; makes scenes by (split, index)."""

  def __init__(self, config, objects=None, backgrounds=None):
    self.config = config.validate()
    if objects is None:
      objects, self.objects_kind, self.objects_path = sources.load_objects(config.objects)
    else:
      self.objects_kind, self.objects_path = 'given', None
    self.pools = {split: layouts.ObjectPool(*objects[split]) for split in SPLITS}
    self.backgrounds = backgrounds if backgrounds is not None else sources.load_backgrounds()

  def rng_for(self, split, index):
    layout_code = layouts.LAYOUTS.index(self.config.layout)
    return np.random.default_rng([self.config.seed, SPLITS.index(split), layout_code, index])

  def make_scene(self, split, index, keep_layers=False):
    c = self.config
    rng = self.rng_for(split, index)
    canvas = render.random_background(self.backgrounds, c.height, c.width, rng)
    background = render.to_uint8(canvas) if keep_layers else None
    num_objects = int(rng.integers(c.min_objects, c.max_objects + 1))
    placements = layouts.make_layout(c.layout, rng, self.pools[split], c.height, c.width,
                                     num_objects, c.min_object_size, c.max_object_size)
    boxes, masks = [], []
    for p in placements:
      boxes.append(render.paste(canvas, p.patch, p.top, p.left))
      if keep_layers:
        mask = np.zeros((c.height, c.width), np.float32)
        mask[p.top:p.top + p.patch.height, p.left:p.left + p.patch.width] = p.patch.alpha
        masks.append(mask)
    return Scene(
        image=render.to_uint8(canvas),
        boxes=np.asarray(boxes, np.int32).reshape(-1, 4),
        classes=np.asarray([p.class_id for p in placements], np.int32),
        instances=np.asarray([p.instance for p in placements], np.int32),
        groups=np.asarray([p.group for p in placements], np.int32),
        roles=[p.role for p in placements],
        background=background,
        masks=masks if keep_layers else None)

  def encode(self, image):
    buffer = io.BytesIO()
    if self.config.image_format == 'png':
      Image.fromarray(image).save(buffer, format='PNG', compress_level=6)
    else:
      Image.fromarray(image).save(buffer, format='JPEG', quality=self.config.jpeg_quality)
    return buffer.getvalue()

  def make_example(self, split, index):
    """(tf.train.Example, Scene) for one image, with the OD API keys."""
    from mtl_ssl.data import tf_example_util  # pylint: disable=g-import-not-at-top
    scene = self.make_scene(split, index)
    c = self.config
    name = f'scenes_{split}_{index:06d}'
    example = tf_example_util.make_tf_example(
        self.encode(scene.image), c.image_format, c.height, c.width,
        f'{name}.{"png" if c.image_format == "png" else "jpg"}', name,
        scene.normalized_boxes(), (scene.classes + 1).tolist(),
        [sources.LABEL_NAMES[k] for k in scene.classes],
        difficult=[0] * len(scene.classes), is_crowd=[0] * len(scene.classes),
        area=[(b[2] - b[0]) * (b[3] - b[1]) for b in scene.boxes.tolist()])
    return example, scene


def label_map_entries():
  return [(i + 1, sources.LABEL_NAMES[i], sources.CLASS_NAMES[i])
          for i in range(sources.NUM_CLASSES)]


def record_path(output_dir, split):
  return os.path.join(output_dir, f'scenes_{split}.record')


def write_dataset(config, output_dir, show_progress=False, generator=None):
  """Writes scenes_{train,test}.record (maybe sharded), the label map and an info json."""
  from mtl_ssl.data import tf_example_util  # pylint: disable=g-import-not-at-top
  generator = generator or SceneGenerator(config)
  os.makedirs(output_dir, exist_ok=True)
  start = time.time()
  info = {'config': dataclasses.asdict(config), 'objects': generator.objects_kind,
          'objects_path': generator.objects_path,
          'splits': {}}
  for split in SPLITS:
    count = config.num_train_images if split == 'train' else config.num_test_images
    boxes = 0
    with tf_example_util.ShardedTFRecordWriter(record_path(output_dir, split),
                                               config.num_shards) as writer:
      indices = range(count)
      if show_progress:
        from tqdm import tqdm  # pylint: disable=g-import-not-at-top
        indices = tqdm(indices, desc=f'scenes {split}', unit='img')
      for index in indices:
        example, scene = generator.make_example(split, index)
        writer.write(example)
        boxes += len(scene.boxes)
    info['splits'][split] = {'images': count, 'boxes': boxes, 'paths': writer.paths}
  label_map_util.write_labelmap(os.path.join(output_dir, LABEL_MAP_NAME), label_map_entries())
  info['label_map_path'] = os.path.join(output_dir, LABEL_MAP_NAME)
  info['seconds'] = round(time.time() - start, 2)
  with open(os.path.join(output_dir, INFO_NAME), 'w', encoding='utf-8') as f:
    json.dump(info, f, indent=2, sort_keys=True)
  return info
