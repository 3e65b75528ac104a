"""MS COCO detection json (instances_*.json) + image folder -> OD API TFRecords.

COCO category ids are kept as label ids (use mscoco_label_map.pbtxt), bbox [x, y, w, h] in pixels
becomes normalized [ymin, xmin, ymax, xmax] clipped to the image, iscrowd is kept as
image/object/is_crowd. The json is indexed with pycocotools.
"""
import contextlib
import io
import json
import numbers
import os
import sys

from pycocotools.coco import COCO

from mtl_ssl.data import label_map_util
from mtl_ssl.data import tf_example_util
from mtl_ssl.data.converters import common


def _load_json(annotations_file):
  if not os.path.isfile(annotations_file):
    raise common.ConversionError(f'--annotations_file {annotations_file}: no such file')
  try:
    with open(annotations_file, 'r', encoding='utf-8') as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise common.ConversionError(
        f'{annotations_file}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})') from e
  except (OSError, UnicodeDecodeError) as e:
    raise common.ConversionError(f'{annotations_file}: cannot read ({e})') from e
  if not isinstance(data, dict) or not isinstance(data.get('images'), list):
    raise common.ConversionError(f'{annotations_file}: no "images" list; is this a COCO '
                                 'instances json?')
  return data


def _hashable(value):
  """JSON lists and objects cannot be ids (they would crash the id lookups)."""
  return not isinstance(value, (list, dict))


def _valid_images(data, summary, annotations_file):
  images = []
  for index, image in enumerate(data['images']):
    if (not isinstance(image, dict) or 'id' not in image or not _hashable(image['id']) or
        not isinstance(image.get('file_name'), str)):
      summary.images_seen += 1
      summary.skip_image('image_entry_missing_id_or_file_name',
                         f'{annotations_file} images[{index}]')
      continue
    images.append(image)
  return images


def _valid_annotations(data, image_ids, summary, annotations_file):
  annotations = []
  for index, ann in enumerate(data.get('annotations') or []):
    where = f'{annotations_file} annotations[{index}]'
    if not isinstance(ann, dict) or 'image_id' not in ann or 'category_id' not in ann:
      summary.drop_box('annotation_missing_image_id_or_category_id', where)
    elif not _hashable(ann['image_id']) or not _hashable(ann['category_id']):
      summary.drop_box('annotation_with_list_or_object_as_id', where)
    elif ann['image_id'] not in image_ids:
      summary.drop_box('annotation_for_unknown_image', where)
    else:
      ann = dict(ann)
      ann.setdefault('id', f'index{index}')
      annotations.append(ann)
  return annotations


def _build_index(data, images, annotations):
  coco = COCO()
  coco.dataset = {'images': images, 'annotations': annotations,
                  'categories': data.get('categories') or []}
  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
    coco.createIndex()
  return coco


def _bbox_numbers(bbox):
  if (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and
      all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in bbox)):
    return [float(v) for v in bbox]
  return None


def _category_names(data, label_map_path, annotations_file):
  """{category id: name}: from the label map when given, else from the json categories."""
  if label_map_path:
    try:
      categories = label_map_util.create_categories_from_labelmap(label_map_path)
    except label_map_util.LabelMapError as e:
      raise common.ConversionError(str(e)) from e
    return {c['id']: c['name'] for c in categories}
  categories = data.get('categories')
  if not isinstance(categories, list) or not categories:
    raise common.ConversionError(f'{annotations_file}: no "categories" list (needed for class '
                                 'names when --label_map_path is not given)')
  names = {}
  for index, category in enumerate(categories):
    if not isinstance(category, dict) or 'id' not in category or 'name' not in category:
      raise common.ConversionError(f'{annotations_file}: categories[{index}] needs "id" and "name"')
    names[int(category['id'])] = str(category['name'])
  return names


def _example_for(coco, image, image_dir, names, summary, keep_unknown_class_images=False):
  where = image['file_name']
  image_path = os.path.join(image_dir, image['file_name'])
  if not os.path.isfile(image_path):
    summary.skip_image('missing_image', image_path)
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
  if (image.get('height'), image.get('width')) not in ((None, None), (height, width)):
    summary.note('json_size_differs_from_image_used_image_size', where)
  boxes, ids, texts, crowd, areas = [], [], [], [], []
  unknown = 0
  for ann in coco.imgToAnns.get(image['id'], []):
    ann_where = f'{where} annotation {ann["id"]}'
    category = ann['category_id']
    if category not in names:
      summary.drop_box('unknown_category', ann_where)
      summary.unknown_classes[category] += 1
      unknown += 1
      continue
    bbox = _bbox_numbers(ann.get('bbox'))
    if bbox is None:
      summary.drop_box('bad_bbox_value', ann_where)
      continue
    x, y, w, h = bbox
    box, status = common.clean_box(x, y, x + w, y + h, width, height)
    if box is None:
      summary.drop_box(status, ann_where)
      continue
    if status == 'clipped':
      summary.note('box_clipped_to_image', ann_where)
    is_crowd = 1 if ann.get('iscrowd', 0) else 0
    boxes.append(box)
    ids.append(int(category))
    texts.append(names[category])
    crowd.append(is_crowd)
    clipped_area = (box[2] - box[0]) * height * (box[3] - box[1]) * width
    area = ann.get('area')
    areas.append(float(area) if isinstance(area, numbers.Real) else clipped_area)
  if not common.keep_or_skip_empty(boxes, unknown, keep_unknown_class_images, summary, where):
    return None
  if any(crowd):
    summary.note('crowd_boxes_kept', count=sum(crowd))
  summary.boxes_written += len(boxes)
  return tf_example_util.make_tf_example(
      encoded, fmt, height, width, image['file_name'], str(image['id']), boxes, ids, texts,
      is_crowd=crowd, area=areas)


def convert_coco(image_dir, annotations_file, output_path, num_shards=1, label_map_path=None,
                 show_progress=True, keep_unknown_class_images=False):
  """Converts every image listed in the json (sorted by id); returns the summary."""
  if not os.path.isdir(image_dir):
    raise common.ConversionError(f'--image_dir {image_dir}: no such directory')
  data = _load_json(annotations_file)
  names = _category_names(data, label_map_path, annotations_file)
  common.check_output_path(output_path)
  summary = common.ConversionSummary(f'COCO {os.path.basename(annotations_file)}')
  summary.label_map_path = label_map_path
  if 'annotations' not in data:
    summary.note('json_has_no_annotations_key (image info only)', annotations_file)
  images = _valid_images(data, summary, annotations_file)
  ids = [image['id'] for image in images]
  if len(set(ids)) != len(ids):
    raise common.ConversionError(f'{annotations_file}: image ids are not unique')
  annotations = _valid_annotations(data, set(ids), summary, annotations_file)
  coco = _build_index(data, images, annotations)
  images.sort(key=lambda image: (str(type(image['id'])), image['id']))
  with tf_example_util.ShardedTFRecordWriter(output_path, num_shards) as writer:
    summary.output_paths = writer.paths
    for image in common.progress(images, len(images), 'COCO', show_progress):
      summary.images_seen += 1
      example = _example_for(coco, image, image_dir, names, summary, keep_unknown_class_images)
      if example is not None:
        writer.write(example)
        summary.images_written += 1
  return summary


def build_parser():
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog='mtl_ssl_create_coco_tf_record', formatter_class=argparse.RawDescriptionHelpFormatter,
      description='Convert a COCO detection json + image folder to OD API TFRecords.',
      epilog=r"""examples:
  mtl_ssl_create_coco_tf_record --image_dir=my_coco/images \
      --annotations_file=my_coco/train.json --output_path=data/my_train.record
  mtl_ssl_create_coco_tf_record --image_dir=/data/coco/val2017 \
      --annotations_file=/data/coco/annotations/instances_val2017.json \
      --output_path=/data/coco_val.record --num_shards=10

Exit code 0: written; 1: nothing usable (every image skipped or every box dropped; the files
are removed); 2: bad paths, json or label map.""")
  parser.add_argument('--image_dir', required=True, help='folder with the json\'s file_names')
  parser.add_argument('--annotations_file', required=True, help='instances_*.json')
  parser.add_argument('--output_path', required=True, help='output TFRecord path')
  parser.add_argument('--label_map_path', default=None,
                      help='optional: keep only categories in this label map, names from it '
                      '(default: every category of the json, with its id and name)')
  common.add_common_flags(parser)
  return parser


def main(argv=None):
  """Command line: flags named as in the OD API's create_coco_tf_record.py (one json per run)."""
  args = build_parser().parse_args(argv)
  return common.run_and_report(
      convert_coco, args.image_dir, args.annotations_file, args.output_path,
      num_shards=args.num_shards, label_map_path=args.label_map_path,
      show_progress=not args.no_progress,
      keep_unknown_class_images=args.keep_unknown_class_images)


def run():
  """Console script `mtl_ssl_create_coco_tf_record` (also `python -m` this module)."""
  sys.exit(main())


if __name__ == '__main__':
  run()
