"""PASCAL VOC devkit (VOC2007 / VOC2012 / both) -> OD API TFRecords.

Layout: `<data_dir>/VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main}` (data_dir may also be
the VOCdevkit folder itself). Boxes follow the OD API convention (pixel coordinate / image size);
difficult objects are kept with image/object/difficult=1 unless ignore_difficult_instances.
"""
import os
import xml.etree.ElementTree as ElementTree

from mtl_ssl.data import label_map_util
from mtl_ssl.data import tf_example_util
from mtl_ssl.data.converters import common

YEARS = ('VOC2007', 'VOC2012')
SETS = ('train', 'val', 'trainval', 'test')


def _devkit_dir(data_dir):
  if not os.path.isdir(data_dir):
    raise common.ConversionError(f'--data_dir {data_dir}: no such directory')
  nested = os.path.join(data_dir, 'VOCdevkit')
  return nested if os.path.isdir(nested) else data_dir


def _read_image_ids(year_dir, set_name):
  """Ids from ImageSets/Main/<set>.txt (or the first column of aeroplane_<set>.txt)."""
  main = os.path.join(year_dir, 'ImageSets', 'Main')
  candidates = [os.path.join(main, set_name + '.txt'),
                os.path.join(main, 'aeroplane_' + set_name + '.txt')]
  for path in candidates:
    if os.path.isfile(path):
      with open(path, 'r', encoding='utf-8') as f:
        return path, [line.split()[0] for line in f if line.strip()]
  raise common.ConversionError(
      f'image set list not found: {candidates[0]} (nor {os.path.basename(candidates[1])})')


def _to_int_flag(text):
  try:
    return int(float(text)) if text not in (None, '') else 0
  except (ValueError, OverflowError):  # 'abc', 'nan'; 'inf', '1e400'
    return 0


def _parse_objects(root, width, height, label_map_dict, ignore_difficult, summary, where):
  """Kept objects as parallel lists; drops and clips are counted in the summary."""
  kept = {'boxes': [], 'ids': [], 'texts': [], 'difficult': [], 'truncated': [], 'area': []}
  for index, obj in enumerate(root.findall('object')):
    obj_where = f'{where} object #{index + 1}'
    name = (obj.findtext('name') or '').strip()
    label = label_map_dict.get(name, label_map_dict.get(name.lower()))
    if label is None:
      summary.drop_box('unknown_class', f'{obj_where} {name!r}')
      summary.unknown_classes[name or '<empty>'] += 1
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


def _example_for(year_dir, image_id, label_map_dict, ignore_difficult, summary):
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
  image_path = os.path.join(year_dir, 'JPEGImages', filename)
  if not os.path.isfile(image_path):
    fallback = os.path.join(year_dir, 'JPEGImages', image_id + '.jpg')
    if not os.path.isfile(fallback):
      summary.skip_image('missing_image', image_path)
      return None
    image_path, filename = fallback, image_id + '.jpg'
  with open(image_path, 'rb') as f:
    encoded = f.read()
  try:
    fmt, height, width = common.inspect_image(encoded)
  except common.BadImageError as e:
    summary.skip_image(e.reason, f'{image_path} ({e})')
    return None
  xml_size = (_to_int_flag(root.findtext('size/height')), _to_int_flag(root.findtext('size/width')))
  if all(xml_size) and xml_size != (height, width):
    summary.note('xml_size_differs_from_image_used_image_size', xml_path)
  kept = _parse_objects(root, width, height, label_map_dict, ignore_difficult, summary, xml_path)
  if not kept['boxes']:
    summary.note('images_without_boxes_kept', xml_path)
  summary.boxes_written += len(kept['boxes'])
  if any(kept['difficult']):
    summary.note('difficult_boxes_kept', count=sum(kept['difficult']))
  return tf_example_util.make_tf_example(
      encoded, fmt, height, width, filename, filename, kept['boxes'], kept['ids'], kept['texts'],
      difficult=kept['difficult'], truncated=kept['truncated'], area=kept['area'])


def convert_pascal(data_dir, output_path, label_map_path, year='VOC2007', set_name='train',
                   num_shards=1, ignore_difficult_instances=False, show_progress=True):
  """Converts one image set of VOC2007, VOC2012 or both ('merged'); returns the summary."""
  if year not in YEARS + ('merged',):
    raise common.ConversionError(f'--year must be one of {YEARS + ("merged",)}, got {year!r}')
  if set_name not in SETS:
    raise common.ConversionError(f'--set must be one of {SETS}, got {set_name!r}')
  try:
    label_map_dict = label_map_util.get_label_map_dict(label_map_path)
  except label_map_util.LabelMapError as e:
    raise common.ConversionError(str(e)) from e
  devkit = _devkit_dir(data_dir)
  jobs = []
  for one_year in (YEARS if year == 'merged' else (year,)):
    year_dir = os.path.join(devkit, one_year)
    if not os.path.isdir(year_dir):
      raise common.ConversionError(f'{year_dir}: no such directory (expected the {one_year} '
                                   'folder of a VOCdevkit under --data_dir)')
    _, ids = _read_image_ids(year_dir, set_name)
    jobs.extend((year_dir, image_id) for image_id in ids)
  summary = common.ConversionSummary(f'PASCAL {year} {set_name}')
  with tf_example_util.ShardedTFRecordWriter(output_path, num_shards) as writer:
    summary.output_paths = writer.paths
    for year_dir, image_id in common.progress(jobs, len(jobs), f'{year} {set_name}',
                                              show_progress):
      summary.images_seen += 1
      example = _example_for(year_dir, image_id, label_map_dict, ignore_difficult_instances,
                             summary)
      if example is not None:
        writer.write(example)
        summary.images_written += 1
  return summary


def main(argv=None):
  """Command line: flags named as in the OD API's create_pascal_tf_record.py."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description='Convert PASCAL VOC to OD API TFRecords.')
  parser.add_argument('--data_dir', required=True,
                      help='VOCdevkit folder (or the folder that contains VOCdevkit)')
  parser.add_argument('--year', default='VOC2007', choices=YEARS + ('merged',))
  parser.add_argument('--set', dest='set_name', default='train', choices=SETS)
  parser.add_argument('--output_path', required=True, help='output TFRecord path')
  parser.add_argument('--label_map_path', default=common.default_label_map('pascal'))
  parser.add_argument('--num_shards', type=int, default=1)
  parser.add_argument('--ignore_difficult_instances', action='store_true')
  parser.add_argument('--no_progress', action='store_true', help='hide the progress bar')
  args = parser.parse_args(argv)
  return common.run_and_report(
      convert_pascal, args.data_dir, args.output_path, args.label_map_path, year=args.year,
      set_name=args.set_name, num_shards=args.num_shards,
      ignore_difficult_instances=args.ignore_difficult_instances,
      show_progress=not args.no_progress)
