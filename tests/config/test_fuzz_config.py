"""The config loader on fuzzed pipeline.config files and --config_override texts (hypothesis).

Mutations of a valid config: an unknown field, a value of the wrong type or range, a deleted or
duplicated line, a cut, random characters, bytes that are not UTF-8. The loader must return the
configs or raise ConfigError naming the file (and line:column for a syntax error at the mutated
line); never another exception.
"""
import os
import sys

from hypothesis import HealthCheck, Phase, event, given, settings, strategies as st
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'training'))
import tiny_pipeline  # pylint: disable=wrong-import-position

from mtl_ssl.config import config_util  # pylint: disable=wrong-import-position
from mtl_ssl.config import validation  # pylint: disable=wrong-import-position
from mtl_ssl.config.errors import ConfigError  # pylint: disable=wrong-import-position

FUZZ_SETTINGS = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
TEXT = tiny_pipeline.PIPELINE % {'data': '/data', 'batch_size': 2, 'num_steps': 3,
                                 'fc': tiny_pipeline.FC_HYPERPARAMS}
LINES = TEXT.split('\n')
VALUE_LINES = [i for i, line in enumerate(LINES) if ': ' in line and '{' not in line]
VALUES = ['"text"', '1e999', '-1', '0', '99999999999999999999', '-2147483649', 'true', 'nan',
          'inf', '{', '}', '[1, 2]', 'FOO_ENUM', '', '0.5', "'unterminated", '1 2', '"\\x"']


@st.composite
def mutated_configs(draw):
  """(file bytes, 1-based line of the mutation or None, kind)."""
  lines = list(LINES)
  kind = draw(st.sampled_from(['unknown_field', 'wrong_value', 'delete_line', 'duplicate_line',
                               'cut', 'random_text', 'not_utf8']))
  line = None
  if kind == 'unknown_field':
    index = draw(st.integers(0, len(lines)))
    lines.insert(index, 'no_such_field_anywhere: 3')
    line = index + 1
  elif kind == 'wrong_value':
    index = draw(st.sampled_from(VALUE_LINES))
    key = lines[index].split(':', 1)[0]
    lines[index] = f'{key}: {draw(st.sampled_from(VALUES))}'
    line = index + 1
  elif kind == 'delete_line':
    del lines[draw(st.integers(0, len(lines) - 1))]
  elif kind == 'duplicate_line':
    index = draw(st.integers(0, len(lines) - 1))
    lines.insert(index, lines[index])
  text = '\n'.join(lines)
  if kind == 'cut':
    text = text[:draw(st.integers(0, len(text)))]
  elif kind == 'random_text':
    position = draw(st.integers(0, len(text)))
    text = text[:position] + draw(st.text(min_size=1, max_size=12)) + text[position:]
  data = text.encode('utf-8')
  if kind == 'not_utf8':
    position = draw(st.integers(0, len(data)))
    data = data[:position] + draw(st.sampled_from([b'\xff', b'\xc3\x28', b'\x80\x80'])) + \
        data[position:]
  return data, line, kind


@pytest.fixture(scope='module')
def config_path(tmp_path_factory):
  return str(tmp_path_factory.mktemp('fuzz_config') / 'pipeline.config')


def test_the_unmutated_config_is_valid(config_path):
  with open(config_path, 'w', encoding='utf-8') as f:
    f.write(TEXT)
  validation.load_and_validate(config_path, mode='train')


@FUZZ_SETTINGS
@given(case=mutated_configs())
def test_mutated_configs_load_or_fail_naming_file_and_line(config_path, case):
  data, line, kind = case
  with open(config_path, 'wb') as f:
    f.write(data)
  try:
    configs = validation.load_and_validate(config_path, mode='train')
  except ConfigError as error:
    event(f'{kind}: ConfigError')
    message = str(error)
    assert message.startswith(f'{config_path}'), message
    assert error.source == config_path
    if error.line is not None:
      assert 1 <= error.line <= data.count(b'\n') + 1, message
      assert message.startswith(f'{config_path}:{error.line}:'), message
    if kind == 'unknown_field':
      assert error.line == line and 'no_such_field_anywhere' in message, message
    if kind == 'wrong_value' and error.line is not None:  # (an unbalanced '{' shows one later)
      assert line <= error.line <= line + 1, message
    if kind == 'not_utf8':
      assert 'UTF-8' in message, message
    return
  event(f'{kind}: loaded')
  assert kind not in ('unknown_field', 'not_utf8'), kind
  assert configs['model'].faster_rcnn.num_classes > 0


_OVERRIDES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda key, value: f'train_config {{ {key}: {value} }}',
              st.sampled_from(['batch_size', 'num_steps', 'no_such_field', 'optimizer',
                               'gradient_clipping_by_norm']), st.sampled_from(VALUES)),
    st.sampled_from(['model { faster_rcnn { num_classes: 0 } }', 'model {', '}}}',
                     'model { ssd { } }', 'train_input_reader { }', 'eval_config { }']))


@FUZZ_SETTINGS
@given(override=_OVERRIDES)
def test_fuzzed_config_overrides_load_or_name_the_override(config_path, override):
  with open(config_path, 'w', encoding='utf-8') as f:
    f.write(TEXT)
  try:
    validation.load_and_validate(config_path, override, mode='train')
  except ConfigError as error:
    message = str(error)
    parse_error = message.startswith(f'{config_util.OVERRIDE_SOURCE}:')
    assert parse_error or message.startswith(config_path), message  # validation names the file
    if parse_error:
      assert error.line is not None and 1 <= error.line <= override.count('\n') + 1, message
