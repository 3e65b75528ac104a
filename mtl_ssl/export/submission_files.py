"""Result files of the PASCAL VOC and COCO evaluation servers, from a detector's outputs.

A detector returns boxes [ymin, xmin, ymax, xmax] normalized by the original image size. The
converters (mtl_ssl/data/converters, as the OD API's) store a ground-truth box as its annotation
coordinates divided by the image size, so multiplying back gives the annotation's own frame:

- PASCAL: the devkit's 1-based XML coordinates (xmin / width, no -1 when converting), so the
  devkit coordinate of a detection is box * size, no +1: a ground-truth box written back gives
  its XML integers.
- COCO: the 0-based [x, y, w, h] of the annotations (x / width, (x + w) / width), so
  x = xmin * width and w = xmax * width - x.

Coordinates are rounded to 2 decimals (COCO asks for a tenth of a pixel at most, to keep the
JSON small): this also absorbs the float32 error of the normalized boxes, so the round trip is
exact for annotations with up to 2 decimals. Files are written under a '.partial' name and
renamed when complete, so an interrupted run leaves no file that looks like a submission.
"""
import collections
import json
import os
import re
import tarfile
import zipfile

import numpy as np

COORDINATE_DECIMALS = 2
SCORE_DECIMALS = 6
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')
VOC_COMPETITIONS = ('comp3', 'comp4')  # comp3: trained on VOC data only; comp4: any data
VOC_IMAGE_SETS = ('train', 'val', 'trainval', 'test')
COCO_SPLITS = ('test-dev2017', 'val2017')
COCO_MAX_DETECTIONS = 100  # the COCO server's limit per image
_SAFE_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]*')
_PARTIAL = '.partial'


def select_detections(outputs, min_score=0.0, max_detections=None, class_ids=None):
  """The detections to submit of one image, best first.

  outputs: the detector's outputs of one image (detection_boxes [K,4] normalized,
  detection_scores [K], detection_classes [K] label-map ids, num_detections).
  Drops classes not in `class_ids` (e.g. the unused ids 12, 26, ... of the COCO label map),
  then scores below min_score, then keeps the max_detections best (None: all).
  Returns (boxes [N,4] clipped to [0, 1], scores [N], classes [N] int, Counter of dropped
  class ids).
  """
  count = int(outputs['num_detections'])
  boxes = np.clip(np.asarray(outputs['detection_boxes'][:count], np.float64), 0.0, 1.0)
  scores = np.asarray(outputs['detection_scores'][:count], np.float64)
  classes = np.rint(np.asarray(outputs['detection_classes'][:count])).astype(np.int64)
  known = (np.isin(classes, sorted(class_ids)) if class_ids is not None
           else np.ones(count, bool))
  dropped = collections.Counter(int(c) for c in classes[~known])
  keep = np.flatnonzero(known & (scores >= min_score))
  keep = keep[np.argsort(-scores[keep], kind='stable')]
  if max_detections is not None:
    keep = keep[:max_detections]
  return boxes[keep].reshape(-1, 4), scores[keep], classes[keep], dropped


def pixel_corners(boxes, height, width):
  """[N,4] normalized [ymin, xmin, ymax, xmax] -> [N,4] (xmin, ymin, xmax, ymax) in pixels of
  the original image, rounded to COORDINATE_DECIMALS."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  scale = np.array([width, height, width, height], np.float64)
  return np.round(boxes[:, [1, 0, 3, 2]] * scale, COORDINATE_DECIMALS)


def voc_line(image_name, score, corners):
  """'<image id> <score> <xmin> <ymin> <xmax> <ymax>' of the devkit's detection files."""
  xmin, ymin, xmax, ymax = corners
  return (f'{image_name} {score:.{SCORE_DECIMALS}f} {xmin:.{COORDINATE_DECIMALS}f} '
          f'{ymin:.{COORDINATE_DECIMALS}f} {xmax:.{COORDINATE_DECIMALS}f} '
          f'{ymax:.{COORDINATE_DECIMALS}f}')


def coco_entry(image_id, class_id, score, corners):
  """One COCO result: {'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}."""
  xmin, ymin, xmax, ymax = (float(v) for v in corners)
  return {'image_id': int(image_id), 'category_id': int(class_id),
          'bbox': [xmin, ymin, round(xmax - xmin, COORDINATE_DECIMALS),
                   round(ymax - ymin, COORDINATE_DECIMALS)],
          'score': round(float(score), SCORE_DECIMALS)}


def check_voc_class_names(class_names, label_map_path):
  """class_names: {id: name}. The names become file names: ValueError naming the label map
  when one cannot. Returns the names the VOC server does not know (a warning, not an error:
  other data sets use the same file layout)."""
  for class_id, name in sorted(class_names.items()):
    if not _SAFE_NAME.fullmatch(name):
      raise ValueError(f'label map {label_map_path}: class name {name!r} (id {class_id}) cannot be '
                       'part of a file name comp4_det_test_<class>.txt (letters, digits, '
                       '"_", ".", "+", "-" only)')
  return sorted(set(class_names.values()) - set(VOC_CLASSES))


def voc_file_name(competition, image_set, class_name):
  return f'{competition}_det_{image_set}_{class_name}.txt'


class _PartialFiles:
  """Files written under '<path>.partial', renamed to their names by close() and removed when
  the writer is left by an exception."""

  def __init__(self, paths):
    self.paths = list(paths)
    self._files = {}

  def _open(self):
    for path in self.paths:
      os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
      # pylint: disable-next=consider-using-with  (closed by _finish)
      self._files[path] = open(path + _PARTIAL, 'w', encoding='utf-8')

  def _finish(self, keep):
    for path, f in self._files.items():
      f.close()
      if keep:
        os.replace(path + _PARTIAL, path)
      elif os.path.exists(path + _PARTIAL):
        os.remove(path + _PARTIAL)
    self._files = {}

  def close(self):
    self._finish(keep=True)
    return self.paths

  def __enter__(self):
    self._open()
    return self

  def __exit__(self, exc_type, exc, traceback):
    if self._files:
      if exc_type is None:
        self.close()
      else:
        self._finish(keep=False)
    return False


class VocResultsWriter(_PartialFiles):
  """results/<year>/Main/<competition>_det_<image_set>_<class>.txt, one file per class of the
  label map (empty when the class has no detection, as the server expects all of them)."""

  def __init__(self, output_dir, class_names, competition='comp4', image_set='test',
               year='VOC2012'):
    if competition not in VOC_COMPETITIONS:
      raise ValueError(f'--voc_competition must be one of {VOC_COMPETITIONS}, got {competition!r}')
    if image_set not in VOC_IMAGE_SETS:
      raise ValueError(f'--voc_image_set must be one of {VOC_IMAGE_SETS}, got {image_set!r}')
    if not re.fullmatch(r'VOC\d{4}', year):
      raise ValueError(f'--voc_year must look like VOC2012, got {year!r}')
    self.main_dir = os.path.join(output_dir, 'results', year, 'Main')
    self._path_of = {class_id: os.path.join(self.main_dir,
                                            voc_file_name(competition, image_set, name))
                     for class_id, name in sorted(class_names.items())}
    super().__init__(self._path_of.values())
    self.num_detections = 0

  def add(self, image_name, height, width, boxes, scores, classes):
    """Detections of one image (normalized boxes, label-map class ids)."""
    for corners, score, class_id in zip(pixel_corners(boxes, height, width), scores, classes):
      self._files[self._path_of[int(class_id)]].write(voc_line(image_name, score, corners) + '\n')
      self.num_detections += 1


def coco_results_name(split, alg_name):
  """detections_<split>_<alg>_results.json, the name the COCO server requires."""
  if split not in COCO_SPLITS:
    raise ValueError(f'--coco_split must be one of {COCO_SPLITS}, got {split!r}')
  if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9-]*', alg_name or ''):
    raise ValueError(f'--alg_name {alg_name!r}: letters, digits and "-" only (the server splits '
                     'the file name at "_")')
  return f'detections_{split}_{alg_name}_results.json'


class CocoResultsWriter(_PartialFiles):
  """A JSON list of COCO results, written one image at a time (test-dev has 20k images)."""

  def __init__(self, path):
    super().__init__([path])
    self.path = path
    self.num_detections = 0

  def add(self, image_id, height, width, boxes, scores, classes):
    f = self._files[self.path]
    for corners, score, class_id in zip(pixel_corners(boxes, height, width), scores, classes):
      f.write(('[\n' if self.num_detections == 0 else ',\n') +
              json.dumps(coco_entry(image_id, class_id, score, corners)))
      self.num_detections += 1

  def close(self):
    self._files[self.path].write('[]\n' if self.num_detections == 0 else '\n]\n')
    return super().close()


class CocoImageIds:
  """The integer COCO image id of each input image.

  With an image-info JSON (image_info_test-dev2017.json, or an instances_*.json): the id of the
  image's file_name; the JSON also selects the images to run and gives their size. Without: the
  TFRecord's image/source_id when it is an integer (what create_coco_tf_record writes), else the
  last digits of the file name (000000000139.jpg -> 139, COCO_val2014_000000000042.jpg -> 42).
  """

  def __init__(self, image_info_path=None):
    self.path = image_info_path
    self.images = None
    if image_info_path:
      self.images = _read_image_info(image_info_path)

  def file_names(self):
    return list(self.images) if self.images is not None else None

  def image_id(self, ref):
    if self.images is not None:
      return self.images[ref.file_name]['id']
    if ref.source_id.isdigit():
      return int(ref.source_id)
    match = re.search(r'(\d+)$', ref.name)
    if not match:
      name = ref.file_name or ref.name
      raise ValueError(f'{ref.where}: no COCO image id (the file name {name!r} '
                       'does not end in digits and image/source_id is not an integer); give '
                       '--coco_image_info (image_info_test-dev2017.json)')
    return int(match.group(1))

  def check_size(self, ref, height, width):
    """Boxes are in the pixels the server knows: the image must have the JSON's size."""
    if self.images is None:
      return
    info = self.images[ref.file_name]
    if (info.get('height'), info.get('width')) not in ((None, None), (height, width)):
      raise ValueError(f'{ref.where} is {height}x{width} pixels but {self.path} says '
                       f'{info.get("height")}x{info.get("width")} for {ref.file_name}: '
                       'not the same image')


def _read_image_info(path):
  """{file_name: image entry} of a COCO image-info JSON, with a clear error when malformed."""
  try:
    with open(path, 'r', encoding='utf-8') as f:
      data = json.load(f)
  except OSError as error:
    raise ValueError(
        f'--coco_image_info {path}: cannot read ({error.strerror or error})') from error
  except json.JSONDecodeError as error:
    raise ValueError(f'--coco_image_info {path}: not JSON ({error})') from error
  images = data.get('images') if isinstance(data, dict) else None
  if not images:
    raise ValueError(f'--coco_image_info {path}: no "images" list')
  by_name = {}
  for index, image in enumerate(images):
    if not isinstance(image, dict) or not isinstance(image.get('id'), int) or \
        not isinstance(image.get('file_name'), str):
      raise ValueError(f'--coco_image_info {path}: images[{index}] needs an integer "id" and a '
                       '"file_name"')
    by_name[os.path.basename(image['file_name'])] = image
  return by_name


def write_voc_archive(output_dir, paths):
  """<output_dir>/results.tar.gz holding results/<year>/Main/*.txt (what the server takes)."""
  archive = os.path.join(output_dir, 'results.tar.gz')
  with tarfile.open(archive + _PARTIAL, 'w:gz') as tar:
    for path in paths:
      tar.add(path, arcname=os.path.relpath(path, output_dir))
  os.replace(archive + _PARTIAL, archive)
  return archive


def write_coco_zip(json_path):
  """<name>_results.zip next to the JSON, holding the JSON at its root."""
  archive = os.path.splitext(json_path)[0] + '.zip'
  with zipfile.ZipFile(archive + _PARTIAL, 'w', zipfile.ZIP_DEFLATED) as zipped:
    zipped.write(json_path, arcname=os.path.basename(json_path))
  os.replace(archive + _PARTIAL, archive)
  return archive
