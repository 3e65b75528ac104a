"""Thin entry file: same as the console script `mtl_ssl_create_coco_tf_record` (see
mtl_ssl/data/converters/coco.py, or run it with --help)."""
from mtl_ssl.data.converters import coco

if __name__ == '__main__':
  coco.run()
