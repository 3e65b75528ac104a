"""The MTL-SSL accuracy study: every variant x seed x dataset, trained, evaluated, aggregated.

From the repository root:

  python -m bench.study --workdir runs/study                   # the CPU study (preset cpu)
  python -m bench.study --workdir runs/smoke --preset smoke    # the mechanics, in minutes
  python -m bench.study --workdir runs/study --report_only     # tables and plots of what is done

  # a paper config on a GPU, its paths filled in as in docs/reproducing.md (its own data
  # paths are used, or --train_data/--test_data/--label_map):
  python -m bench.study --workdir runs/voc07 --jobs 1 --threads 0 --seeds 0,1,2 \\
      --config configs/faster_rcnn_resnet101_voc07_mtl.config

The variants are the rows of bench/study/variants.py (baseline, T1, T2, T3, all tasks,
all + refine): the same config with the MTL flags switched, the same steps and schedule. The
scenes data (both layouts, `context` and `random`) is made once in <workdir>/data. Each run
lives in <workdir>/runs/<dataset>/<variant>/seed<k> (log.txt, checkpoints, eval/metrics_*.json,
result.json). Running the command again skips finished runs and resumes started ones (Ctrl-C
saves checkpoints first). The report goes to <workdir>/report (results.md, summary.json,
map_vs_step_<dataset>.png, tide_<dataset>.png).
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from bench.study import aggregate  # pylint: disable=wrong-import-position
from bench.study import scheduler  # pylint: disable=wrong-import-position
from bench.study import settings  # pylint: disable=wrong-import-position
from bench.study import variants as variants_lib  # pylint: disable=wrong-import-position


def build_parser():
  parser = argparse.ArgumentParser(prog='python -m bench.study', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True, help='everything of the study goes here')
  parser.add_argument('--preset', default='cpu', choices=sorted(settings.PRESETS),
                      help='default values of the options below (default cpu: see '
                           'bench/study/settings.py)')
  parser.add_argument('--variants', default=None,
                      help='comma-separated rows of bench/study/variants.py (default: all)')
  parser.add_argument('--seeds', default=None, help='comma-separated training seeds')
  parser.add_argument('--layouts', default=None,
                      help='scenes layouts, comma-separated (context, random)')
  parser.add_argument('--num_steps', type=int, default=None,
                      help='training steps of every run (the learning-rate schedule is '
                           'stretched to it); with --config default: the config\'s num_steps')
  parser.add_argument('--eval_points', type=int, default=None,
                      help='checkpoints evaluated per run, evenly spaced, the last at the end')
  parser.add_argument('--num_train_images', type=int, default=None, help='scenes train images')
  parser.add_argument('--num_test_images', type=int, default=None,
                      help='scenes test images (held out: other Fashion-MNIST items)')
  parser.add_argument('--data_seed', type=int, default=0, help='seed of the scenes data')
  parser.add_argument('--config', default=None,
                      help='base pipeline config (default: the scenes MTL config); must hold '
                           'every MTL predictor (a ..._mtl.config)')
  parser.add_argument('--train_data', default=None,
                      help='train TFRecord(s) for --config, comma-separated')
  parser.add_argument('--test_data', default=None,
                      help='test TFRecord(s) for --config, comma-separated')
  parser.add_argument('--label_map', default=None, help='label map for --config')
  parser.add_argument('--dataset_name', default='custom',
                      help='name of the --config data in tables and paths')
  parser.add_argument('--config_override', default='',
                      help='text proto merged over the base config of every run')
  parser.add_argument('--jobs', type=int, default=2,
                      help='runs trained at the same time, each in its own process')
  parser.add_argument('--threads', type=int, default=1,
                      help='TensorFlow threads per run (0: TensorFlow decides)')
  parser.add_argument('--status_every', type=float, default=120.0,
                      help='seconds between progress lines')
  parser.add_argument('--report_only', action='store_true',
                      help='only aggregate the finished runs (tables and plots)')
  parser.add_argument('--dry_run', action='store_true',
                      help='print the runs and their state, make nothing')
  return parser


def _option(args, name):
  value = getattr(args, name)
  return settings.PRESETS[args.preset][name] if value is None else value


def _split(text):
  return [item.strip() for item in str(text).split(',') if item.strip()]


def datasets(args):
  """[settings.Dataset] of the study."""
  if args.config:
    if any((args.train_data, args.test_data, args.label_map)):
      missing = [f'--{n}' for n in ('train_data', 'test_data', 'label_map')
                 if not getattr(args, n)]
      if missing:
        raise SystemExit(f'error: give all of --train_data, --test_data, --label_map '
                         f'(missing {missing})')
      return [settings.Dataset(args.dataset_name, _split(args.train_data),
                               _split(args.test_data), args.label_map)]
    from mtl_ssl.config import config_util  # pylint: disable=import-outside-toplevel
    configs = config_util.get_configs_from_pipeline_file(args.config)
    train, test = configs['train_input_config'], configs['eval_input_configs'][0]
    return [settings.Dataset(args.dataset_name, list(train.tf_record_input_reader.input_path),
                             list(test.tf_record_input_reader.input_path),
                             test.label_map_path)]
  layouts = _split(_option(args, 'layouts'))
  unknown = [layout for layout in layouts if layout not in settings.LAYOUTS]
  if unknown:
    raise SystemExit(f'error: unknown layout(s) {unknown}; use {settings.LAYOUTS}')
  return [settings.scenes_dataset(os.path.join(args.workdir, 'data'), layout,
                                  _option(args, 'num_train_images'),
                                  _option(args, 'num_test_images'), args.data_seed)
          for layout in layouts]


def plan(args, data):
  base = os.path.abspath(args.config) if args.config else settings.SCENES_CONFIG
  num_steps = args.num_steps if (args.config and args.num_steps) else (
      None if args.config else _option(args, 'num_steps'))
  rows = variants_lib.by_name(_split(_option(args, 'variants')) or None)
  seeds = [int(s) for s in _split(_option(args, 'seeds'))]
  runs = []
  for dataset in data:
    for seed in seeds:  # seed-major: a study cut short still has whole seeds of every variant
      for variant in rows:
        runs.append(settings.make_run(os.path.abspath(args.workdir), dataset, variant, seed,
                                      base, num_steps, _option(args, 'eval_points'),
                                      args.config_override))
  return runs


def main(argv=None):
  args = build_parser().parse_args(argv)
  try:
    return _study(args)
  except (ValueError, FileNotFoundError) as error:  # ConfigError is a ValueError
    print(f'error: {error}', file=sys.stderr)
    return 2


def _study(args):
  workdir = os.path.abspath(args.workdir)
  if args.report_only:
    return 0 if aggregate.write_report(workdir) else 1
  os.makedirs(workdir, exist_ok=True)
  data = datasets(args)
  runs = plan(args, data)
  print(f'{len(runs)} runs: {len(data)} dataset(s) x '
        f'{len({r["variant"] for r in runs})} variant(s) x {len({r["seed"] for r in runs})} '
        f'seed(s); {runs[0]["num_steps"]} steps of batch {runs[0]["batch_size"]}, evaluated at '
        f'steps {runs[0]["eval_steps"]}; machine: {os.cpu_count()} CPUs, load '
        f'{os.getloadavg()[0]:.1f}', flush=True)
  if args.dry_run:
    for run in runs:
      print(f'  {run["name"]}: {settings.run_status(run)}  ({run["run_dir"]})')
    return 0
  for dataset in data:
    if dataset.scene_config is not None:
      settings.prepare_scenes(dataset)
  with open(os.path.join(workdir, 'study.json'), 'w', encoding='utf-8') as f:
    json.dump({'command': sys.argv, 'started': time.strftime('%Y-%m-%d %H:%M:%S'),
               'cpus': os.cpu_count(), 'jobs': args.jobs, 'threads': args.threads,
               'runs': [{k: r[k] for k in ('name', 'fingerprint', 'num_steps', 'eval_steps',
                                           'source_config')} for r in runs]}, f, indent=2)
  started = time.time()
  outcome = scheduler.run_all(runs, jobs=max(1, args.jobs), threads=args.threads or None,
                              status_every=args.status_every)
  print(f'study: {len(outcome["done"])}/{len(runs)} runs done '
        f'({time.time() - started:.0f} s in this session)', flush=True)
  aggregate.write_report(workdir)
  if outcome['stopped']:
    return 130
  if outcome['failed']:
    print(f'failed runs: {outcome["failed"]} (see their log.txt); run again to retry',
          file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
