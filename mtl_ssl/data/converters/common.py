"""Shared pieces of the dataset converters: run summary, image checks and box cleaning.

A converter never dies silently on one bad image or box: it skips it, counts why, and prints the
counts at the end. Things that make the whole run impossible raise `ConversionError` naming the file.
"""
import collections
import io
import os
import re
import sys

import numpy as np
from PIL import Image


class ConversionError(ValueError):
  """The run cannot proceed (missing data directory, unreadable annotation file, bad label map)."""


class BadImageError(ValueError):
  """One image that cannot be used; `reason` is the summary key it is counted under."""

  def __init__(self, reason, message):
    super().__init__(message)
    self.reason = reason


class ConversionSummary:
  """Counts of what a conversion wrote, skipped and changed, with reasons."""

  def __init__(self, name):
    self.name = name
    self.images_seen = 0
    self.images_written = 0
    self.boxes_written = 0
    self.images_skipped = collections.Counter()  # reason -> count
    self.boxes_dropped = collections.Counter()  # reason -> count
    self.notes = collections.Counter()  # kept but noteworthy: clipped boxes, images without boxes
    self.unknown_classes = collections.Counter()  # class name/id -> count
    self.examples = collections.defaultdict(list)  # reason -> a few file names, for the report
    self.output_paths = []
    self.label_map_path = None  # named in the hint when every class name was unknown

  def skip_image(self, reason, where):
    self.images_skipped[reason] += 1
    self._remember(reason, where)

  def drop_box(self, reason, where):
    self.boxes_dropped[reason] += 1
    self._remember(reason, where)

  def note(self, reason, where=None, count=1):
    self.notes[reason] += count
    if where is not None:
      self._remember(reason, where)

  def _remember(self, reason, where):
    if len(self.examples[reason]) < 3:
      self.examples[reason].append(str(where))

  def failure(self):
    """Why the written data set is unusable (nothing written, every box dropped), or None."""
    if not self.images_written:
      return f'no image was written ({self.images_seen} seen)'
    dropped = sum(self.boxes_dropped.values())
    if self.boxes_written or not dropped:
      return None
    text = f'every box was dropped ({dropped} boxes, none written)'
    if self.unknown_classes:
      names = ', '.join(str(name) for name in sorted(self.unknown_classes, key=str)[:10])
      text += (f'; classes not in the label map {self.label_map_path or ""}: {names}. Write a '
               'label map with your class names (item { id: 1 name: "..." }) and pass it as '
               '--label_map_path')
    return text

  def as_dict(self):
    return {
        'images_seen': self.images_seen,
        'images_written': self.images_written,
        'boxes_written': self.boxes_written,
        'images_skipped': dict(self.images_skipped),
        'boxes_dropped': dict(self.boxes_dropped),
        'notes': dict(self.notes),
        'unknown_classes': dict(self.unknown_classes),
        'output_paths': list(self.output_paths),
    }

  def format(self):
    """Human-readable closing report."""
    lines = [f'{self.name}: {self.images_written} images written with {self.boxes_written} boxes '
             f'({self.images_seen} images seen)']
    sections = (('images skipped', self.images_skipped), ('boxes dropped', self.boxes_dropped),
                ('kept, noted', self.notes))
    for title, counter in sections:
      total = sum(counter.values())
      lines.append(f'  {title}: {total}')
      for reason, count in sorted(counter.items()):
        example = ', '.join(self.examples.get(reason, []))
        lines.append(f'    {reason}: {count}' + (f'  (e.g. {example})' if example else ''))
    if self.unknown_classes:
      names = ', '.join(f'{k!s} x{v}' for k, v in sorted(self.unknown_classes.items(),
                                                         key=lambda kv: str(kv[0])))
      lines.append(f'  classes not in the label map: {names}')
    if self.output_paths:
      lines.append('  written to: ' + ', '.join(self.output_paths))
    return '\n'.join(lines)


def _decode(encoded):
  """Fully decoded PIL image (truncated or corrupt files fail here) or BadImageError."""
  try:
    image = Image.open(io.BytesIO(encoded))
    image.load()
  except Exception as e:  # PIL raises many types for bad data
    reason = re.sub(r' <_io\.BytesIO object at 0x[0-9a-f]+>', '', str(e))
    raise BadImageError('corrupt_image', f'cannot decode image: {reason}') from e
  if image.size[0] < 1 or image.size[1] < 1:
    raise BadImageError('corrupt_image', f'empty image {image.size[0]}x{image.size[1]}')
  return image


def inspect_image(encoded):
  """Decodes the bytes fully; returns (format 'jpeg'|'png', height, width) or raises BadImageError."""
  image = _decode(encoded)
  fmt = (image.format or '').lower()
  if fmt not in ('jpeg', 'png'):
    raise BadImageError('unsupported_image_format',
                        f'unsupported image format {fmt or "unknown"!r} (need JPEG or PNG)')
  return fmt, image.size[1], image.size[0]


def _to_8bit_rgb(image):
  """RGB (or L) uint8 copy of any PIL mode: 16/32-bit and float images scaled to 0..255."""
  if image.mode in ('RGB', 'L'):
    return image
  if image.mode.startswith('I;16'):
    return Image.fromarray((np.asarray(image, np.uint16) >> 8).astype(np.uint8))
  if image.mode in ('I', 'F'):
    pixels = np.asarray(image, np.float64)
    low, high = float(np.min(pixels)), float(np.max(pixels))
    scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0.0
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))
  if image.mode in ('LA', 'La') or image.mode.startswith('L;'):
    return image.convert('L')
  return image.convert('RGB')  # P, RGBA, CMYK, YCbCr, LAB, 1, ...


def prepare_image(encoded):
  """(bytes, format, height, width, original format or None) of an image for a tf.Example.

  JPEG and PNG bytes are kept as they are; anything else PIL decodes (TIFF, BMP, GIF, WebP,
  ...) is re-encoded as lossless PNG (first frame; 16-bit scaled to 8-bit, alpha dropped), so
  the input pipeline, which decodes JPEG and PNG, can read it. BadImageError when undecodable.
  """
  image = _decode(encoded)
  fmt = (image.format or '').lower()
  width, height = image.size
  if fmt in ('jpeg', 'png'):
    return encoded, fmt, height, width, None
  buffer = io.BytesIO()
  _to_8bit_rgb(image).save(buffer, format='PNG')
  return buffer.getvalue(), 'png', height, width, fmt or 'unknown'


def clean_box(xmin, ymin, xmax, ymax, width, height):
  """Validates and clips a pixel box to the image.

  Returns (box, status): box = (ymin, xmin, ymax, xmax) normalized, or None when dropped;
  status is None (untouched), 'clipped', or the drop reason ('invalid_box_inverted_or_zero_area',
  'box_outside_image', 'box_not_finite').
  """
  values = np.asarray([xmin, ymin, xmax, ymax], dtype=np.float64)
  if not np.all(np.isfinite(values)):
    return None, 'box_not_finite'
  if xmax <= xmin or ymax <= ymin:
    return None, 'invalid_box_inverted_or_zero_area'
  cx0, cx1 = np.clip([xmin, xmax], 0.0, width)
  cy0, cy1 = np.clip([ymin, ymax], 0.0, height)
  if cx1 <= cx0 or cy1 <= cy0:
    return None, 'box_outside_image'
  status = 'clipped' if (cx0, cy0, cx1, cy1) != (xmin, ymin, xmax, ymax) else None
  return (cy0 / height, cx0 / width, cy1 / height, cx1 / width), status


def progress(iterable, total, desc, enabled=True):
  """tqdm progress bar (stderr) when enabled, else the iterable itself."""
  if not enabled:
    return iterable
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(iterable, total=total, desc=desc, unit='img')


def default_label_map(name):
  """Path of a label map shipped in mtl_ssl/data/label_maps ('pascal', 'mscoco')."""
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.join(here, 'label_maps', f'{name}_label_map.pbtxt')


def check_output_path(output_path):
  """ConversionError naming --output_path when it is a directory or cannot be written."""
  if '://' in output_path:  # gs:// and friends: tf.io.TFRecordWriter reports problems itself
    return
  if os.path.isdir(output_path):
    raise ConversionError(f'--output_path {output_path}: is a directory (give a file name, e.g. '
                          f'{os.path.join(output_path, "train.record")})')
  directory = os.path.dirname(os.path.abspath(output_path))
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise ConversionError(f'--output_path {output_path}: cannot create its directory ({e})') from e
  if not os.access(directory, os.W_OK | os.X_OK):
    raise ConversionError(f'--output_path {output_path}: directory {directory} is not writable')


def run_and_report(convert_fn, *args, **kwargs):
  """Runs a converter for a command line: prints the summary, returns an exit code.

  0 when a usable data set was written; 1 when nothing usable was (every image skipped or every
  box dropped: the summary says why and the written files are removed, so no silently empty data
  set is left behind); 2 on a ConversionError (bad paths, unreadable annotations or label map).
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # before TensorFlow loads to write records
  try:
    summary = convert_fn(*args, **kwargs)
  except ConversionError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(summary.format())
  problem = summary.failure()
  if problem is None:
    return 0
  removed = [path for path in summary.output_paths if os.path.isfile(path)]
  for path in removed:
    os.remove(path)
  print(f'error: {problem}' + (f' (removed {", ".join(removed)})' if removed else ''),
        file=sys.stderr)
  return 1


def add_common_flags(parser):
  """Flags both converters share (after their own)."""
  parser.add_argument('--num_shards', type=int, default=1)
  parser.add_argument('--keep_unknown_class_images', action='store_true',
                      help='keep images whose boxes all have classes outside the label map, as '
                      'images without boxes (default: skip them; they are not true negatives)')
  parser.add_argument('--no_progress', action='store_true', help='hide the progress bar')


def keep_or_skip_empty(kept_boxes, unknown_dropped, keep_unknown_class_images, summary, where):
  """Whether an image with no kept box is written; counts the decision in the summary.

  An image whose only boxes were of classes outside the label map is skipped unless asked:
  its objects are there, just unlabeled, so it is no clean negative example.
  """
  if kept_boxes:
    return True
  if unknown_dropped and not keep_unknown_class_images:
    summary.skip_image('only_unknown_class_boxes', where)
    return False
  summary.note('images_without_boxes_kept', where)
  return True
