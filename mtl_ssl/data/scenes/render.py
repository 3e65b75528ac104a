"""Pixels of a scene: background crops of real photos and tinted Fashion-MNIST items pasted on them.

An item is rendered as an RGB patch plus an alpha mask taken from its intensity (so the background
shows through dark parts), then cropped to the tight box of the mask: a patch's box is exactly
where it changes the image.
"""
import colorsys

import numpy as np
from PIL import Image

# Intensity (0..1) below which an item pixel is treated as empty; cut hard so no faint halo
# changes pixels outside the object's box.
ALPHA_THRESHOLD = 0.1
ALPHA_GAIN = 2.5


class Patch:
  """A rendered object cropped to its mask: rgb float32 [h,w,3] 0..255, alpha float32 [h,w]."""

  def __init__(self, rgb, alpha):
    self.rgb = rgb
    self.alpha = alpha

  @property
  def height(self):
    return self.alpha.shape[0]

  @property
  def width(self):
    return self.alpha.shape[1]


def random_tint(rng):
  """A random clothing colour (RGB 0..255): any hue, muted to vivid, never very dark."""
  hue = rng.uniform(0.0, 1.0)
  saturation = rng.uniform(0.15, 0.9)
  value = rng.uniform(0.55, 1.0)
  return np.asarray(colorsys.hsv_to_rgb(hue, saturation, value), np.float32) * 255.0


def render_item(gray28, height, width, tint):
  """Scales a 28x28 uint8 item to (height, width), tints it and crops it to its mask.

  Returns a Patch, or None when nothing of the item survives the threshold at this size.
  """
  height, width = max(int(height), 1), max(int(width), 1)
  resized = Image.fromarray(np.asarray(gray28, np.uint8)).resize((width, height), Image.BILINEAR)
  intensity = np.asarray(resized, np.float32) / 255.0
  alpha = np.clip(intensity * ALPHA_GAIN, 0.0, 1.0)
  alpha[intensity < ALPHA_THRESHOLD] = 0.0
  rows = np.flatnonzero(alpha.any(axis=1))
  cols = np.flatnonzero(alpha.any(axis=0))
  if rows.size == 0:
    return None
  y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
  alpha = alpha[y0:y1, x0:x1]
  shade = intensity[y0:y1, x0:x1] / max(float(intensity.max()), 1e-6)
  rgb = tint[None, None, :] * (0.3 + 0.7 * shade)[..., None]
  return Patch(rgb.astype(np.float32), alpha.astype(np.float32))


def paste(canvas, patch, top, left):
  """Alpha-blends the patch into canvas (float32 [H,W,3]) in place; returns the pixel box.

  The box is (ymin, xmin, ymax, xmax) with exclusive max, i.e. the tight box of the pasted mask.
  The patch must lie fully inside the canvas.
  """
  bottom, right = top + patch.height, left + patch.width
  if top < 0 or left < 0 or bottom > canvas.shape[0] or right > canvas.shape[1]:
    raise ValueError(f'patch {patch.height}x{patch.width} at ({top}, {left}) leaves the '
                     f'{canvas.shape[0]}x{canvas.shape[1]} image')
  region = canvas[top:bottom, left:right]
  a = patch.alpha[..., None]
  region *= (1.0 - a)
  region += a * patch.rgb
  return (top, left, bottom, right)


def random_background(photos, height, width, rng):
  """A random crop (scale, aspect, position), flip and brightness change of one photo."""
  photo = photos[rng.integers(len(photos))]
  ph, pw = photo.shape[:2]
  aspect = (width / height) * float(np.exp(rng.uniform(-0.2, 0.2)))
  scale = rng.uniform(0.3, 1.0)
  crop_h = max(8, int(round(min(ph, pw / aspect) * scale)))
  crop_w = max(8, min(pw, int(round(crop_h * aspect))))
  y = int(rng.integers(0, ph - crop_h + 1))
  x = int(rng.integers(0, pw - crop_w + 1))
  crop = Image.fromarray(photo[y:y + crop_h, x:x + crop_w])
  image = np.asarray(crop.resize((width, height), Image.BILINEAR), np.float32)
  if rng.random() < 0.5:
    image = image[:, ::-1]
  image = image * rng.uniform(0.7, 1.15)
  return np.clip(image, 0.0, 255.0)


def to_uint8(canvas):
  return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
