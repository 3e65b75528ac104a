"""Pictures for TensorBoard and the inference command (numpy + Pillow, no TF).

Boxes are [ymin, xmin, ymax, xmax], normalized to the image they are drawn on unless
`normalized=False` (pixels). Class ids are 1-based label-map ids; 0 is background.
"""
import colorsys

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont


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


def _draw_labelled_box(draw, box, color, text, line_width, font):
  ymin, xmin, ymax, xmax = (float(v) for v in box)
  draw.rectangle([xmin, ymin, xmax, ymax], outline=color, width=line_width)
  if not text:
    return
  left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
  text_w, text_h = right - left, bottom - top
  y_text = ymin - text_h - 4 if ymin - text_h - 4 >= 0 else ymin
  draw.rectangle([xmin, y_text, xmin + text_w + 4, y_text + text_h + 4], fill=color)
  draw.text((xmin + 2, y_text + 2 - top), text, fill=(0, 0, 0), font=font)


def draw_boxes(image, boxes, classes=None, scores=None, category_index=None, min_score=0.0,
               max_boxes=20, normalized=True, color=None, line_width=2):
  """Returns a copy of `image` (uint8 [H,W,3]) with boxes and 'name: 87%' labels drawn.

  With scores, boxes below min_score are skipped and at most max_boxes of the highest scores are
  drawn; without scores (ground truth) the first max_boxes boxes are drawn.
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
  font = _font()
  for i in order:
    class_id = None if classes is None else int(classes[i])
    box_color = color or class_color(class_id if class_id is not None else 1)
    parts = []
    if class_id is not None:
      parts.append(class_name(category_index, class_id))
    if scores is not None:
      parts.append(f'{100 * scores[i]:.0f}%')
    _draw_labelled_box(draw, boxes[i], box_color, ': '.join(parts), line_width, font)
  return np.asarray(canvas)


def top_classes_text(label, category_index, top_k=2):
  """'person .62 bg .30' for a distribution over [background, class 1, ...]."""
  label = np.asarray(label, np.float64).reshape(-1)
  order = np.argsort(-label, kind='stable')[:top_k]
  names = ['bg' if k == 0 else class_name(category_index, k) for k in order]
  return ' '.join(f'{name} {label[k]:.2f}' for name, k in zip(names, order))


def draw_windows(image, windows, window_labels, category_index=None, top_k=2, max_windows=6,
                 line_width=1):
  """Task-1 windows with their top classes (soft label over background + classes).

  Draws the first max_windows windows (windows are random, so the first ones are a fair sample),
  each coloured by its top class.
  """
  image = _as_uint8_rgb(image)
  height, width = image.shape[:2]
  windows = _to_pixels(windows, height, width, normalized=True)[:max_windows]
  window_labels = np.asarray(window_labels, np.float64)[:max_windows]
  canvas = Image.fromarray(image)
  draw = ImageDraw.Draw(canvas)
  font = _font()
  for window, label in zip(windows, window_labels):
    top = int(np.argmax(label))
    color = (160, 160, 160) if top == 0 else class_color(top)
    _draw_labelled_box(draw, window, color, top_classes_text(label, category_index, top_k),
                       line_width, font)
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
