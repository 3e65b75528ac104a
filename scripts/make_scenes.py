r"""Generate the built-in scenes dataset and/or a preview (same as `mtl_ssl_make_scenes`).

  python scripts/make_scenes.py --output_dir=/tmp/scenes --layout=context --seed=0
  python scripts/make_scenes.py --preview=/tmp/scenes.png
"""
import sys

from mtl_ssl.data.scenes import cli

if __name__ == '__main__':
  sys.exit(cli.run())
