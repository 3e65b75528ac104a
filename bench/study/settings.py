"""Study settings: presets, the datasets, and the resolved pipeline config of every run.

A run is (dataset, variant, seed). Its pipeline.config is the variant's config (default: the
study's --config) with the dataset's paths, the study's num_steps (learning-rate schedule
stretched to it, as mtl_ssl_demo does), the variant's MTL flags and overrides, and the three
evaluators (PASCAL, COCO, TIDE). The fingerprint of that text, the seed and the evaluated steps
identifies a run: a finished run with the same fingerprint is skipped, a different one is an
error (a work dir holds one study).
"""
import dataclasses
import hashlib
import json
import os

from bench.study import variants as variants_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENES_CONFIG = os.path.join(REPO_ROOT, 'pipeline_configs', 'scenes',
                             'faster_rcnn_mobilenet_v1_scenes_mtl.config')
METRICS_SETS = ('pascal_voc_detection_metrics', 'coco_detection_metrics', 'tide_error_metrics')
LAYOUTS = ('context', 'random')

# Presets of the scenes study (each value can be overridden by its flag).
# cpu:   the study of docs/benchmarks.md, sized for a few hours of an idle 2-core CPU
#        (36 runs: 6 variants x 3 seeds x 2 layouts; see "Calibration" there).
# smoke: proves the mechanics (training, resume, evaluation, tables, plots) in minutes.
PRESETS = {
    'cpu': {'num_steps': 2000, 'num_train_images': 2000, 'num_test_images': 400,
            'eval_points': 4, 'seeds': '0,1,2', 'layouts': 'context,random',
            'variants': ','.join(variants_lib.PAPER_ABLATION)},
    'smoke': {'num_steps': 60, 'num_train_images': 96, 'num_test_images': 32,
              'eval_points': 2, 'seeds': '0', 'layouts': 'context',
              'variants': 'baseline,all_refine'},
}


@dataclasses.dataclass
class Dataset:
  name: str
  train: list  # TFRecord paths (or patterns)
  test: list
  label_map: str
  scene_config: object = None  # generator.SceneConfig for built-in scenes data

  def set_paths(self, configs):
    """Points the train and eval input readers of configs at this data."""
    readers = [(self.train, configs['train_input_config'])] + [
        (self.test, reader) for reader in configs['eval_input_configs']]
    for paths, reader in readers:
      reader.label_map_path = self.label_map
      del reader.tf_record_input_reader.input_path[:]
      reader.tf_record_input_reader.input_path.extend(paths)


def scenes_dataset(data_root, layout, num_train_images, num_test_images, seed=0):
  """The built-in scenes data of one layout (written later by prepare_scenes)."""
  from mtl_ssl.cli import demo  # pylint: disable=import-outside-toplevel
  from mtl_ssl.data.scenes import generator  # pylint: disable=import-outside-toplevel
  config = generator.SceneConfig(num_train_images=num_train_images,
                                 num_test_images=num_test_images, layout=layout, seed=seed,
                                 objects='subset').validate()
  paths = demo.data_paths(os.path.join(data_root, layout))
  return Dataset(layout, [paths['train']], [paths['test']], paths['label_map'], config)


def prepare_scenes(dataset):
  """Writes the scenes records of `dataset` unless they exist with the same options."""
  from mtl_ssl.cli import demo  # pylint: disable=import-outside-toplevel
  demo.prepare_data(os.path.dirname(dataset.label_map), dataset.scene_config)


def eval_interval(num_steps, eval_points):
  return max(1, int(num_steps) // max(1, int(eval_points)))


def eval_steps(num_steps, eval_points):
  """The evaluated steps: multiples of the checkpoint interval, the last one at num_steps."""
  interval = eval_interval(num_steps, eval_points)
  steps = [interval * i for i in range(1, max(1, int(eval_points)))]
  return sorted({s for s in steps if s < num_steps} | {int(num_steps)})


def resolve_configs(base_config, variant, dataset, num_steps=None, config_override=''):
  """The configs dict of one run (see the module docstring)."""
  from mtl_ssl.cli import demo  # pylint: disable=import-outside-toplevel
  from mtl_ssl.config import config_util  # pylint: disable=import-outside-toplevel
  source = os.path.join(REPO_ROOT, variant.config) if variant.config else base_config
  first = {'train': dataset.train[0], 'test': dataset.test[0], 'label_map': dataset.label_map}
  configs, _ = demo.resolve_config(source, first, num_steps, config_override)
  dataset.set_paths(configs)
  variants_lib.apply_tasks(configs['model'], variant)
  if variant.override:
    pipeline = config_util.create_pipeline_proto_from_configs(configs)
    config_util.merge_text(variant.override, pipeline, f'variant {variant.name} override')
    configs = config_util.create_configs_from_pipeline_proto(pipeline)
  eval_config = configs['eval_config']
  del eval_config.metrics_set[:]
  eval_config.metrics_set.extend(METRICS_SETS)
  eval_config.num_visualizations = 0
  return configs, source


def config_text(configs):
  from mtl_ssl.config import config_util  # pylint: disable=import-outside-toplevel
  return config_util.pipeline_config_to_text(
      config_util.create_pipeline_proto_from_configs(configs))


def fingerprint(text, seed, steps):
  payload = json.dumps({'config': text, 'seed': seed, 'eval_steps': steps}, sort_keys=True)
  return hashlib.sha256(payload.encode('utf-8')).hexdigest()[:16]


def make_run(workdir, dataset, variant, seed, base_config, num_steps, eval_points,
             config_override=''):
  """The spec of one run (a JSON-able dict); the child process (runner.py) executes it."""
  configs, source = resolve_configs(base_config, variant, dataset, num_steps, config_override)
  from mtl_ssl.config import validation  # pylint: disable=import-outside-toplevel
  validation.validate(configs, mode='train', source=f'{source} ({variant.name})')
  steps_total = int(configs['train_config'].num_steps)
  steps = eval_steps(steps_total, eval_points)
  text = config_text(configs)
  run_dir = os.path.join(workdir, 'runs', dataset.name, variant.name, f'seed{seed}')
  return {'name': f'{dataset.name}/{variant.name}/seed{seed}', 'dataset': dataset.name,
          'variant': variant.name, 'variant_label': variant.label or variant.name,
          'seed': int(seed), 'run_dir': run_dir, 'source_config': source,
          'config_text': text, 'num_steps': steps_total, 'eval_steps': steps,
          'checkpoint_every_n': eval_interval(steps_total, eval_points),
          'batch_size': int(configs['train_config'].batch_size),
          'fingerprint': fingerprint(text, int(seed), steps)}


def result_path(run):
  return os.path.join(run['run_dir'], 'result.json')


def run_status(run):
  """'done' (result.json of the same settings), 'partial' (checkpoints), 'new'; raises when the
  run directory holds a run of other settings."""
  path = result_path(run)
  if os.path.isfile(path):
    with open(path, encoding='utf-8') as f:
      result = json.load(f)
    if result.get('fingerprint') != run['fingerprint']:
      raise ValueError(f'{run["run_dir"]} holds a finished run of other settings (fingerprint '
                       f'{result.get("fingerprint")} != {run["fingerprint"]}); use another '
                       '--workdir or delete that directory')
    return 'done'
  saved = os.path.join(run['run_dir'], 'pipeline.config')
  if os.path.isfile(saved):
    from mtl_ssl.config import config_util  # pylint: disable=import-outside-toplevel
    text = config_util.pipeline_config_to_text(
        config_util.get_pipeline_proto_from_file(saved))
    if text != run['config_text']:
      raise ValueError(f'{run["run_dir"]} holds a started run of another pipeline config; use '
                       'another --workdir or delete that directory')
  if os.path.isdir(run['run_dir']) and any(
      name.startswith('ckpt-') for name in os.listdir(run['run_dir'])):
    return 'partial'
  return 'new'
