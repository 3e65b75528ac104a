"""Command-line entry points (thin: flags -> library calls).

Importing this package quiets TensorFlow's C++ logging (TF_CPP_MIN_LOG_LEVEL=3) unless the
variable is already set; it must happen before TensorFlow is imported.
"""
import argparse
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

_TRUE = ('1', 'true', 't', 'yes', 'y')
_FALSE = ('0', 'false', 'f', 'no', 'n')


def _to_bool(text):
  lowered = str(text).lower()
  if lowered in _TRUE:
    return True
  if lowered in _FALSE:
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def add_bool_flag(parser, name, default, help_text):
  """absl-style boolean flag: --name, --name=true|false, --noname."""
  parser.add_argument(f'--{name}', type=_to_bool, nargs='?', const=True, default=default,
                      help=f'{help_text} (default {default})')
  parser.add_argument(f'--no{name}', dest=name, action='store_false', help=argparse.SUPPRESS)


def new_parser(description):
  """ArgumentParser that also accepts absl's --alsologtostderr / --logtostderr (no-ops: logs
  always go to stderr)."""
  parser = argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--alsologtostderr', nargs='?', const=True, help=argparse.SUPPRESS)
  parser.add_argument('--logtostderr', nargs='?', const=True, help=argparse.SUPPRESS)
  return parser


def init_logging():
  """INFO-level absl logging to stderr (what the OD API binaries print)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from absl import logging  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS.is_parsed():  # no absl app here: avoids "logging before flag parsing"
    flags.FLAGS.mark_as_parsed()
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  logging.set_stderrthreshold(logging.INFO)


def read_config_override(value):
  """--config_override is text proto, or @path to read it from a file."""
  if value and value.startswith('@'):
    with open(value[1:], 'r', encoding='utf-8') as f:
      return f.read()
  return value


def user_error_types():
  """Exceptions that mean bad input, not a bug: ValueError (bad flag value, config, data or
  checkpoint; its message names the culprit), OSError (missing, unwritable or wrong-kind paths)
  and TensorFlow's file errors when TensorFlow is loaded."""
  import sys  # pylint: disable=import-outside-toplevel
  types = (ValueError, OSError)
  tf = sys.modules.get('tensorflow')
  errors = getattr(tf, 'errors', None)
  if errors is not None:
    types += (errors.NotFoundError, errors.PermissionDeniedError, errors.FailedPreconditionError,
              errors.InvalidArgumentError, errors.DataLossError, errors.AlreadyExistsError)
  return types


def error_text(error):
  """The message for the user; of a TensorFlow error (which carries a long op trace) only the
  first line."""
  if hasattr(error, 'op') and hasattr(error, 'message'):
    lines = str(error.message).strip().splitlines()
    return lines[0] if lines else type(error).__name__
  return str(error) or type(error).__name__


def run_main(main):
  """Console-script wrapper: exit code of main(); user errors (user_error_types) are printed as
  'error: ...' instead of a traceback (exit 1); Ctrl-C exits 130 without one."""
  import sys  # pylint: disable=import-outside-toplevel
  try:
    code = main()
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    code = 130
  except Exception as error:  # pylint: disable=broad-except
    if not isinstance(error, user_error_types()):
      raise
    print(f'error: {error_text(error)}', file=sys.stderr)
    code = 1
  sys.exit(code)
