"""Pictures of the demo (mtl_ssl_demo): detections next to the ground truth, and the auxiliary
labels MTL-SSL makes from the boxes. numpy + Pillow; TensorFlow only through the SavedModel and
mtl_ssl.mtl.labels."""
import json
import os

import numpy as np
from PIL import Image
from PIL import ImageDraw

from mtl_ssl.data.scenes import generator
from mtl_ssl.export import inference
from mtl_ssl.mtl import labels
from mtl_ssl.training import training_utils
from mtl_ssl.training import visualization as vis


def _titled(image, title):
  """The image with a black title strip on top."""
  strip = Image.new('RGB', (image.shape[1], 16))
  ImageDraw.Draw(strip).text((4, 2), title, fill=(255, 255, 255))
  return np.concatenate([np.asarray(strip), image], axis=0)


def _grid(rows):
  """Rows of images of one height (each row as wide as the others) -> one image, white gaps."""
  lines = []
  for row in rows:
    gap = np.full((row[0].shape[0], 4, 3), 255, np.uint8)
    cells = [part for cell in row for part in (cell, gap)][:-1]
    lines.append(np.concatenate(cells, axis=1))
  width = max(line.shape[1] for line in lines)
  lines = [np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)), constant_values=255)
           for line in lines]
  return np.concatenate(lines, axis=0)[:-4]


def write_test_images(config, image_dir, count):
  """The first `count` test scenes as JPEG files (the bytes of the test record) + their truth."""
  scenes_generator = generator.SceneGenerator(config)
  os.makedirs(image_dir, exist_ok=True)
  items = []
  for index in range(min(count, config.num_test_images)):
    scene = scenes_generator.make_scene('test', index)
    path = os.path.join(image_dir, f'scenes_test_{index:06d}.jpg')
    with open(path, 'wb') as f:
      f.write(scenes_generator.encode(scene.image))
    items.append((path, scene))
  return items


def detections_picture(saved_model, items, category_index, min_score, png_path, json_path):
  """detections | ground truth for each test image, and the detections as JSON."""
  detector = inference.SavedModelDetector(saved_model)
  rows, records = [], []
  for path, scene in items:
    image, outputs = detector.detect_image_file(path)
    record = inference.detections_record(path, image, outputs, category_index, min_score)
    records.append(record)
    truth = vis.draw_boxes(image, scene.normalized_boxes(), scene.classes + 1,
                           category_index=category_index, max_boxes=100)
    rows.append([_titled(inference.draw_record(image, record, category_index),
                         f'detections (score >= {min_score:g})'),
                 _titled(truth, 'ground truth')])
  Image.fromarray(_grid(rows)).save(png_path)
  with open(json_path, 'w', encoding='utf-8') as f:
    json.dump({'saved_model_dir': saved_model, 'min_score': min_score, 'images': records}, f,
              indent=2)
  return records


def mtl_labels_picture(configs, items, category_index, seed, png_path):
  """What the auxiliary tasks learn from each test image's boxes: ground truth | Task-1 windows
  with their top classes | Task-2 closeness of each box to the other classes | Task-3 foreground
  mask (the labels made by mtl_ssl.mtl.labels)."""
  mtl_config = configs['model'].mtl
  num_classes = training_utils.num_classes(configs['model'])
  rows = []
  for index, (_, scene) in enumerate(items):
    height, width = scene.image.shape[:2]
    made = labels.make_mtl_labels(scene.normalized_boxes(), scene.classes + 1, None, height,
                                  width, num_classes, mtl_config, seed=[seed, index])
    row = [_titled(vis.draw_boxes(scene.image, scene.normalized_boxes(), scene.classes + 1,
                                  category_index=category_index, max_boxes=100), 'ground truth')]
    if 'mtl_windows' in made:
      row.append(_titled(vis.draw_windows(scene.image, made['mtl_windows'].numpy(),
                                          made['mtl_window_labels'].numpy(), category_index),
                         'Task 1: windows, top classes'))
    if 'mtl_closeness_labels' in made:
      row.append(_titled(vis.draw_closeness(scene.image, scene.normalized_boxes(),
                                            scene.classes + 1,
                                            made['mtl_closeness_labels'].numpy(), category_index),
                         'Task 2: closeness to other classes'))
    if 'mtl_foreground_mask' in made:
      row.append(_titled(vis.overlay_mask(scene.image, made['mtl_foreground_mask'].numpy()),
                         'Task 3: foreground mask'))
    rows.append(row)
  Image.fromarray(_grid(rows)).save(png_path)
