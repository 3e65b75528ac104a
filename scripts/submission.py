"""Thin entry file: same as the console script (see mtl_ssl/cli/submission.py)."""
from mtl_ssl.cli import submission

if __name__ == '__main__':
  submission.run()
