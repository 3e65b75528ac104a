"""mtl_ssl_make_scenes: write the built-in scenes dataset and/or a preview picture.

  mtl_ssl_make_scenes --output_dir /tmp/scenes --num_train_images 512 --layout context
  mtl_ssl_make_scenes --preview scenes.png --layout random --seed 3
"""
import argparse
import dataclasses
import os
import sys

from mtl_ssl.data.scenes import generator as generator_lib
from mtl_ssl.data.scenes import layouts
from mtl_ssl.data.scenes import preview


def _parser():
  defaults = generator_lib.SceneConfig()
  parser = argparse.ArgumentParser(
      prog='mtl_ssl_make_scenes', formatter_class=argparse.RawDescriptionHelpFormatter,
      description='Generate the built-in scenes detection data (Fashion-MNIST items pasted on '
      'real photos) as OD API TFRecords, and/or a preview PNG.',
      epilog='examples:\n' + '\n'.join(__doc__.strip().splitlines()[2:]))
  parser.add_argument('--output_dir', help='writes scenes_train.record, scenes_test.record, '
                      'scenes_label_map.pbtxt and scenes_info.json here')
  parser.add_argument('--preview', metavar='PNG', help='write a picture of the first scenes '
                      'with their boxes and class names')
  parser.add_argument('--preview_count', type=int, default=6)
  parser.add_argument('--preview_split', default='train', choices=generator_lib.SPLITS)
  parser.add_argument('--image_size', type=int, help='sets both --height and --width')
  parser.add_argument('--height', type=int, default=defaults.height)
  parser.add_argument('--width', type=int, default=defaults.width)
  parser.add_argument('--num_train_images', type=int, default=defaults.num_train_images)
  parser.add_argument('--num_test_images', type=int, default=defaults.num_test_images)
  parser.add_argument('--min_objects', type=int, default=defaults.min_objects)
  parser.add_argument('--max_objects', type=int, default=defaults.max_objects)
  parser.add_argument('--min_object_size', type=int, default=defaults.min_object_size)
  parser.add_argument('--max_object_size', type=int, default=defaults.max_object_size)
  parser.add_argument('--layout', default=defaults.layout, choices=layouts.LAYOUTS)
  parser.add_argument('--seed', type=int, default=defaults.seed)
  parser.add_argument('--image_format', default=defaults.image_format,
                      choices=generator_lib.FORMATS)
  parser.add_argument('--jpeg_quality', type=int, default=defaults.jpeg_quality)
  parser.add_argument('--num_shards', type=int, default=defaults.num_shards)
  parser.add_argument('--objects', default=defaults.objects, choices=('auto', 'subset', 'full'),
                      help='Fashion-MNIST items: the full set if installed (auto), the shipped '
                      'subset (reproducible everywhere), or the full set (error if missing)')
  parser.add_argument('--no_progress', action='store_true', help='hide the progress bar')
  return parser


def config_from_args(args):
  values = {f.name: getattr(args, f.name) for f in dataclasses.fields(generator_lib.SceneConfig)}
  if args.image_size:
    values['height'] = values['width'] = args.image_size
  return generator_lib.SceneConfig(**values)


def _check_paths(args):
  """Clear messages for output paths that cannot work, before any scene is made."""
  if args.output_dir:
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
      raise ValueError(f'--output_dir {args.output_dir}: exists and is not a directory')
  if args.preview:
    if os.path.isdir(args.preview):
      raise ValueError(f'--preview {args.preview}: is a directory (give a .png file name)')
    folder = os.path.dirname(os.path.abspath(args.preview))
    if os.path.exists(folder) and not os.path.isdir(folder):
      raise ValueError(f'--preview {args.preview}: {folder} is not a directory')


def run(argv=None):
  """Entry point; returns the exit code (0 ok, 2 bad options, missing inputs or unwritable
  outputs: a one-line error, no traceback)."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  parser = _parser()
  args = parser.parse_args(argv)
  if not args.output_dir and not args.preview:
    parser.error('give --output_dir and/or --preview')
  try:
    _check_paths(args)
    config = config_from_args(args)
    generator = generator_lib.SceneGenerator(config)
    if args.preview:
      os.makedirs(os.path.dirname(os.path.abspath(args.preview)), exist_ok=True)
      preview.write_preview(generator, args.preview, args.preview_split, args.preview_count)
      print(f'preview of {args.preview_count} {args.preview_split} scenes: {args.preview}')
    if args.output_dir:
      info = generator_lib.write_dataset(config, args.output_dir,
                                         show_progress=not args.no_progress, generator=generator)
      for split, split_info in info['splits'].items():
        print(f'{split}: {split_info["images"]} images, {split_info["boxes"]} boxes -> '
              + ', '.join(split_info['paths']))
      print(f'label map: {info["label_map_path"]}  (objects: {info["objects"]}, layout '
            f'{config.layout}, seed {config.seed}, {info["seconds"]} s)')
  except (ValueError, OSError, ImportError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


def main():
  sys.exit(run())


if __name__ == '__main__':
  main()
