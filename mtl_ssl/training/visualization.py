"""Pictures for TensorBoard and the inference command (numpy + Pillow, no TF).

Boxes are [ymin, xmin, ymax, xmax], normalized to the image they are drawn on unless
`normalized=False` (pixels). Class ids are 1-based label-map ids; 0 is background.
"""
import colorsys
import math

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from mtl_ssl.training import label_layout


def class_color(class_id):
  """A stable, well-spread RGB colour per class id (golden-ratio hue steps)."""
  hue = (int(class_id) * 0.618033988749895) % 1.0
  return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 1.0))


def class_name(category_index, class_id):
  """Name of a class id from {id: {'id', 'name'}}; 'background' for 0, the number if unknown."""
  class_id = int(class_id)
  if category_index and class_id in category_index:
    return str(category_index[class_id]['name'])
  return 'background' if class_id == 0 else str(class_id)


def _font():
  return ImageFont.load_default()


def _as_uint8_rgb(image):
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'expected an [H, W, 3] image, got shape {image.shape}')
  if image.dtype != np.uint8:
    image = np.clip(image, 0, 255).astype(np.uint8)
  return image


def _to_pixels(boxes, height, width, normalized):
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  if normalized:
    boxes = boxes * np.array([height, width, height, width], np.float64)
  return boxes


def _fit_text(draw, text, font, max_width):
  """The text, shortened with '..' until it is at most max_width pixels wide."""
  if draw.textlength(text, font=font) <= max_width:
    return text
  while len(text) > 1 and draw.textlength(text + '..', font=font) > max_width:
    text = text[:-1]
  return text.rstrip() + '..'


def draw_tags(draw, tags, width, height, font=None, tags_out=None):
  """Draws the text tags [(pixel box, colour, text)], the first ones first, each where
  LabelLayout puts it: inside the width x height picture, never over another tag (text too
  wide for the picture is shortened; a tag with no free spot left is left out). Appends
  (x0, y0, x1, y1, text) of every drawn tag to tags_out when given."""
  font = font or _font()
  left, top, _, bottom = draw.textbbox((0, 0), 'Ag|', font=font)
  tag_h = bottom - top + 4
  layout = label_layout.LabelLayout(width, height)
  for box, color, text in tags:
    if not text:
      continue
    text = _fit_text(draw, text, font, width - 4)
    tag_w = int(math.ceil(draw.textlength(text, font=font))) + 4
    spot = layout.place(box, tag_w, tag_h)
    if spot is None:
      continue
    x, y = spot
    draw.rectangle([x, y, x + tag_w - 1, y + tag_h - 1], fill=color)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance >= 110 else (255, 255, 255)  # readable on dark tags too
    draw.text((x + 2 - left, y + 2 - top), text, fill=ink, font=font)
    if tags_out is not None:
      tags_out.append((x, y, x + tag_w, y + tag_h, text))


def _draw_box_outline(draw, box, color, line_width):
  ymin, xmin, ymax, xmax = (float(v) for v in box)
  draw.rectangle([xmin, ymin, xmax, ymax], outline=color, width=line_width)


def draw_boxes(image, boxes, classes=None, scores=None, category_index=None, min_score=0.0,
               max_boxes=20, normalized=True, color=None, line_width=2, tags_out=None):
  """Returns a copy of `image` (uint8 [H,W,3]) with boxes and 'name: 87%' labels drawn.

  With scores, boxes below min_score are skipped and at most max_boxes of the highest scores are
  drawn; without scores (ground truth) the first max_boxes boxes are drawn. The outlines are
  drawn first, then the tags (highest score first) where they do not cover each other.
  """
  image = _as_uint8_rgb(image)
  height, width = image.shape[:2]
  boxes = _to_pixels(boxes, height, width, normalized)
  order = np.arange(len(boxes))
  if scores is not None:
    scores = np.asarray(scores, np.float64).reshape(-1)
    order = np.argsort(-scores, kind='stable')
    order = order[scores[order] >= min_score]
  order = order[:max_boxes]
  canvas = Image.fromarray(image)
  draw = ImageDraw.Draw(canvas)
  tags = []
  for i in order:
    class_id = None if classes is None else int(classes[i])
    box_color = color or class_color(class_id if class_id is not None else 1)
    parts = []
    if class_id is not None:
      parts.append(class_name(category_index, class_id))
    if scores is not None:
      parts.append(f'{100 * scores[i]:.0f}%')
    _draw_box_outline(draw, boxes[i], box_color, line_width)
    tags.append((boxes[i], box_color, ': '.join(parts)))
  draw_tags(draw, tags, width, height, tags_out=tags_out)
  return np.asarray(canvas)


def top_classes_text(label, category_index, top_k=2):
  """'person .62 bg .30' for a distribution over [background, class 1, ...]."""
  label = np.asarray(label, np.float64).reshape(-1)
  order = np.argsort(-label, kind='stable')[:top_k]
  names = ['bg' if k == 0 else class_name(category_index, k) for k in order]
  return ' '.join(f'{name} {label[k]:.2f}' for name, k in zip(names, order))


def draw_windows(image, windows, window_labels, category_index=None, top_k=2, max_windows=6,
                 line_width=1, tags_out=None):
  """Task-1 windows with their top classes (soft label over background + classes).

  Draws the first max_windows windows (windows are random, so the first ones are a fair sample),
  each coloured by its top class; the tags never cover each other nor leave the picture.
  """
  image = _as_uint8_rgb(image)
  height, width = image.shape[:2]
  windows = _to_pixels(windows, height, width, normalized=True)[:max_windows]
  window_labels = np.asarray(window_labels, np.float64)[:max_windows]
  canvas = Image.fromarray(image)
  draw = ImageDraw.Draw(canvas)
  tags = []
  for window, label in zip(windows, window_labels):
    top = int(np.argmax(label))
    color = (160, 160, 160) if top == 0 else class_color(top)
    _draw_box_outline(draw, window, color, line_width)
    tags.append((window, color, top_classes_text(label, category_index, top_k)))
  draw_tags(draw, tags, width, height, tags_out=tags_out)
  return np.asarray(canvas)


def closeness_text(label, category_index, top_k=2):
  """'near: dog .62 cat .38' for a Task-2 label over [background, class 1, ...]; 'no other
  class' when the background entry wins (no box of another class in the image)."""
  label = np.asarray(label, np.float64).reshape(-1)
  if label.size < 2 or label[0] >= label[1:].max():
    return 'no other class'
  order = 1 + np.argsort(-label[1:], kind='stable')[:top_k]
  return 'near: ' + ' '.join(f'{class_name(category_index, k)} {label[k]:.2f}'
                             for k in order if label[k] > 0)


def draw_closeness(image, boxes, classes, closeness_labels, category_index=None, top_k=2,
                   line_width=1, tags_out=None):
  """Task-2 labels: each ground-truth box with the classes it is close to, and a line from its
  centre to the nearest box of its top class (the box that sets that closeness value)."""
  image = _as_uint8_rgb(image)
  height, width = image.shape[:2]
  boxes = _to_pixels(boxes, height, width, normalized=True)
  classes = np.asarray(classes).reshape(-1).astype(int)
  closeness_labels = np.asarray(closeness_labels, np.float64)
  centres = np.stack([(boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2], 1)
  canvas = Image.fromarray(image)
  draw = ImageDraw.Draw(canvas)
  tags = []
  for i, (box, label) in enumerate(zip(boxes, closeness_labels)):
    color = class_color(classes[i])
    _draw_box_outline(draw, box, color, line_width)
    if label.size > 1 and label[0] < label[1:].max():
      top = 1 + int(np.argmax(label[1:]))
      others = np.flatnonzero(classes == top)
      if others.size:
        j = others[np.argmin(np.linalg.norm(centres[others] - centres[i], axis=1))]
        draw.line([tuple(centres[i]), tuple(centres[j])], fill=class_color(top), width=1)
    tags.append((box, color, closeness_text(label, category_index, top_k)))
  draw_tags(draw, tags, width, height, tags_out=tags_out)
  return np.asarray(canvas)


def overlay_mask(image, mask, color=(255, 40, 40), alpha=0.5):
  """Blends a [G,G] mask in [0,1] (a grid over the whole image, aspect ignored) onto the image."""
  image = _as_uint8_rgb(image)
  mask = np.clip(np.asarray(mask, np.float32), 0.0, 1.0)
  if mask.ndim != 2:
    raise ValueError(f'expected a [G, G] mask, got shape {mask.shape}')
  height, width = image.shape[:2]
  rows = np.minimum((np.arange(height) * mask.shape[0]) // max(height, 1), mask.shape[0] - 1)
  cols = np.minimum((np.arange(width) * mask.shape[1]) // max(width, 1), mask.shape[1] - 1)
  weight = (alpha * mask[rows][:, cols])[..., None]
  blended = image * (1.0 - weight) + np.asarray(color, np.float32) * weight
  return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def upscale_small(image, min_side=256):
  """Nearest-neighbour enlargement of images whose longer side is below min_side (so labels
  stay readable on tiny inputs); normalized boxes can be drawn on the result unchanged."""
  image = np.asarray(image)
  factor = int(np.ceil(min_side / max(max(image.shape[:2]), 1)))
  if factor <= 1:
    return image
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def crop_to_true_shape(image, true_shape):
  """Drops the zero padding: image[:h, :w] for true_shape (h, w, ...)."""
  return np.asarray(image)[: int(true_shape[0]), : int(true_shape[1])]


def side_by_side(left, right):
  """Two images next to each other (the shorter padded at the bottom with black)."""
  left, right = _as_uint8_rgb(left), _as_uint8_rgb(right)
  height = max(left.shape[0], right.shape[0])
  pad = lambda im: np.pad(im, ((0, height - im.shape[0]), (0, 0), (0, 0)))
  return np.concatenate([pad(left), pad(right)], axis=1)


def same_size_batch(images):
  """Stacks images of different sizes into one uint8 batch, padding with black."""
  height = max(im.shape[0] for im in images)
  width = max(im.shape[1] for im in images)
  return np.stack([np.pad(im, ((0, height - im.shape[0]), (0, width - im.shape[1]), (0, 0)))
                   for im in images])
