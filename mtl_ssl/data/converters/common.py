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


def inspect_image(encoded):
  """Decodes the bytes fully; returns (format 'jpeg'|'png', height, width) or raises BadImageError."""
  try:
    with Image.open(io.BytesIO(encoded)) as image:
      fmt = (image.format or '').lower()
      image.load()  # decode all pixels: truncated or corrupt files fail here
      width, height = image.size
  except Exception as e:  # PIL raises many types for bad data
    reason = re.sub(r' <_io\.BytesIO object at 0x[0-9a-f]+>', '', str(e))
    raise BadImageError('corrupt_image', f'cannot decode image: {reason}') from e
  if fmt not in ('jpeg', 'png'):
    raise BadImageError('unsupported_image_format',
                        f'unsupported image format {fmt or "unknown"!r} (need JPEG or PNG)')
  if width < 1 or height < 1:
    raise BadImageError('corrupt_image', f'empty image {width}x{height}')
  return fmt, height, width


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


def run_and_report(convert_fn, *args, **kwargs):
  """Runs a converter for a command line: prints the summary, returns an exit code.

  0 when something was written, 1 when every image was skipped, 2 on a ConversionError.
  """
  try:
    summary = convert_fn(*args, **kwargs)
  except ConversionError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(summary.format())
  return 0 if summary.images_written else 1
