"""Runs the study's runs, `jobs` at a time, each in its own process (bench.study.runner).

Finished runs are skipped; started ones resume from their checkpoints. Progress lines name the
runs done / total, the running ones with their step, and an ETA from the runs finished so far
(per variant when one of the same variant finished, else overall). Ctrl-C or SIGTERM stops the
children (each saves a checkpoint) and returns; the same command resumes.
"""
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time

from bench.study import settings

_STEP = re.compile(rb'Step (\d+)/(\d+)')


def _format_seconds(seconds):
  return str(datetime.timedelta(seconds=int(round(max(0.0, seconds)))))


def _last_step(log_path):
  """The last 'Step n/N' the run logged (0 when none)."""
  try:
    with open(log_path, 'rb') as f:
      f.seek(max(0, os.path.getsize(log_path) - 20000))
      matches = _STEP.findall(f.read())
  except OSError:
    return 0
  return int(matches[-1][0]) if matches else 0


class _Running:

  def __init__(self, run, threads, repo_root, runner_module):
    self.run = run
    self.started = time.time()
    os.makedirs(run['run_dir'], exist_ok=True)
    spec_path = os.path.join(run['run_dir'], 'spec.json')
    with open(spec_path, 'w', encoding='utf-8') as f:
      json.dump(dict(run, threads=threads), f, indent=2)
    self.log_path = os.path.join(run['run_dir'], 'log.txt')
    self._log = open(self.log_path, 'ab')  # pylint: disable=consider-using-with
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '3'),
               PYTHONPATH=os.pathsep.join(
                   [repo_root] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep)
                                  if p]))
    if threads:
      env['OMP_NUM_THREADS'] = str(threads)
    self.process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-m', runner_module, '--spec', spec_path], cwd=repo_root,
        env=env, stdout=self._log, stderr=subprocess.STDOUT)

  def poll(self):
    code = self.process.poll()
    if code is not None:
      self._log.close()
    return code

  def stop(self):
    if self.process.poll() is None:
      self.process.send_signal(signal.SIGTERM)

  def tail(self, lines=15):
    with open(self.log_path, 'rb') as f:
      f.seek(max(0, os.path.getsize(self.log_path) - 8000))
      return b'\n'.join(f.read().splitlines()[-lines:]).decode('utf-8', 'replace')


class Progress:
  """Done / total, and an ETA from the wall time of the runs finished in this session."""

  def __init__(self, runs, jobs):
    self.total = len(runs)
    self.jobs = max(1, jobs)
    self.seconds = {}  # variant -> [wall seconds of finished runs]
    self.done = 0

  def finished(self, run, seconds, counted=True):
    self.done += 1
    if counted:
      self.seconds.setdefault(run['variant'], []).append(seconds)

  def estimate(self, run):
    own = self.seconds.get(run['variant'])
    every = [s for values in self.seconds.values() for s in values]
    if own:
      return sum(own) / len(own)
    return sum(every) / len(every) if every else None

  def eta(self, pending, running):
    work = 0.0
    for run in pending:
      estimate = self.estimate(run)
      if estimate is None:
        return None
      work += estimate
    for job in running:
      estimate = self.estimate(job.run)
      if estimate is None:
        return None
      fraction = _last_step(job.log_path) / max(1, job.run['num_steps'])
      work += estimate * (1 - min(fraction, 0.95))
    return work / self.jobs


def run_all(runs, jobs=1, threads=None, status_every=60.0, repo_root=settings.REPO_ROOT,
            echo=print, runner_module='bench.study.runner', poll_seconds=2.0):
  """Runs every run not done yet; returns {'done': [...], 'failed': [...], 'stopped': bool}.
  Each run is `python -m <runner_module> --spec <run_dir>/spec.json` in repo_root."""
  statuses = {run['name']: settings.run_status(run) for run in runs}
  pending = [run for run in runs if statuses[run['name']] != 'done']
  progress = Progress(runs, jobs)
  for run in runs:
    if statuses[run['name']] == 'done':
      progress.finished(run, 0.0, counted=False)
  resumed = sum(1 for s in statuses.values() if s == 'partial')
  echo(f'study: {len(runs)} runs, {progress.done} done, {resumed} to resume, '
       f'{len(pending) - resumed} new; {jobs} at a time'
       + (f', {threads} thread(s) each' if threads else ''))
  running, failed, stopped = [], [], False
  last_status = time.time()

  def handle_term(signum, frame):
    del signum, frame
    raise KeyboardInterrupt

  previous = signal.signal(signal.SIGTERM, handle_term)
  try:
    while pending or running:
      while pending and len(running) < jobs:
        run = pending.pop(0)
        echo(f'[{progress.done}/{progress.total}] start {run["name"]} '
             f'({statuses[run["name"]]}; log {os.path.join(run["run_dir"], "log.txt")})')
        running.append(_Running(run, threads, repo_root, runner_module))
      time.sleep(poll_seconds)
      for job in list(running):
        code = job.poll()
        if code is None:
          continue
        running.remove(job)
        seconds = time.time() - job.started
        if code == 0:
          progress.finished(job.run, seconds)
          with open(settings.result_path(job.run), encoding='utf-8') as f:
            result = json.load(f)
          echo(f'[{progress.done}/{progress.total}] done  {job.run["name"]}: mAP@0.5 '
               f'{result["pascal_map"]:.4f}, COCO AP {result["coco_ap"]:.4f} '
               f'({_format_seconds(seconds)})')
        else:
          failed.append(job.run['name'])
          echo(f'[{progress.done}/{progress.total}] FAILED {job.run["name"]} (exit {code}); '
               f'last lines of {job.log_path}:\n{job.tail()}')
      if running and time.time() - last_status >= status_every:
        last_status = time.time()
        eta = progress.eta(pending, running)
        steps = ', '.join(f'{job.run["name"]} step {_last_step(job.log_path)}/'
                          f'{job.run["num_steps"]}' for job in running)
        echo(f'[{progress.done}/{progress.total}] running: {steps}; load '
             f'{os.getloadavg()[0]:.1f}; ETA '
             + (_format_seconds(eta) if eta is not None else 'after the first finished run'))
  except KeyboardInterrupt:
    stopped = True
    echo('stopping: the running runs save a checkpoint; run the same command to resume')
    for job in running:
      job.stop()
    for job in running:
      try:
        job.process.wait(timeout=600)
      except subprocess.TimeoutExpired:
        job.process.kill()
      job.poll()
  finally:
    signal.signal(signal.SIGTERM, previous)
  done = [run['name'] for run in runs if os.path.isfile(settings.result_path(run))]
  return {'done': done, 'failed': failed, 'stopped': stopped}
