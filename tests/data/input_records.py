"""Test helper (not a test): writes real OD API tf.Examples (JPEG or PNG) into TFRecord files.

Images are drawn with numpy: a gray background and one solid-coloured rectangle per box, so a test
can check that an image and its boxes still agree after resizing and augmentation.
"""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

COLORS = np.array([[230, 30, 30], [30, 200, 40], [40, 60, 220], [240, 220, 20], [200, 40, 200],
                   [20, 210, 210]], np.uint8)
BACKGROUND = 128


def draw(height, width, boxes, colors=COLORS):
  """uint8 [h, w, 3]: gray, box i filled with colors[i] (rows floor(ymin*h)..ceil(ymax*h))."""
  image = np.full([height, width, 3], BACKGROUND, np.uint8)
  for i, (ymin, xmin, ymax, xmax) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
    y0, y1 = int(np.floor(ymin * height)), int(np.ceil(ymax * height))
    x0, x1 = int(np.floor(xmin * width)), int(np.ceil(xmax * width))
    image[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = colors[i % len(colors)]
  return image


def encode(image, fmt):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='JPEG' if fmt == 'jpeg' else 'PNG', quality=95)
  return buffer.getvalue()


def example(encoded=None, fmt='png', boxes=(), labels=None, texts=None, source_id='img',
            filename=None, difficult=None, is_crowd=None, height=None, width=None, extra=None,
            skip=()):
  """Serialized tf.Example; any key in `skip` is left out, `extra` adds/overrides features."""
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  feature = {}

  def put(key, kind, values):
    if key in skip or values is None:
      return
    if kind == 'bytes':
      feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))
    elif kind == 'int':
      feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    else:
      feature[key] = tf.train.Feature(
          float_list=tf.train.FloatList(value=[float(v) for v in values]))

  put('image/encoded', 'bytes', [encoded])
  put('image/format', 'bytes', [fmt.encode()])
  put('image/source_id', 'bytes', [source_id.encode()])
  put('image/filename', 'bytes', [(filename or source_id + '.' + fmt).encode()])
  put('image/height', 'int', [height] if height else None)
  put('image/width', 'int', [width] if width else None)
  for column, name in enumerate(('ymin', 'xmin', 'ymax', 'xmax')):
    put('image/object/bbox/' + name, 'float', boxes[:, column])
  put('image/object/class/label', 'int', labels)
  put('image/object/class/text', 'bytes', None if texts is None else [t.encode() for t in texts])
  put('image/object/difficult', 'int', difficult)
  put('image/object/is_crowd', 'int', is_crowd)
  for key, value in (extra or {}).items():
    feature[key] = value
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def drawn_example(height, width, boxes, labels, fmt='png', source_id='img', **kwargs):
  """A record whose image shows its boxes (see `draw`)."""
  image = draw(height, width, boxes)
  return example(encode(image, fmt), fmt, boxes, labels=labels, source_id=source_id,
                 height=height, width=width, **kwargs)


def write(path, records):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for record in records:
      writer.write(record)
  return str(path)
