"""Thin entry file: same as the console script (see mtl_ssl/cli/exporter_main_v2.py)."""
from mtl_ssl.cli import exporter_main_v2

if __name__ == '__main__':
  exporter_main_v2.run()
