"""Where objects go: the `random` and `context` layouts.

random:  classes drawn uniformly, objects placed independently (limited overlap).
context: objects form outfits ("person columns") with co-occurrence and spatial rules, so that an
         object's neighbours tell about its class, as in real scenes:
           top (T-shirt/top, Pullover, Coat, Shirt) above Trouser above footwear, or
           Dress above footwear; footwear depends on the top (Coat -> mostly Ankle boot,
           T-shirt -> mostly Sandal, ...); a Bag may stand beside the column (likelier with Coat
           or Dress). Columns do not share x ranges.
Class ids here are Fashion-MNIST's 0-based ids (label id = class id + 1).
"""
import numpy as np

from mtl_ssl.data.scenes import render

TSHIRT, TROUSER, PULLOVER, DRESS, COAT, SANDAL, SHIRT, SNEAKER, BAG, ANKLE_BOOT = range(10)
TOPS = (TSHIRT, PULLOVER, COAT, SHIRT)
FOOTWEAR = (SANDAL, SNEAKER, ANKLE_BOOT)
LAYOUTS = ('random', 'context')

# Outfit model of the context layout.
P_DRESS_OUTFIT = 0.25
P_TOP = {TSHIRT: 0.3, SHIRT: 0.25, PULLOVER: 0.25, COAT: 0.2}
P_FOOTWEAR = {  # given the top (or dress)
    TSHIRT: {SANDAL: 0.6, SNEAKER: 0.4},
    SHIRT: {SNEAKER: 0.6, ANKLE_BOOT: 0.2, SANDAL: 0.2},
    PULLOVER: {SNEAKER: 0.5, ANKLE_BOOT: 0.5},
    COAT: {ANKLE_BOOT: 0.85, SNEAKER: 0.15},
    DRESS: {SANDAL: 0.7, SNEAKER: 0.2, ANKLE_BOOT: 0.1},
}
P_BAG = {TSHIRT: 0.15, SHIRT: 0.3, PULLOVER: 0.15, COAT: 0.5, DRESS: 0.45}
# Rendered size of each role relative to the column's unit size.
SIZE_FACTOR = {'top': 1.0, 'trouser': 1.1, 'dress': 1.25, 'footwear': 0.7, 'bag': 0.8}
MAX_OVERLAP = 0.3  # random layout: intersection / smaller box area


class ObjectPool:
  """Items of one split grouped by class; sample() returns (instance index, 28x28 image)."""

  def __init__(self, images, labels):
    self.images = images
    self.labels = labels
    self.by_class = [np.flatnonzero(labels == c) for c in range(10)]
    for class_id, members in enumerate(self.by_class):
      if members.size == 0:
        raise ValueError(f'no Fashion-MNIST items of class {class_id} in this split')

  def sample(self, rng, class_id):
    index = int(self.by_class[class_id][rng.integers(self.by_class[class_id].size)])
    return index, self.images[index]


class Placement:
  """One object of a scene: class, item instance, rendered patch and top-left corner."""

  def __init__(self, class_id, instance, patch, top, left, group=-1, role=''):
    self.class_id, self.instance, self.patch = class_id, instance, patch
    self.top, self.left, self.group, self.role = top, left, group, role

  @property
  def box(self):
    return (self.top, self.left, self.top + self.patch.height, self.left + self.patch.width)


def _choice(rng, table):
  keys = list(table)
  probs = np.asarray([table[k] for k in keys], np.float64)
  return keys[rng.choice(len(keys), p=probs / probs.sum())]


def _render(rng, pool, class_id, size):
  """Renders a random item of the class at about `size` px (small aspect jitter)."""
  for _ in range(8):
    instance, gray = pool.sample(rng, class_id)
    stretch = float(np.exp(rng.uniform(-0.12, 0.12)))
    patch = render.render_item(gray, round(size * stretch), round(size / stretch),
                               render.random_tint(rng))
    if patch is not None and patch.height >= 2 and patch.width >= 2:
      return instance, patch
  raise ValueError(f'could not render an item of class {class_id} at size {size}')


def _overlap_ok(box, boxes):
  y0, x0, y1, x1 = box
  area = (y1 - y0) * (x1 - x0)
  for oy0, ox0, oy1, ox1 in boxes:
    inter = max(0, min(y1, oy1) - max(y0, oy0)) * max(0, min(x1, ox1) - max(x0, ox0))
    if inter > MAX_OVERLAP * min(area, (oy1 - oy0) * (ox1 - ox0)):
      return False
  return True


def random_layout(rng, pool, height, width, num_objects, min_size, max_size):
  """Independent objects of uniform random classes, sizes and positions."""
  placements = []
  for _ in range(num_objects):
    for _ in range(30):
      class_id = int(rng.integers(10))
      size = rng.uniform(min_size, max_size)
      instance, patch = _render(rng, pool, class_id, size)
      if patch.height > height or patch.width > width:
        continue
      top = int(rng.integers(0, height - patch.height + 1))
      left = int(rng.integers(0, width - patch.width + 1))
      candidate = Placement(class_id, instance, patch, top, left)
      if _overlap_ok(candidate.box, [p.box for p in placements]):
        placements.append(candidate)
        break
  return placements


def _outfit(rng, force_dress=False):
  """Classes of one column, top to bottom, plus whether a bag goes beside it.

  force_dress: only two objects fit the budget, so the outfit is Dress + footwear.
  """
  if force_dress or rng.random() < P_DRESS_OUTFIT:
    key, body = DRESS, [(DRESS, 'dress')]
  else:
    key = _choice(rng, P_TOP)
    body = [(key, 'top'), (TROUSER, 'trouser')]
  body.append((_choice(rng, P_FOOTWEAR[key]), 'footwear'))
  return body, bool(rng.random() < P_BAG[key])


def _build_column(rng, pool, body, with_bag, unit):
  """Column objects with positions relative to the column's top-left; None if degenerate."""
  column = []
  y = 0
  for class_id, role in body:
    instance, patch = _render(rng, pool, class_id, unit * SIZE_FACTOR[role])
    shift = int(round(rng.normal(0.0, 0.04 * unit)))
    column.append(Placement(class_id, instance, patch, y, shift - patch.width // 2, role=role))
    y += patch.height + int(rng.integers(1, max(2, int(0.08 * unit)) + 1))
  if with_bag:
    instance, patch = _render(rng, pool, BAG, unit * SIZE_FACTOR['bag'])
    waist = column[0].top + column[0].patch.height  # bottom of the top / middle of the dress
    if body[0][1] == 'dress':
      waist = column[0].top + column[0].patch.height // 2
    top = max(0, waist - patch.height // 2 + int(rng.integers(-2, 3)))
    gap = int(rng.integers(1, max(2, int(0.1 * unit)) + 1))
    if rng.random() < 0.5:
      left = max(p.left + p.patch.width for p in column) + gap
    else:
      left = min(p.left for p in column) - gap - patch.width
    column.append(Placement(BAG, instance, patch, top, left, role='bag'))
  min_left = min(p.left for p in column)
  for p in column:
    p.left -= min_left
  return column


def _extent(column):
  return (max(p.top + p.patch.height for p in column), max(p.left + p.patch.width for p in column))


def context_layout(rng, pool, height, width, num_objects, min_size, max_size):
  """Person columns (see module doc) with at most num_objects (>= 2) objects in all."""
  placements, used_x = [], []
  group = 0
  for _ in range(12):
    remaining = num_objects - len(placements)
    if remaining < 2:
      break
    body, with_bag = _outfit(rng, force_dress=remaining == 2)
    with_bag = with_bag and len(body) < remaining
    unit = rng.uniform(min_size, max_size)
    placed = False
    while unit >= max(6.0, 0.5 * min_size) and not placed:
      column = _build_column(rng, pool, body, with_bag, unit)
      col_h, col_w = _extent(column)
      unit *= 0.8
      if col_h > height or col_w > width:
        continue
      for _ in range(20):
        top = int(rng.integers(0, height - col_h + 1))
        left = int(rng.integers(0, width - col_w + 1))
        if all(left + col_w + 2 <= x0 or x1 + 2 <= left for x0, x1 in used_x):
          placed = True
          break
    if not placed:
      continue
    used_x.append((left, left + col_w))
    for p in column:
      p.top += top
      p.left += left
      p.group = group
    placements.extend(column)
    group += 1
  return placements


def make_layout(name, rng, pool, height, width, num_objects, min_size, max_size):
  if name == 'random':
    return random_layout(rng, pool, height, width, num_objects, min_size, max_size)
  if name == 'context':
    return context_layout(rng, pool, height, width, num_objects, min_size, max_size)
  raise ValueError(f'layout must be one of {LAYOUTS}, got {name!r}')
