"""Thin entry file: same as the console script (see mtl_ssl/cli/model_main_tf2.py)."""
from mtl_ssl.cli import model_main_tf2

if __name__ == '__main__':
  model_main_tf2.run()
