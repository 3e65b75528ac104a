"""Thin entry file: same as the console script `mtl_ssl_create_pascal_tf_record` (see
mtl_ssl/data/converters/pascal.py, or run it with --help)."""
from mtl_ssl.data.converters import pascal

if __name__ == '__main__':
  pascal.run()
