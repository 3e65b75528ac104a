"""mtl_ssl_demo: the whole MTL-SSL pipeline in one command, offline, on a CPU, in minutes.

  mtl_ssl_demo [--workdir ./mtl_ssl_demo] [--num_steps N] [--baseline [also|only]]

1. config    writes <workdir>/<run>/pipeline.config: the scenes config with the data paths of the
             work dir (and --num_steps, with the learning-rate schedule scaled to it)
2. data      makes the built-in scenes data (Fashion-MNIST items on photos) in <workdir>/data
3. train     trains a Faster R-CNN MobileNet v1 with the three MTL-SSL tasks + refinement
4. evaluate  PASCAL mAP@0.5 on the test split
5. export    SavedModel in <workdir>/exported/<run>
6. infer     detections of a few test images (detections.png / .json) and the auxiliary labels
             the model is trained with (mtl_labels.png: windows with their top classes, the
             foreground mask); then <workdir>/report.json and a summary.

Re-running with the same work dir reuses the data (when its options are unchanged), resumes
training from the latest checkpoint (or skips it when done), and reuses a finished evaluation
and export. Ctrl-C (or SIGTERM) saves a checkpoint and stops; run the same command again to go
on.
"""
import dataclasses
import json
import math
import os
import sys
import time

from mtl_ssl import cli

MAIN_CONFIG = 'faster_rcnn_mobilenet_v1_scenes_mtl.config'
BASELINE_CONFIG = 'faster_rcnn_mobilenet_v1_scenes_baseline.config'
PASCAL_MAP = 'PascalBoxes_Precision/mAP@0.5IOU'
PASCAL_CLASS_AP = 'PascalBoxes_PerformanceByCategory/AP@0.5IOU/'
COCO_MAP50 = 'DetectionBoxes_Precision/mAP@.50IOU'
NUM_STAGES = 6


def shipped_config(name):
  """Path of a config of pipeline_configs/scenes (repository checkout, or the current dir)."""
  repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  candidates = [os.path.join(root, 'pipeline_configs', 'scenes', name)
                for root in (repo_root, os.getcwd())]
  for path in candidates:
    if os.path.isfile(path):
      return path
  return candidates[0]  # the error names it when it is read


def build_parser():
  parser = cli.new_parser(__doc__)
  parser.add_argument('--workdir', default='mtl_ssl_demo',
                      help='data, checkpoints, exports, pictures and report.json go here '
                           '(default ./mtl_ssl_demo)')
  parser.add_argument('--config', default=None,
                      help=f'pipeline config to train (default pipeline_configs/scenes/'
                           f'{MAIN_CONFIG}); its input paths are replaced by the demo data')
  parser.add_argument('--baseline', nargs='?', const='also', default='no',
                      choices=('no', 'also', 'only'),
                      help='also (--baseline) or only train --baseline_config, to compare mAP')
  parser.add_argument('--baseline_config', default=None,
                      help=f'default pipeline_configs/scenes/{BASELINE_CONFIG}')
  parser.add_argument('--config_override', default='',
                      help='text proto merged over the config(s) (or @file)')
  parser.add_argument('--num_steps', type=int, default=None,
                      help='training steps (default train_config.num_steps of the config)')
  parser.add_argument('--num_train_images', type=int, default=512,
                      help='scenes in the train split (default 512)')
  parser.add_argument('--num_test_images', type=int, default=128,
                      help='scenes in the test split, all evaluated (default 128)')
  parser.add_argument('--num_infer_images', type=int, default=4,
                      help='test images drawn in detections.png and mtl_labels.png')
  parser.add_argument('--min_score', type=float, default=0.3,
                      help='detections below this score are not drawn')
  parser.add_argument('--seed', type=int, default=0,
                      help='seed of the scenes data, the weights and the data order')
  parser.add_argument('--log_every_n', type=int, default=None,
                      help='log losses, steps/s and ETA every n steps (default: ~25 lines)')
  return parser


class Stages:
  """Prints numbered stage headers and records each stage's wall time."""

  def __init__(self):
    self.start = time.time()
    self.seconds = {}
    self._current, self._since = None, None

  def begin(self, number, name, text):
    self.end()
    print(f'\n=== [{number}/{NUM_STAGES}] {text}  (t={time.time() - self.start:.0f} s)',
          flush=True)
    self._current, self._since = name, time.time()

  def end(self):
    if self._current:
      self.seconds[self._current] = round(time.time() - self._since, 1)
      self._current = None

  def total(self):
    return round(time.time() - self.start, 1)


# ---------------------------------------------------------------------------------------------
# data (stage 2)

def scene_config(args):
  from mtl_ssl.data.scenes import generator  # pylint: disable=import-outside-toplevel
  # the shipped Fashion-MNIST subset: the same data (and so the same mAP) on every machine
  return generator.SceneConfig(num_train_images=args.num_train_images,
                               num_test_images=args.num_test_images, seed=args.seed,
                               objects='subset').validate()


def data_paths(data_dir):
  return {'train': os.path.join(data_dir, 'scenes_train.record'),
          'test': os.path.join(data_dir, 'scenes_test.record'),
          'label_map': os.path.join(data_dir, 'scenes_label_map.pbtxt'),
          'info': os.path.join(data_dir, 'scenes_info.json')}


def data_is_current(data_dir, config):
  """True when data_dir holds the records of exactly these scene options."""
  paths = data_paths(data_dir)
  if not all(os.path.isfile(p) for p in paths.values()):
    return False
  with open(paths['info'], encoding='utf-8') as f:
    info = json.load(f)
  return info.get('config') == dataclasses.asdict(config)


def prepare_data(data_dir, config):
  """Writes the scenes records unless they are there already; returns (paths, reused)."""
  from mtl_ssl.data.scenes import generator  # pylint: disable=import-outside-toplevel
  if data_is_current(data_dir, config):
    print(f'reusing the scenes data in {data_dir}')
    return data_paths(data_dir), True
  print(f'writing {config.num_train_images} train + {config.num_test_images} test scenes '
        f'({config.height}x{config.width}, seed {config.seed}) to {data_dir}', flush=True)
  info = generator.write_dataset(config, data_dir, show_progress=sys.stderr.isatty())
  for split in ('train', 'test'):
    split_info = info['splits'][split]
    print(f'  {split}: {split_info["images"]} images, {split_info["boxes"]} boxes')
  return data_paths(data_dir), False


# ---------------------------------------------------------------------------------------------
# configs (stage 1)

def resolve_config(config_path, paths, num_steps=None, config_override=''):
  """The configs dict of config_path with the demo data's paths (and num_steps), plus a list of
  what was changed."""
  from mtl_ssl.config import config_util  # pylint: disable=import-outside-toplevel
  from mtl_ssl.config import num_steps as config_num_steps  # pylint: disable=import-outside-toplevel
  configs = config_util.get_configs_from_pipeline_file(config_path, config_override or None)
  changes = [f'data paths -> {os.path.dirname(paths["label_map"])}']
  readers = [('train', configs['train_input_config'])] + [
      ('test', reader) for reader in configs['eval_input_configs']]
  for split, reader in readers:
    reader.label_map_path = paths['label_map']
    del reader.tf_record_input_reader.input_path[:]
    reader.tf_record_input_reader.input_path.append(paths[split])
  if num_steps:  # the learning-rate schedule is stretched with it
    changes += config_num_steps.set_num_steps(configs['train_config'], num_steps)
  return configs, changes


def has_mtl(configs):
  model = configs['model']
  return model.HasField('mtl') and any(
      (model.mtl.window, model.mtl.closeness, model.mtl.edgemask, model.mtl.refine))


def plan_runs(args):
  """[(run name, config path)] in training order; the first one is exported and drawn."""
  main_config = args.config or shipped_config(MAIN_CONFIG)
  baseline_config = args.baseline_config or shipped_config(BASELINE_CONFIG)
  if args.baseline == 'only':
    return [('baseline', baseline_config)]
  runs = [('main', main_config)]
  if args.baseline == 'also':
    runs.append(('baseline', baseline_config))
  return runs


# ---------------------------------------------------------------------------------------------
# 3-5. train, evaluate, export

class TrainingStopped(Exception):
  """Training returned before num_steps (SIGTERM): the later stages are not run."""


def latest_step(model_dir):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import checkpoints  # pylint: disable=import-outside-toplevel
  latest = tf.train.latest_checkpoint(model_dir) if os.path.isdir(model_dir) else None
  return (latest, checkpoints.checkpoint_step(latest)) if latest else (None, 0)


def train(run, seed, log_every_n):
  """Trains run['model_dir'] to num_steps (resuming); fills the run's training numbers."""
  from mtl_ssl.training import train_loop  # pylint: disable=import-outside-toplevel
  num_steps = run['num_steps']
  _, start_step = latest_step(run['model_dir'])
  if start_step >= num_steps:
    print(f'{run["name"]}: already trained to step {start_step} >= {num_steps}; skipping')
  elif start_step:
    print(f'{run["name"]}: resuming from step {start_step} of {num_steps}', flush=True)
  else:
    print(f'{run["name"]}: training {num_steps} steps (batch '
          f'{run["batch_size"]}) in {run["model_dir"]}; the first steps build and trace the '
          'model', flush=True)
  started = time.time()
  history = []
  if start_step < num_steps:
    history = train_loop.train_loop(
        run['pipeline_config'], run['model_dir'], train_steps=num_steps,
        checkpoint_every_n=max(1, num_steps // 4), log_every_n=log_every_n, seed=seed)
  seconds = time.time() - started
  checkpoint, step = latest_step(run['model_dir'])
  if step < num_steps:  # the train loop saved a checkpoint and returned on SIGTERM
    raise TrainingStopped(f'{run["name"]}: training stopped at step {step} of {num_steps}')
  rates = [h['steps_per_sec'] for h in history[1:]] or [h['steps_per_sec'] for h in history]
  run.update(checkpoint=checkpoint, step=step, resumed_from_step=start_step,
             steps_trained=step - start_step, train_seconds=round(seconds, 1),
             steps_per_sec_overall=round((step - start_step) / seconds, 3) if history else None,
             steps_per_sec_steady=round(sorted(rates)[len(rates) // 2], 3) if rates else None,
             final_losses={k: round(v, 4) for k, v in history[-1].items()
                           if k.startswith('Loss/')} if history else None)


def _rounded(value):
  """float rounded to 4 digits; None for a missing or NaN metric (a class without ground
  truth), so report.json stays valid JSON."""
  if value is None or not math.isfinite(float(value)):
    return None
  return round(float(value), 4)


def _main_metric(metrics):
  for key in (PASCAL_MAP, COCO_MAP50):
    if metrics.get(key) is not None:
      return key, metrics[key]
  return None, None


def evaluate(run):
  """mAP of the run's latest checkpoint on the test split (reuses metrics_<step>.json)."""
  from mtl_ssl.config import validation  # pylint: disable=import-outside-toplevel
  from mtl_ssl.data import label_map_util  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import eval_loop  # pylint: disable=import-outside-toplevel
  metrics_path = os.path.join(run['model_dir'], 'eval', f'metrics_{run["step"]}.json')
  if os.path.isfile(metrics_path):
    print(f'{run["name"]}: reusing {metrics_path}')
    with open(metrics_path, encoding='utf-8') as f:
      metrics = json.load(f)['metrics']
  else:
    configs = validation.load_and_validate(run['pipeline_config'], mode='eval')
    evaluation = eval_loop.CheckpointEvaluation(configs, run['model_dir'])
    metrics = evaluation.evaluate_checkpoint(run['checkpoint'])
  key, value = _main_metric(metrics)
  label_map = run['configs']['eval_input_configs'][0].label_map_path
  names = [c['name'] for c in label_map_util.create_categories_from_labelmap(label_map)]
  run.update(metric=key, mAP=_rounded(value), metrics_json=metrics_path,
             per_class_AP={name: _rounded(metrics[PASCAL_CLASS_AP + name]) for name in names
                           if PASCAL_CLASS_AP + name in metrics},
             mtl_metrics={k: _rounded(v) for k, v in metrics.items() if k.startswith('MTL/')})
  print(f'{run["name"]}: {key} = {run["mAP"]} at step {run["step"]}')


def export(run, export_dir):
  """SavedModel of the latest checkpoint (skipped when an export newer than it exists)."""
  from mtl_ssl.export import exporter_lib  # pylint: disable=import-outside-toplevel
  saved_model_pb = os.path.join(export_dir, 'saved_model', 'saved_model.pb')
  if (os.path.isfile(saved_model_pb)
      and os.path.getmtime(saved_model_pb) > os.path.getmtime(run['checkpoint'] + '.index')):
    print(f'{run["name"]}: reusing the export in {export_dir}')
  else:
    exporter_lib.export_inference_graph('image_tensor', run['pipeline_config'],
                                        run['model_dir'], export_dir)
  run['saved_model'] = os.path.join(export_dir, 'saved_model')
  print(f'{run["name"]}: SavedModel {run["saved_model"]}')


# ---------------------------------------------------------------------------------------------
# report

def _format_run(run):
  lines = [f'  {run["name"]}: {os.path.basename(run["source_config"])}',
           f'    {run["metric"] or "mAP"}: {run["mAP"]}  (step {run["step"]}, '
           f'{run["num_test_images"]} test images)']
  if run.get('per_class_AP'):
    lines.append('    AP per class: ' + ', '.join(
        f'{name} {"-" if ap is None else f"{ap:.2f}"}' for name, ap in run['per_class_AP'].items()))
  if run.get('mtl_metrics'):
    lines.append('    auxiliary tasks: ' + ', '.join(
        f'{k[4:]} {v:.3f}' for k, v in sorted(run['mtl_metrics'].items()) if v is not None))
  if run['steps_trained']:
    lines.append(f'    trained {run["steps_trained"]} steps in {run["train_seconds"]:.0f} s '
                 f'({run["steps_per_sec_steady"]} steps/s steady, '
                 f'{run["steps_per_sec_overall"]} overall incl. model build and tracing)')
  else:
    lines.append('    no training needed (resumed a finished run)')
  lines.append(f'    checkpoint: {run["checkpoint"]}')
  if run.get('saved_model'):
    lines.append(f'    SavedModel: {run["saved_model"]}')
  return lines


def summary_text(report):
  lines = ['', '=' * 78, f'mtl-ssl demo finished in {report["total_seconds"]:.0f} s '
           f'(stages: ' + ', '.join(f'{k} {v:.0f} s' for k, v in report['stage_seconds'].items())
           + f'; load average {report["load_average_at_start"][0]:.1f} at the start, '
           f'{report["load_average_at_end"][0]:.1f} at the end, {report["cpus"]} CPUs)']
  for run in report['runs']:
    lines += _format_run(run)
  if len(report['runs']) > 1 and all(r['mAP'] is not None for r in report['runs']):
    first, second = report['runs'][:2]
    lines.append(f'  mAP {first["name"]} - {second["name"]}: '
                 f'{first["mAP"] - second["mAP"]:+.4f}')
  for name in ('detections_png', 'mtl_labels_png', 'detections_json'):
    if report.get(name):
      lines.append(f'  {name.replace("_", " ")}: {report[name]}')
  lines += [f'  report: {report["report_json"]}',
            f'  TensorBoard (losses, eval metrics, input pictures): {report["tensorboard"]}',
            '=' * 78]
  return '\n'.join(lines)


def tensorboard_command(logdir):
  """`tensorboard --logdir D`, with the tensorboard of this Python's environment (the venv's
  bin/ folder, which need not be on PATH) when it is there."""
  import shlex  # pylint: disable=import-outside-toplevel
  local = os.path.join(os.path.dirname(sys.executable), 'tensorboard')
  program = local if os.path.isfile(local) else 'tensorboard'
  return f'{shlex.quote(program)} --logdir {shlex.quote(logdir)}'


def _quiet_library_logs():
  """Keep INFO lines of mtl_ssl itself (steps/s, ETA, eval); TensorFlow's only from WARNING."""
  import logging as std_logging  # pylint: disable=import-outside-toplevel
  from absl import logging  # pylint: disable=import-outside-toplevel
  package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING
      or record.pathname.startswith(package_dir))


def run_demo(args):
  """All stages; returns the report dict (also written to <workdir>/report.json)."""
  stages = Stages()
  workdir = os.path.abspath(args.workdir)
  os.makedirs(workdir, exist_ok=True)
  load_at_start = [round(x, 2) for x in os.getloadavg()]
  print(f'mtl-ssl demo in {workdir}  (load average {load_at_start[0]:.1f}, '
        f'{os.cpu_count()} CPUs)', flush=True)

  stages.begin(1, 'config', 'Pipeline configs')
  from mtl_ssl.config import config_util  # pylint: disable=import-outside-toplevel
  from mtl_ssl.config import validation  # pylint: disable=import-outside-toplevel
  config = scene_config(args)
  paths = data_paths(os.path.join(workdir, 'data'))
  override = cli.read_config_override(args.config_override)
  runs = []
  for name, source in plan_runs(args):
    configs, changes = resolve_config(source, paths, args.num_steps, override)
    validation.validate(configs, mode='train', source=source)  # fail before making data
    model_dir = os.path.join(workdir, name)
    pipeline_config = config_util.save_pipeline_config(configs, model_dir)
    print(f'{name}: {source}\n  -> {pipeline_config} ({"; ".join(changes)})')
    runs.append({'name': name, 'source_config': os.path.abspath(source), 'configs': configs,
                 'pipeline_config': pipeline_config, 'model_dir': model_dir,
                 'num_steps': int(configs['train_config'].num_steps),
                 'batch_size': int(configs['train_config'].batch_size),
                 'num_test_images': config.num_test_images, 'mtl': has_mtl(configs)})

  stages.begin(2, 'data', 'Scenes data')
  paths, data_reused = prepare_data(os.path.dirname(paths['label_map']), config)

  stages.begin(3, 'train', 'Training (losses, steps/s and ETA every '
               f'{_log_every(args, runs)} steps)')
  for run in runs:
    train(run, args.seed, _log_every(args, runs))

  stages.begin(4, 'evaluate', 'Evaluation on the test split')
  for run in runs:
    evaluate(run)

  main_run = runs[0]
  stages.begin(5, 'export', 'SavedModel export')
  export(main_run, os.path.join(workdir, 'exported', main_run['name']))

  stages.begin(6, 'infer', 'Inference on test images and pictures')
  from mtl_ssl.cli import demo_pictures  # pylint: disable=import-outside-toplevel
  from mtl_ssl.data import label_map_util  # pylint: disable=import-outside-toplevel
  category_index = label_map_util.create_category_index_from_labelmap(paths['label_map'])
  items = demo_pictures.write_test_images(config, os.path.join(workdir, 'test_images'),
                            args.num_infer_images)
  report = {'workdir': workdir, 'data_dir': os.path.dirname(paths['label_map']),
            'data_reused': data_reused, 'scenes': dataclasses.asdict(config),
            'detections_png': os.path.join(workdir, 'detections.png'),
            'detections_json': os.path.join(workdir, 'detections.json'),
            'mtl_labels_png': None}
  records = demo_pictures.detections_picture(main_run['saved_model'], items, category_index, args.min_score,
                               report['detections_png'], report['detections_json'])
  print(f'{len(records)} test images: ' + '; '.join(
      f'{len(r["detections"])} detections' for r in records))
  print(f'detections | ground truth: {report["detections_png"]}')
  if main_run['mtl']:
    report['mtl_labels_png'] = os.path.join(workdir, 'mtl_labels.png')
    demo_pictures.mtl_labels_picture(main_run['configs'], items, category_index, args.seed,
                       report['mtl_labels_png'])
    print(f'auxiliary labels: {report["mtl_labels_png"]}')
  stages.end()

  report.update(
      runs=[{k: v for k, v in run.items() if k != 'configs'} for run in runs],
      stage_seconds=stages.seconds, total_seconds=stages.total(),
      load_average_at_start=load_at_start,
      load_average_at_end=[round(x, 2) for x in os.getloadavg()], cpus=os.cpu_count(),
      report_json=os.path.join(workdir, 'report.json'),
      tensorboard=tensorboard_command(workdir))
  with open(report['report_json'], 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=2)
  print(summary_text(report), flush=True)
  return report


def _log_every(args, runs):
  if args.log_every_n:
    return args.log_every_n
  return max(1, min(100, max(run['num_steps'] for run in runs) // 25))


def main(argv=None):
  args = build_parser().parse_args(argv)
  for name in ('num_train_images', 'num_test_images', 'num_infer_images'):
    if getattr(args, name) < 1:
      raise SystemExit(f'error: --{name} must be >= 1')
  if args.num_steps is not None and args.num_steps < 1:
    raise SystemExit('error: --num_steps must be >= 1')
  cli.init_logging()
  _quiet_library_logs()
  from mtl_ssl.config.errors import ConfigError  # pylint: disable=import-outside-toplevel
  if os.path.exists(args.workdir) and not os.path.isdir(args.workdir):
    print(f'error: --workdir {args.workdir}: exists and is not a directory', file=sys.stderr)
    return 2
  try:
    run_demo(args)
  except (KeyboardInterrupt, TrainingStopped) as stop:
    print(f'\n{stop or "interrupted"}: run the same command again to resume (the data and the '
          'last checkpoint are kept)', file=sys.stderr)
    return 130 if isinstance(stop, KeyboardInterrupt) else 143
  except ConfigError as error:  # a bad --config / override
    print(f'error: {error}', file=sys.stderr)
    return 2
  except cli.user_error_types() as error:  # a bad path (e.g. --workdir is a file), bad data
    print(f'error: {cli.error_text(error)}', file=sys.stderr)
    return 2
  return 0


def run():
  """Console script `mtl_ssl_demo`."""
  sys.exit(main())


if __name__ == '__main__':
  run()
