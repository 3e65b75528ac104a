"""The images a tool runs over: a directory of image files or OD API TFRecords.

Each image is described by an `ImageRef` first (cheap: names only), so a tool can check names
and ids (duplicates, an image list) before any detection runs, then `load` decodes the selected
ones in order.
"""
import collections
import dataclasses
import os

from mtl_ssl.data.fields import TfExampleFields as K
from mtl_ssl.export import inference


@dataclasses.dataclass(frozen=True)
class ImageRef:
  """name: the image identifier of the PASCAL devkit (the file stem, e.g. 2008_000001);
  file_name: the file's base name (TFRecord: image/filename); source_id: image/source_id of a
  TFRecord ('' for files); where: the file path or 'FILE record #i', for messages."""
  name: str
  file_name: str
  source_id: str
  where: str
  key: tuple = dataclasses.field(default=(), compare=False, repr=False)


def _stem(file_name):
  return os.path.splitext(os.path.basename(file_name))[0]


def read_image_list(path):
  """Image ids of a devkit list (ImageSets/Main/test.txt: the first word of each line)."""
  try:
    with open(path, 'r', encoding='utf-8') as f:
      ids = [line.split()[0] for line in f if line.strip()]
  except OSError as error:
    raise ValueError(f'--image_list {path}: cannot read ({error.strerror or error})') from error
  if not ids:
    raise ValueError(f'--image_list {path} lists no image')
  return ids


class ImageDirSource:
  """Image files of one directory (not recursive), sorted by name."""

  def __init__(self, image_dir):
    self.description = image_dir
    self.refs = [ImageRef(_stem(path), os.path.basename(path), '', path, key=(path,))
                 for path in inference.list_images(image_dir)]

  def load(self, refs):
    """Yields (ref, uint8 RGB image, encoded bytes) for refs, in their order."""
    for ref in refs:
      image, encoded = inference.read_image_file(ref.key[0])
      yield ref, image, encoded


def _bytes_feature(example, key):
  values = example.features.feature[key].bytes_list.value
  return values[0] if values else b''


def _tf():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf


def _records(path):
  """(index, serialized record) of one TFRecord file; a corrupt file raises naming it."""
  tf = _tf()
  index = -1
  try:
    for index, record in enumerate(tf.data.TFRecordDataset(path)):
      yield index, record.numpy()
  except tf.errors.OpError as error:
    raise ValueError(f'--input_tfrecord {path}: unreadable after record #{index} '
                     f'({error.message.splitlines()[0]})') from error


class TFRecordSource:
  """OD API detection TFRecords (image/encoded, image/filename, image/source_id), given as a
  path, a glob or sharded `name-?????-of-NNNNN` names; one pass reads the names up front."""

  def __init__(self, pattern):
    tf = _tf()
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
      raise ValueError(f'--input_tfrecord {pattern}: no such file')
    self.description = pattern
    self.refs = []
    for path in files:
      for index, serialized in _records(path):
        where = f'{path} record #{index}'
        try:
          example = tf.train.Example.FromString(serialized)
        except Exception as error:  # pylint: disable=broad-except  (protobuf DecodeError)
          raise ValueError(f'{where}: not a tf.train.Example ({error})') from error
        if not _bytes_feature(example, K.image_encoded):
          raise ValueError(f'{where}: no {K.image_encoded}')
        file_name = _bytes_feature(example, K.filename).decode('utf-8', 'replace')
        source_id = _bytes_feature(example, K.source_id).decode('utf-8', 'replace')
        name = _stem(file_name or source_id)
        if not name:
          raise ValueError(f'{where}: neither {K.filename} nor {K.source_id} is set; the image '
                           'needs a name for the result files')
        self.refs.append(ImageRef(name, os.path.basename(file_name), source_id, where,
                                  key=(path, index)))
    if not self.refs:
      raise ValueError(f'--input_tfrecord {pattern}: no records in {", ".join(files)}')

  def load(self, refs):
    """Yields (ref, uint8 RGB image, encoded bytes) for refs (in file and record order)."""
    tf = _tf()
    wanted = collections.defaultdict(dict)
    for ref in refs:
      wanted[ref.key[0]][ref.key[1]] = ref
    for path in sorted(wanted):
      for index, serialized in _records(path):
        ref = wanted[path].get(index)
        if ref is None:
          continue
        encoded = _bytes_feature(tf.train.Example.FromString(serialized), K.image_encoded)
        yield ref, inference.decode_image(encoded, ref.where), encoded


def select(refs, wanted, what, key=lambda ref: ref.name):
  """The refs whose key (default: the name) is in `wanted`, in the order of `wanted`.

  ValueError naming `what` when a wanted key has no image or two images share a key.
  """
  by_key = {}
  for ref in refs:
    if key(ref) in by_key:
      raise ValueError(f'two images have the same name {key(ref)!r}: {by_key[key(ref)].where} '
                       f'and {ref.where}')
    by_key[key(ref)] = ref
  missing = [k for k in wanted if k not in by_key]
  if missing:
    shown = ', '.join(missing[:5]) + (', ...' if len(missing) > 5 else '')
    raise ValueError(f'{what}: {len(missing)} listed image(s) are not in the input: {shown}')
  return [by_key[k] for k in dict.fromkeys(wanted)]
