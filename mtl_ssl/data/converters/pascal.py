"""PASCAL VOC-layout folders (the VOC devkit, or your own) -> OD API TFRecords.

A data set folder holds `Annotations/<id>.xml` (VOC XML: filename, size, object name/bndbox/
difficult/truncated) and `JPEGImages/` (JPEG and PNG are copied; TIFF, BMP, GIF, WebP and
anything else Pillow reads is re-encoded as PNG), and optionally `ImageSets/Main/<set>.txt`
(one id per line). --data_dir is such a folder, or a VOCdevkit (or the folder that contains it)
with --year naming the data set folder in it: VOC2007, VOC2012, any other name, or 'merged'
(VOC2007 + VOC2012). Which ids: --set NAME reads ImageSets/Main/NAME.txt (any name); without
--set, ImageSets/Main/train.txt (the OD API default), or every Annotations/*.xml when there
is no ImageSets/Main. Boxes follow the OD API convention (pixel coordinate / image size);
difficult objects are kept with image/object/difficult=1 unless ignore_difficult_instances.
"""
import os
import sys
import xml.etree.ElementTree as ElementTree

from mtl_ssl.data import label_map_util
from mtl_ssl.data import tf_example_util
from mtl_ssl.data.converters import common

YEARS = ('VOC2007', 'VOC2012')
MERGED = 'merged'


def _is_dataset(path):
  return os.path.isdir(os.path.join(path, 'Annotations'))


def dataset_dirs(data_dir, year=None):
  """The data set folders to read: data_dir itself, or <VOCdevkit>/<year> (two for 'merged')."""
  if not os.path.isdir(data_dir):
    raise common.ConversionError(f'--data_dir {data_dir}: no such directory')
  if year is None and _is_dataset(data_dir):
    return [data_dir]
  nested = os.path.join(data_dir, 'VOCdevkit')
  devkit = nested if os.path.isdir(nested) else data_dir
  if year is None:
    if _is_dataset(os.path.join(devkit, 'VOC2007')):
      return [os.path.join(devkit, 'VOC2007')]  # the OD API's default --year
    found = sorted(name for name in os.listdir(devkit) if _is_dataset(os.path.join(devkit, name)))
    raise common.ConversionError(
        f'--data_dir {data_dir}: no Annotations/ folder in it' +
        (f'; pass --year, one of: {", ".join(found)}' if found else
         ' (expected Annotations/ + JPEGImages/, or a VOCdevkit with --year)'))
  dirs = []
  for name in (YEARS if year == MERGED else (year,)):
    path = os.path.join(devkit, name)
    if not _is_dataset(path):
      raise common.ConversionError(f'{path}: no Annotations/ folder (expected the {name} data set '
                                   'folder of a VOCdevkit under --data_dir)')
    dirs.append(path)
  return dirs


def _set_lists(main):
  """Set names of ImageSets/Main, without the VOC per-class lists (<class>_<set>.txt)."""
  if not os.path.isdir(main):
    return []
  names = {name[:-4] for name in os.listdir(main) if name.endswith('.txt')}
  per_class = {name for name in names if '_' in name and name.rsplit('_', 1)[1] in names}
  return sorted(names - per_class)


def _read_image_ids(year_dir, set_name):
  """(source, ids): from ImageSets/Main/<set>.txt (or the first column of aeroplane_<set>.txt),
  or every Annotations/*.xml when no set is given and there is no ImageSets/Main."""
  main = os.path.join(year_dir, 'ImageSets', 'Main')
  if set_name is None:
    if os.path.isfile(os.path.join(main, 'train.txt')):
      set_name = 'train'
    elif _set_lists(main):
      raise common.ConversionError(f'{main} has the image sets {", ".join(_set_lists(main))} but '
                                   'no train.txt: choose one with --set')
    else:
      annotations = os.path.join(year_dir, 'Annotations')
      ids = sorted(name[:-4] for name in os.listdir(annotations) if name.endswith('.xml'))
      if not ids:
        raise common.ConversionError(f'{annotations}: no .xml annotation files')
      return annotations, ids
  candidates = [os.path.join(main, set_name + '.txt'),
                os.path.join(main, 'aeroplane_' + set_name + '.txt')]
  for path in candidates:
    if os.path.isfile(path):
      with open(path, 'r', encoding='utf-8') as f:
        ids = [line.split()[0] for line in f if line.strip()]
      if not ids:
        raise common.ConversionError(f'{path}: lists no image id')
      return path, ids
  available = _set_lists(main)
  raise common.ConversionError(
      f'image set list not found: {candidates[0]} (nor {os.path.basename(candidates[1])})' +
      (f'; sets found: {", ".join(available)}' if available else ''))


class _ImageFiles:
  """File names of a JPEGImages folder by stem, to find '<id>.tif' when the XML says '<id>.jpg'."""

  def __init__(self, image_dir):
    self.image_dir = image_dir
    self._by_stem = None

  def find(self, filename, image_id):
    path = os.path.join(self.image_dir, filename)
    if os.path.isfile(path):
      return path, filename
    if self._by_stem is None:
      self._by_stem = {}
      names = os.listdir(self.image_dir) if os.path.isdir(self.image_dir) else []
      for name in sorted(names):
        self._by_stem.setdefault(os.path.splitext(name)[0], name)
    for stem in (image_id, os.path.splitext(os.path.basename(filename))[0]):
      if stem in self._by_stem:
        name = self._by_stem[stem]
        return os.path.join(self.image_dir, name), name
    return None, filename


def _to_int_flag(text):
  try:
    return int(float(text)) if text not in (None, '') else 0
  except (ValueError, OverflowError):  # 'abc', 'nan'; 'inf', '1e400'
    return 0


def _parse_objects(root, width, height, label_map_dict, ignore_difficult, summary, where):
  """Kept objects as parallel lists (+ 'unknown': how many had a class outside the label map);
  drops and clips are counted in the summary."""
  kept = {'boxes': [], 'ids': [], 'texts': [], 'difficult': [], 'truncated': [], 'area': [],
          'unknown': 0}
  for index, obj in enumerate(root.findall('object')):
    obj_where = f'{where} object #{index + 1}'
    name = (obj.findtext('name') or '').strip()
    label = label_map_dict.get(name, label_map_dict.get(name.lower()))
    if label is None:
      summary.drop_box('unknown_class', f'{obj_where} {name!r}')
      summary.unknown_classes[name or '<empty>'] += 1
      kept['unknown'] += 1
      continue
    difficult = _to_int_flag(obj.findtext('difficult'))
    if difficult and ignore_difficult:
      summary.drop_box('difficult_ignored', obj_where)
      continue
    bndbox = obj.find('bndbox')
    if bndbox is None:
      summary.drop_box('missing_bndbox', obj_where)
      continue
    try:
      xmin, ymin, xmax, ymax = (float(bndbox.findtext(k)) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
    except (TypeError, ValueError):
      summary.drop_box('bad_bndbox_value', obj_where)
      continue
    box, status = common.clean_box(xmin, ymin, xmax, ymax, width, height)
    if box is None:
      summary.drop_box(status, obj_where)
      continue
    if status == 'clipped':
      summary.note('box_clipped_to_image', obj_where)
    kept['boxes'].append(box)
    kept['ids'].append(label)
    kept['texts'].append(name)
    kept['difficult'].append(1 if difficult else 0)
    kept['truncated'].append(_to_int_flag(obj.findtext('truncated')))
    kept['area'].append((box[2] - box[0]) * height * (box[3] - box[1]) * width)
  return kept


def _example_for(year_dir, image_files, image_id, label_map_dict, options, summary):
  """tf.Example for one annotation file, or None (the reason is counted in the summary)."""
  xml_path = os.path.join(year_dir, 'Annotations', image_id + '.xml')
  if not os.path.isfile(xml_path):
    summary.skip_image('missing_annotation_file', xml_path)
    return None
  try:
    root = ElementTree.parse(xml_path).getroot()
  except ElementTree.ParseError as e:
    summary.skip_image('bad_annotation_xml', f'{xml_path} ({e})')
    return None
  filename = (root.findtext('filename') or '').strip() or image_id + '.jpg'
  image_path, filename = image_files.find(filename, image_id)
  if image_path is None:
    summary.skip_image('missing_image', os.path.join(image_files.image_dir, filename))
    return None
  with open(image_path, 'rb') as f:
    encoded = f.read()
  try:
    encoded, fmt, height, width, converted_from = common.prepare_image(encoded)
  except common.BadImageError as e:
    summary.skip_image(e.reason, f'{image_path} ({e})')
    return None
  if converted_from:
    summary.note(f'{converted_from}_images_re_encoded_as_png', image_path)
  xml_size = (_to_int_flag(root.findtext('size/height')), _to_int_flag(root.findtext('size/width')))
  if all(xml_size) and xml_size != (height, width):
    summary.note('xml_size_differs_from_image_used_image_size', xml_path)
  kept = _parse_objects(root, width, height, label_map_dict, options['ignore_difficult'],
                        summary, xml_path)
  if not common.keep_or_skip_empty(kept['boxes'], kept['unknown'],
                                   options['keep_unknown_class_images'], summary, xml_path):
    return None
  summary.boxes_written += len(kept['boxes'])
  if any(kept['difficult']):
    summary.note('difficult_boxes_kept', count=sum(kept['difficult']))
  return tf_example_util.make_tf_example(
      encoded, fmt, height, width, filename, filename, kept['boxes'], kept['ids'], kept['texts'],
      difficult=kept['difficult'], truncated=kept['truncated'], area=kept['area'])


def convert_pascal(data_dir, output_path, label_map_path, year=None, set_name=None,
                   num_shards=1, ignore_difficult_instances=False, show_progress=True,
                   keep_unknown_class_images=False):
  """Converts one image set of a VOC-layout folder (or of VOC2007 + VOC2012 for year='merged');
  returns the summary. See the module docstring for year and set_name."""
  try:
    label_map_dict = label_map_util.get_label_map_dict(label_map_path)
  except label_map_util.LabelMapError as e:
    raise common.ConversionError(str(e)) from e
  jobs, sources = [], []
  for year_dir in dataset_dirs(data_dir, year):
    source, ids = _read_image_ids(year_dir, set_name)
    sources.append(source)
    image_files = _ImageFiles(os.path.join(year_dir, 'JPEGImages'))
    jobs.extend((year_dir, image_files, image_id) for image_id in ids)
  common.check_output_path(output_path)
  name = f'{year or os.path.basename(os.path.normpath(data_dir))} {set_name or "(all)"}'
  summary = common.ConversionSummary(f'PASCAL {name} ({", ".join(sources)})')
  summary.label_map_path = label_map_path
  options = {'ignore_difficult': ignore_difficult_instances,
             'keep_unknown_class_images': keep_unknown_class_images}
  with tf_example_util.ShardedTFRecordWriter(output_path, num_shards) as writer:
    summary.output_paths = writer.paths
    for year_dir, image_files, image_id in common.progress(jobs, len(jobs), name, show_progress):
      summary.images_seen += 1
      example = _example_for(year_dir, image_files, image_id, label_map_dict, options, summary)
      if example is not None:
        writer.write(example)
        summary.images_written += 1
  return summary


def build_parser():
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog='mtl_ssl_create_pascal_tf_record', formatter_class=argparse.RawDescriptionHelpFormatter,
      description='Convert a PASCAL VOC-layout folder to OD API TFRecords.', epilog=r"""examples:
  mtl_ssl_create_pascal_tf_record --data_dir=my_data --set=train \
      --label_map_path=my_data/label_map.pbtxt --output_path=data/my_train.record
  mtl_ssl_create_pascal_tf_record --data_dir=/data/VOCdevkit --year=VOC2007 --set=trainval \
      --output_path=/data/pascal_trainval.record --num_shards=10

Exit code 0: written; 1: nothing usable (every image skipped or every box dropped, e.g. class
names missing from the label map; the files are removed); 2: bad paths or label map.""")
  parser.add_argument('--data_dir', required=True,
                      help='a folder with Annotations/ and JPEGImages/ (and optionally '
                      'ImageSets/Main/), or a VOCdevkit (or its parent) with --year')
  parser.add_argument('--year', default=None,
                      help='data set folder inside the VOCdevkit: VOC2007 (the default when '
                      '--data_dir has no Annotations/), VOC2012, any other name, or merged '
                      '(VOC2007 + VOC2012)')
  parser.add_argument('--set', dest='set_name', default=None,
                      help='image set: reads ImageSets/Main/<set>.txt, any name (default: '
                      'train.txt, or every Annotations/*.xml when there is no ImageSets/Main)')
  parser.add_argument('--output_path', required=True, help='output TFRecord path')
  parser.add_argument('--label_map_path', default=common.default_label_map('pascal'),
                      help='label map with your class names (default: the 20 PASCAL classes)')
  parser.add_argument('--ignore_difficult_instances', action='store_true')
  common.add_common_flags(parser)
  return parser


def main(argv=None):
  """Command line: flags named as in the OD API's create_pascal_tf_record.py; returns the code."""
  args = build_parser().parse_args(argv)
  return common.run_and_report(
      convert_pascal, args.data_dir, args.output_path, args.label_map_path, year=args.year,
      set_name=args.set_name, num_shards=args.num_shards,
      ignore_difficult_instances=args.ignore_difficult_instances,
      show_progress=not args.no_progress,
      keep_unknown_class_images=args.keep_unknown_class_images)


def run():
  """Console script `mtl_ssl_create_pascal_tf_record` (also `python -m` this module)."""
  sys.exit(main())


if __name__ == '__main__':
  run()
