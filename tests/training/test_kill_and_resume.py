"""The short version of scripts/kill_and_resume.py: 2 SIGKILLs of a real model_main_tf2 (one
while a checkpoint is being written), then a run to the end and the harness's checks (without
evaluation, to keep it short). The full experiment (>= 20 kills, with evaluation and metrics
JSON files) and its results are in docs/reliability.md."""
import importlib.util
import io
import os

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def _harness():
  spec = importlib.util.spec_from_file_location(
      'kill_and_resume', os.path.join(REPO, 'scripts', 'kill_and_resume.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_two_kills_then_resume_to_the_end(tmp_path):
  harness = _harness()
  out = io.StringIO()
  result = harness.run_harness(str(tmp_path), kills=2, seed=1, checkpoint_every_n=3,
                               modes=('checkpoint_write', 'training'), record_summaries=False,
                               train_and_eval=False, out=out)
  report = out.getvalue()
  assert result['ok'], report
  assert result['summary']['kills'] == 2, report
  assert result['summary']['kills_during_checkpoint_write'] == 1, report
  assert result['summary']['max_steps_lost'] <= 3, report
  assert all(passed for passed, _ in result['checks'].values()), report
  assert len(result['checks']) == 4, report  # (no evaluation here: no metrics JSON check)
  final = result['lives'][-1]
  assert final['exit'] == 0 and final['resumed'] >= result['lives'][0]['resumed'], report
  assert 'PASS  every remaining checkpoint restores' in report, report
