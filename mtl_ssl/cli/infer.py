r"""Detect objects in image files with an exported mtl-ssl SavedModel.

  mtl_ssl_infer --saved_model_dir=OUT/saved_model --images a.jpg b.png \
      --label_map_path=label_map.pbtxt --output_dir=detections --min_score=0.3
  mtl_ssl_infer --saved_model_dir=OUT/saved_model --image_dir=photos --output_dir=detections

Writes <output_dir>/detections.json ({"images": [{"image", "height", "width", "detections":
[{"class_id", "class_name", "score", "box_normalized", "box_pixels"}]}]}, boxes as
[ymin, xmin, ymax, xmax]) and one <image name>.png per image with the labelled boxes drawn.
"""
import json
import os

from mtl_ssl import cli


def build_parser():
  parser = cli.new_parser(__doc__)
  parser.add_argument('--saved_model_dir', required=True,
                      help='the saved_model directory written by exporter_main_v2')
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--images', nargs='+', help='image files')
  source.add_argument('--image_dir', help='a directory of images (jpg, png, bmp, gif)')
  parser.add_argument('--label_map_path', default='',
                      help='label map for class names (default: the class ids)')
  parser.add_argument('--output_dir', required=True, help='where JSON and PNGs are written')
  parser.add_argument('--min_score', type=float, default=0.3,
                      help='detections below this score are left out')
  return parser


def _unique_png_names(paths):
  names, used = [], set()
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    name, k = f'{stem}.png', 1
    while name in used:
      name, k = f'{stem}_{k}.png', k + 1
    used.add(name)
    names.append(name)
  return names


def main(argv=None):
  args = build_parser().parse_args(argv)
  cli.init_logging()
  from absl import logging  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from mtl_ssl.data import label_map_util  # pylint: disable=import-outside-toplevel
  from mtl_ssl.export import inference  # pylint: disable=import-outside-toplevel

  paths = args.images or inference.list_images(args.image_dir)
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise SystemExit(f'error: --images: no such file(s): {", ".join(missing)}')
  category_index = (label_map_util.create_category_index_from_labelmap(args.label_map_path)
                    if args.label_map_path else {})
  detector = inference.SavedModelDetector(args.saved_model_dir)
  os.makedirs(args.output_dir, exist_ok=True)
  records = []
  for path, png_name in zip(paths, _unique_png_names(paths)):
    image, outputs = detector.detect_image_file(path)
    record = inference.detections_record(path, image, outputs, category_index, args.min_score)
    record['picture'] = png_name
    Image.fromarray(inference.draw_record(image, record, category_index)).save(
        os.path.join(args.output_dir, png_name))
    records.append(record)
    logging.info('%s: %d detections >= %.2f', path, len(record['detections']), args.min_score)
  with open(os.path.join(args.output_dir, 'detections.json'), 'w', encoding='utf-8') as f:
    json.dump({'saved_model_dir': args.saved_model_dir, 'min_score': args.min_score,
               'images': records}, f, indent=2)
  return 0


def run():
  """Console script `mtl_ssl_infer`."""
  cli.run_main(main)


if __name__ == '__main__':
  run()
