"""Keep-aspect inputs without pad_to_max_dimension (the paper configs): training and evaluation
on images of different sizes, unpadded at batch 1 and padded to the batch's largest image above,
with one trace per step function whatever the sizes."""
import math
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'data'))
import input_records as ir  # pylint: disable=wrong-import-position
import tiny_pipeline  # pylint: disable=wrong-import-position
from mtl_ssl.training import eval_loop  # pylint: disable=wrong-import-position
from mtl_ssl.training import train_loop  # pylint: disable=wrong-import-position

SIZES = [(48, 64), (64, 40), (40, 72), (56, 56)]
KEEP_ASPECT = 'keep_aspect_ratio_resizer { min_dimension: 48 max_dimension: 80 }'


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('sizes')
  rng = np.random.default_rng(0)
  records = []
  for i, (h, w) in enumerate(SIZES * 2):
    boxes = [[0.1, 0.1, 0.6, 0.5], [0.4, 0.45, 0.95, 0.9]]
    records.append(ir.drawn_example(h, w, boxes, list(rng.integers(1, 11, 2)),
                                    source_id=f'im{i}'))
  for name in ('scenes_train.record', 'scenes_test.record'):
    ir.write(root / name, records)
  with open(root / 'scenes_label_map.pbtxt', 'w', encoding='utf-8') as f:
    f.write(''.join(f'item {{ id: {i} name: "c{i}" }}\n' for i in range(1, 11)))
  return str(root)


def _pipeline(root, data_dir, batch_size):
  path = tiny_pipeline.write_pipeline(root, data_dir, batch_size=batch_size, num_steps=2)
  with open(path, encoding='utf-8') as f:
    text = f.read().replace('fixed_shape_resizer { height: 64 width: 64 }', KEEP_ASPECT)
    text = text.replace('batch_size: 2\n}', 'batch_size: 1\n}')  # eval_config: one image
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  return path


@pytest.mark.parametrize('batch_size', [1, 2])
def test_training_on_unpadded_images_of_several_sizes(tmp_path, data_dir, batch_size):
  config = _pipeline(tmp_path, data_dir, batch_size)
  history = train_loop.train_loop(config, str(tmp_path / 'model'), train_steps=2,
                                  checkpoint_every_n=2, log_every_n=1, seed=3,
                                  record_summaries=False)
  assert [h['step'] for h in history] == [1, 2]
  for logged in history:
    assert all(math.isfinite(v) for k, v in logged.items() if k.startswith('Loss/'))
    assert 'Loss/MTL/window_loss' in logged and 'Loss/MTL/foreground_loss' in logged


def test_evaluation_traces_its_step_once_for_every_image_size(tmp_path, data_dir):
  config = _pipeline(tmp_path, data_dir, 1)
  from mtl_ssl.config import validation  # pylint: disable=import-outside-toplevel
  configs = validation.load_and_validate(config, mode='eval')
  evaluation = eval_loop.CheckpointEvaluation(configs, str(tmp_path / 'model'))
  metrics = evaluation.evaluate(step=0)
  assert 'PascalBoxes_Precision/mAP@0.5IOU' in metrics
  sizes = {tuple(f['image'].shape[1:3]) for f, _ in evaluation.dataset.as_numpy_iterator()}
  assert len(sizes) == len(SIZES)  # each batch has its own (unpadded) size ...
  # ... yet one trace serves them all (plus the one that creates the variables; a trace per
  # size would make 1 + 4)
  assert evaluation._eval_step._function.experimental_get_tracing_count() == 2
