"""Every command as a user meets it: --help examples that parse, one-line errors (no traceback)
for user mistakes, and the repository files around the README's commands."""
import os
import re
import shlex
import subprocess
import sys

import pytest

from mtl_ssl.cli import demo
from mtl_ssl.cli import exporter_main_v2
from mtl_ssl.cli import infer
from mtl_ssl.cli import model_main_tf2
from mtl_ssl.data.converters import coco
from mtl_ssl.data.converters import pascal
from mtl_ssl.data.scenes import cli as scenes_cli

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))

PARSERS = {
    'model_main_tf2': model_main_tf2.build_parser,
    'exporter_main_v2': exporter_main_v2.build_parser,
    'mtl_ssl_infer': infer.build_parser,
    'mtl_ssl_demo': demo.build_parser,
    'mtl_ssl_make_scenes': scenes_cli._parser,  # pylint: disable=protected-access
    'mtl_ssl_create_pascal_tf_record': pascal.build_parser,
    'mtl_ssl_create_coco_tf_record': coco.build_parser,
}


def help_examples(command, help_text):
  """The example command lines of a --help text, continuation lines joined, [optional] parts
  and # comments dropped."""
  joined = re.sub(r'\\\n\s*', ' ', help_text)
  examples = []
  for line in joined.splitlines():
    words = line.strip().split('#')[0]
    if words.startswith(command + ' '):
      while re.search(r'\[[^\[\]]*\]', words):  # innermost [optional] parts first
        words = re.sub(r'\[[^\[\]]*\]', '', words)
      examples.append(shlex.split(words)[1:])
  return examples


@pytest.mark.parametrize('command', sorted(PARSERS))
def test_help_examples_are_whole_command_lines_that_parse(command):
  parser = PARSERS[command]()
  text = parser.format_help()
  examples = help_examples(command, text)
  assert examples, f'{command} --help shows no example'
  for argv in examples:
    assert all(not arg.startswith('\\') for arg in argv), argv
    parser.parse_args(argv)  # SystemExit (a test failure) on a broken example
  # a backslash in the help is always a line continuation (a docstring that is not raw
  # would have joined the lines)
  assert all(line.endswith('\\') for line in text.splitlines() if '\\' in line), text


def _run_command(run_fn, argv, monkeypatch, capsys):
  monkeypatch.setattr('sys.argv', ['command'] + argv)
  with pytest.raises(SystemExit) as info:
    run_fn()
  err = capsys.readouterr().err
  assert 'Traceback' not in err
  return info.value.code, err


def test_exporter_and_infer_report_bad_paths_in_one_line(tmp_path, monkeypatch, capsys):
  config = os.path.join(REPO, 'pipeline_configs', 'scenes',
                        'faster_rcnn_mobilenet_v1_scenes_mtl.config')
  code, err = _run_command(exporter_main_v2.run, [
      f'--pipeline_config_path={config}', f'--trained_checkpoint_dir={tmp_path / "none"}',
      f'--output_directory={tmp_path / "out"}'], monkeypatch, capsys)
  assert code == 1 and err.startswith('error:') and str(tmp_path / 'none') in err
  code, err = _run_command(exporter_main_v2.run, [
      f'--pipeline_config_path={tmp_path / "no.config"}', '--trained_checkpoint_dir=x',
      '--output_directory=y'], monkeypatch, capsys)
  assert code == 1 and 'pipeline config file not found' in err
  code, err = _run_command(infer.run, [
      f'--saved_model_dir={tmp_path / "none"}', f'--images={__file__}',
      f'--output_dir={tmp_path / "d"}'], monkeypatch, capsys)
  assert code == 1 and err.startswith('error:') and len(err.strip().splitlines()) == 1


def test_demo_workdir_that_is_a_file(tmp_path, capsys):
  workdir = tmp_path / 'file'
  workdir.write_text('x')
  assert demo.main(['--workdir', str(workdir)]) == 2
  assert 'exists and is not a directory' in capsys.readouterr().err


def test_demo_tensorboard_hint_uses_this_environment():
  command = demo.tensorboard_command('/w/mtl_ssl_demo')
  local = os.path.join(os.path.dirname(sys.executable), 'tensorboard')
  expected = local if os.path.isfile(local) else 'tensorboard'
  assert command == f'{expected} --logdir /w/mtl_ssl_demo'


@pytest.mark.parametrize('make_argv, message', [
    (lambda tmp: ['--output_dir', str(tmp / 'file')], 'exists and is not a directory'),
    (lambda tmp: ['--preview', str(tmp)], 'is a directory'),
    (lambda tmp: ['--preview', str(tmp / 'file' / 'p.png')], 'is not a directory'),
    (lambda tmp: ['--preview', str(tmp / 'p.png'), '--min_objects', '9'], 'min_objects'),
])
def test_make_scenes_user_errors(tmp_path, capsys, make_argv, message):
  (tmp_path / 'file').write_text('x')
  assert scenes_cli.run(make_argv(tmp_path)) == 2
  err = capsys.readouterr().err
  assert err.startswith('error:') and message in err


def test_make_scenes_creates_a_missing_preview_folder(tmp_path):
  preview = tmp_path / 'new' / 'folder' / 'scenes.png'
  assert scenes_cli.run(['--preview', str(preview), '--preview_count', '1']) == 0
  assert preview.is_file()


def _readme_command(title_words):
  with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
    text = f.read()
  blocks = re.findall(r'(?s)([^\n]*\n)\n```\n(.*?)\n```', text)
  return [block for before, block in blocks if title_words in before]


def test_readme_test_command_is_what_ci_runs_in_its_own_venv():
  (install_demo,) = _readme_command('Install and run the demo')
  (install_test,) = _readme_command('Install and run the tests')
  assert install_demo.startswith('python3 -m venv .venv &&')
  assert install_test.startswith('python3 -m venv .venv-test &&')
  assert ' .venv/' not in install_test  # never the demo's venv
  with open(os.path.join(REPO, '.ci', 'run'), encoding='utf-8') as f:
    ci_lines = [line for line in f.read().splitlines() if line and not line.startswith('#')]
  assert ci_lines[-1] == install_test
  with open(os.path.join(REPO, 'Makefile'), encoding='utf-8') as f:
    makefile = f.read()
  variables = {'$(VENV)': '.venv', '$(TEST_VENV)': '.venv-test'}
  recipes = dict(re.findall(r'(?m)^([\w-]+):\n\t(.*)$', makefile))
  expand = lambda recipe: re.sub(r'\$\(\w+\)', lambda m: variables[m.group(0)], recipe)
  assert expand(recipes['install-test']) + ' && ' + expand(recipes['test']) == install_test
  assert install_demo == expand(recipes['install']) + ' && ' + expand(recipes['demo'])


def test_generated_folders_are_ignored_but_not_the_sources():
  if subprocess.run(['git', '-C', REPO, 'rev-parse'], capture_output=True,
                    check=False).returncode != 0:
    pytest.skip('not a git checkout')
  paths = ['mtl_ssl_demo/report.json', 'data/scenes/scenes_train.record', 'runs/x/ckpt-1.index',
           'exported/x/saved_model/saved_model.pb', '.venv-test/bin/python',
           'mtl_ssl/data/inputs.py', 'mtl_ssl/data/converters/pascal.py']
  done = subprocess.run(['git', '-C', REPO, 'check-ignore', '--no-index', *paths],
                        capture_output=True, text=True, check=False)
  ignored = set(done.stdout.split())
  assert ignored == set(paths[:5])


def test_shipped_scenes_configs_have_no_to_do_comments():
  folder = os.path.join(REPO, 'pipeline_configs', 'scenes')
  for name in os.listdir(folder):
    with open(os.path.join(folder, name), encoding='utf-8') as f:
      assert 'to be tuned' not in f.read(), name
