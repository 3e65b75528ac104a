"""Where to put the text tag of each box in a picture: inside the image, never over another tag.

Tags are placed one by one (the most important first): at the first free spot of a list of
spots around the box (above it, inside its top, below it, inside its bottom, right-aligned
variants, then down its left edge), each moved into the image; if all of them are taken, at
the free spot nearest to the box; if the picture is full, the tag is left out (None).
"""


def _overlaps(a, b):
  return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class LabelLayout:
  """Free-space bookkeeping for the tags of one picture (pixel rectangles x0, y0, x1, y1)."""

  def __init__(self, width, height):
    self.width = int(width)
    self.height = int(height)
    self.taken = []

  def _inside(self, x, y, w, h):
    return (min(max(int(round(x)), 0), self.width - w),
            min(max(int(round(y)), 0), self.height - h))

  def is_free(self, rect):
    return not any(_overlaps(rect, other) for other in self.taken)

  def _candidates(self, box, w, h):
    ymin, xmin, ymax, xmax = box
    yield xmin, ymin - h
    yield xmin, ymin
    yield xmin, ymax
    yield xmin, ymax - h
    yield xmax - w, ymin - h
    yield xmax - w, ymin
    yield xmax - w, ymax
    y = ymin + h
    while y < ymax - h:
      yield xmin, y
      y += h

  def _nearest_free(self, box, w, h):
    target_x, target_y = box[1], box[0] - h
    best, best_distance = None, None
    ys = sorted(set(range(0, self.height - h + 1, max(1, h // 2))) | {self.height - h})
    xs = sorted(set(range(0, self.width - w + 1, max(1, min(w, 8)))) | {self.width - w})
    for y in ys:
      for x in xs:
        distance = (x - target_x) ** 2 + (y - target_y) ** 2
        if (best_distance is None or distance < best_distance) and self.is_free(
            (x, y, x + w, y + h)):
          best, best_distance = (x, y), distance
    return best

  def place(self, box, w, h):
    """Top-left (x, y) of a w x h tag for the pixel box (ymin, xmin, ymax, xmax), or None."""
    w, h = int(w), int(h)
    if w > self.width or h > self.height or w < 1 or h < 1:
      return None
    for x, y in self._candidates([float(v) for v in box], w, h):
      x, y = self._inside(x, y, w, h)
      if self.is_free((x, y, x + w, y + h)):
        self.taken.append((x, y, x + w, y + h))
        return x, y
    spot = self._nearest_free([float(v) for v in box], w, h)
    if spot is not None:
      self.taken.append((spot[0], spot[1], spot[0] + w, spot[1] + h))
    return spot
