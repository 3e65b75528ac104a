"""Pixels and train-step time of a paper config at batch 1: padded to max_dimension (what every
keep-aspect config did before) vs unpadded (the original's batch-1 setting, now the default
without pad_to_max_dimension).

Runs the real training step (input pipeline, model, loss, gradients, update) of
pipeline_configs/paper/<config> with random weights on generated VOC-sized images (500x375,
375x500, 500x333, 333x500, 500x500, 480x360: the common VOC shapes), both variants in one
process, steps interleaved round-robin so machine load hits both alike, and prints a table:
mean pixels reaching the backbone per image, median seconds per step, and the ratios.

  PYTHONPATH=. python bench/bench_padding.py [--config faster_rcnn_resnet101_voc07_baseline]
      [--steps 6]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

VOC_SHAPES = [(375, 500), (500, 375), (333, 500), (500, 333), (500, 500), (360, 480)]


def _write_records(directory):
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests', 'data'))
  import input_records  # pylint: disable=import-outside-toplevel
  records = [input_records.drawn_example(h, w, [[0.1, 0.1, 0.6, 0.5], [0.4, 0.45, 0.95, 0.9]],
                                         [1, 5], fmt='jpeg', source_id=f'im{i}')
             for i, (h, w) in enumerate(VOC_SHAPES)]
  return input_records.write(os.path.join(directory, 'voc_like.record'), records)


def _trainer(config_path, record, padded):
  from mtl_ssl.config import validation  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import train_loop  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  override = f"""
    train_config {{ fine_tune_checkpoint: "" }}
    train_input_reader {{ tf_record_input_reader {{ input_path: "{record}" }} }}
    eval_input_reader {{ tf_record_input_reader {{ input_path: "{record}" }} }}
  """
  if padded:
    override += ('model { faster_rcnn { image_resizer { keep_aspect_ratio_resizer { '
                 'pad_to_max_dimension: true } } } }')
  text = open(config_path, encoding='utf-8').read()
  text = text.replace('input_path: "PATH_TO_BE_CONFIGURED', 'input_path: "unused')
  path = os.path.join(os.path.dirname(record), 'padded.config' if padded else 'unpadded.config')
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  configs = validation.load_and_validate(path, override, mode='train')
  configs['train_input_config'].tf_record_input_reader.ClearField('input_path')
  configs['train_input_config'].tf_record_input_reader.input_path.append(record)
  trainer = train_loop._Trainer(configs, tf.distribute.get_strategy(), seed=0)  # pylint: disable=protected-access
  return trainer, iter(trainer.dataset), configs


def _pixels_per_image(configs, model):
  """Pixels of every image as the input pipeline hands it to the model (padding included)."""
  from mtl_ssl.builders import dataset_builder  # pylint: disable=import-outside-toplevel
  reader = type(configs['train_input_config'])()
  reader.CopyFrom(configs['train_input_config'])
  reader.shuffle, reader.num_epochs = False, 1
  dataset = dataset_builder.build(reader, 1, model_config=configs['model'], is_training=False,
                                  model_preprocess_fn=model.preprocess)
  return [int(features['image'].shape[1] * features['image'].shape[2])
          for features, _ in dataset]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='faster_rcnn_resnet101_voc07_baseline')
  parser.add_argument('--steps', type=int, default=6)
  args = parser.parse_args()
  repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
  config_path = os.path.join(repo, 'pipeline_configs', 'paper', args.config + '.config')
  with tempfile.TemporaryDirectory() as directory:
    record = _write_records(directory)
    variants = {'padded to 1024x1024': _trainer(config_path, record, True),
                'unpadded (now)': _trainer(config_path, record, False)}
    times = {name: [] for name in variants}
    pixels = {}
    for name, (trainer, iterator, configs) in variants.items():  # trace + warm up
      trainer.step_fn(iterator)
      pixels[name] = _pixels_per_image(configs, trainer.model)
    for _ in range(args.steps):
      for name, (trainer, iterator, _) in variants.items():
        start = time.perf_counter()
        trainer.step_fn(iterator)
        times[name].append(time.perf_counter() - start)
  load = os.getloadavg()[0]
  print(f'\n{args.config}, batch 1, {args.steps} steps per variant, interleaved; '
        f'load average {load:.1f} on {os.cpu_count()} cores')
  print('| input | pixels per image | s / step (median) |')
  print('|---|---|---|')
  for name in variants:
    print(f'| {name} | {statistics.mean(pixels[name]):,.0f} | '
          f'{statistics.median(times[name]):.2f} |')
  names = list(variants)
  print(f'| padded / unpadded | {statistics.mean(pixels[names[0]]) / statistics.mean(pixels[names[1]]):.2f}x '
        f'| {statistics.median(times[names[0]]) / statistics.median(times[names[1]]):.2f}x |')


if __name__ == '__main__':
  main()
