"""Thin entry file: same as the console script (see mtl_ssl/cli/infer.py)."""
from mtl_ssl.cli import infer

if __name__ == '__main__':
  infer.run()
