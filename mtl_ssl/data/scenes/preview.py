"""A picture of a few scenes with their boxes and class names, to see what the data looks like."""
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from mtl_ssl.data.scenes import sources

# One colour per class (distinct, readable on photos).
_COLORS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def draw_boxes(image, boxes, classes, names=sources.CLASS_NAMES):
  """Returns a PIL image with pixel boxes (ymin, xmin, ymax, xmax; max exclusive) and names."""
  picture = Image.fromarray(np.asarray(image, np.uint8)).convert('RGB')
  draw = ImageDraw.Draw(picture)
  font = ImageFont.load_default()
  for (y0, x0, y1, x1), class_id in zip(np.asarray(boxes).tolist(), np.asarray(classes).tolist()):
    color = _COLORS[int(class_id) % len(_COLORS)]
    draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=color, width=2)
    text = names[int(class_id)]
    tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), text, font=font)
    label_top = y0 - (ty1 - ty0) - 3 if y0 >= (ty1 - ty0) + 3 else y0
    draw.rectangle([x0, label_top, x0 + (tx1 - tx0) + 3, label_top + (ty1 - ty0) + 3], fill=color)
    draw.text((x0 + 2 - tx0, label_top + 1 - ty0), text, fill=(0, 0, 0), font=font)
  return picture


def preview_grid(generator, split='train', count=6, columns=3, title=True):
  """Grid of the first `count` scenes of a split (exactly the images written to its record)."""
  tiles = []
  for index in range(count):
    scene = generator.make_scene(split, index)
    tiles.append(draw_boxes(scene.image, scene.boxes, scene.classes))
  columns = max(1, min(columns, count))
  rows = (count + columns - 1) // columns
  c = generator.config
  header = 16 if title else 0
  pad = 4
  grid = Image.new('RGB', (columns * (c.width + pad) + pad, header + rows * (c.height + pad) + pad),
                   (255, 255, 255))
  if title:
    ImageDraw.Draw(grid).text(
        (pad, 2), f'scenes {split}: layout={c.layout} seed={c.seed} '
        f'{c.height}x{c.width} objects: {generator.objects_kind}',
        fill=(0, 0, 0), font=ImageFont.load_default())
  for i, tile in enumerate(tiles):
    row, col = divmod(i, columns)
    grid.paste(tile, (pad + col * (c.width + pad), header + pad + row * (c.height + pad)))
  return grid


def write_preview(generator, path, split='train', count=6, columns=3):
  grid = preview_grid(generator, split, count, columns)
  grid.save(path, format='PNG')
  return path
