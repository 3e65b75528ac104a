"""The shipped pipeline configs (pipeline_configs/**/*.config): they parse, validate, fail clearly
while a PATH_TO_BE_CONFIGURED is left, and build a model that predicts finite outputs (at a tiny
input size, so the big backbones stay cheap). The paper configs' settings are pinned to the
original's in test_paper_configs.py."""
import os
import pathlib
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from mtl_ssl.builders import model_builder
from mtl_ssl.config import config_util
from mtl_ssl.config.errors import ConfigError
from mtl_ssl.config.validation import PLACEHOLDER, load_and_validate, validate
from mtl_ssl.data import label_map_util

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / 'pipeline_configs'
PAPER = sorted((CONFIG_DIR / 'paper').glob('*.config'))
SCENES = sorted((CONFIG_DIR / 'scenes').glob('*.config'))
FPN = sorted((CONFIG_DIR / 'fpn').glob('*.config'))
ALL = sorted(CONFIG_DIR.glob('**/*.config'))
# scenes config families: name prefix -> (feature extractor type, variants shipped)

PAPER_SETUPS = ('faster_rcnn_resnet101_voc07', 'faster_rcnn_resnet101_voc0712',
                'faster_rcnn_resnet101_voc07pp12', 'faster_rcnn_resnet101_coco17',
                'rfcn_resnet101_voc07', 'rfcn_resnet101_voc0712',
                'faster_rcnn_mobilenet_v1_voc07', 'faster_rcnn_mobilenet_v1_voc0712',
                'faster_rcnn_inception_resnet_v2_voc07', 'faster_rcnn_inception_resnet_v2_voc0712')
SCENE_VARIANTS = {  # name suffix -> (window, closeness, edgemask, refine)
    'baseline': None,
    'mtl': (True, True, True, True),
    'window': (True, False, False, False),
    'closeness': (False, True, False, False),
    'foreground': (False, False, True, False),
    'refine': (True, True, False, True),
}
SCENE_FAMILIES = {
    'faster_rcnn_mobilenet_v1_scenes_': ('faster_rcnn_mobilenet_v1_keras', set(SCENE_VARIANTS)),
    'faster_rcnn_mobilenet_v1_fpn_scenes_': ('faster_rcnn_mobilenet_v1_fpn_keras',
                                             {'baseline', 'mtl'}),
}
PLACEHOLDER_FIELDS = {'train_config.fine_tune_checkpoint',
                      'train_input_reader.tf_record_input_reader.input_path[0]',
                      'eval_input_reader[0].tf_record_input_reader.input_path[0]'}
# Big backbones: their build test is skipped when MTL_SSL_FAST_TESTS=1 (a few seconds each).
BIG_BACKBONES = ('faster_rcnn_resnet101_keras', 'faster_rcnn_inception_resnet_v2_keras',
                 'faster_rcnn_resnet50_fpn_keras')


def _ids(paths):
  return [p.relative_to(CONFIG_DIR).as_posix() for p in paths]


def _text(path):
  return path.read_text(encoding='utf-8')


def _configs(path, replace_placeholders=None, override=None):
  text = _text(path)
  if replace_placeholders is not None:
    text = text.replace(PLACEHOLDER, str(replace_placeholders))
  pipeline = config_util.parse_pipeline_text(text, str(path))
  if override:
    config_util.merge_text(override, pipeline, '--config_override')
  return config_util.create_configs_from_pipeline_proto(pipeline)


def _tasks(model_config):
  if not model_config.HasField('mtl'):
    return None
  mtl = model_config.mtl
  return (mtl.window, mtl.closeness, mtl.edgemask, mtl.refine)


def test_the_expected_configs_are_shipped():
  assert {p.name for p in PAPER} == {f'{s}_{v}.config' for s in PAPER_SETUPS
                                     for v in ('baseline', 'mtl')}
  assert {p.name for p in SCENES} == {f'{prefix}{v}.config' for prefix, (_, variants)
                                      in SCENE_FAMILIES.items() for v in variants}
  assert {p.name for p in FPN} == {f'faster_rcnn_resnet50_fpn_coco17_{v}.config'
                                   for v in ('baseline', 'mtl')}
  assert set(ALL) == set(PAPER) | set(SCENES) | set(FPN)


@pytest.mark.parametrize('path', ALL, ids=_ids(ALL))
def test_header_comment_names_target_data_and_hardware(path):
  header = []
  for line in _text(path).splitlines():
    if not line.startswith('#'):
      break
    header.append(line)
  header = '\n'.join(header)
  assert 'Target' in header and 'Data:' in header
  if path in PAPER:
    assert 'Hardware/time' in header and 'configs/test/model' in header
    assert 'mAP' in header


@pytest.mark.parametrize('path', PAPER, ids=_ids(PAPER))
def test_paper_config_left_unset_fails_at_train_time_naming_each_placeholder(path):
  with pytest.raises(ConfigError) as info:
    load_and_validate(path, mode='train')
  error = info.value
  assert str(error).startswith(str(path))
  train_paths = len(_configs(path)['train_input_config'].tf_record_input_reader.input_path)
  expected = PLACEHOLDER_FIELDS | {  # e.g. 07++12 reads three training sets
      f'train_input_reader.tf_record_input_reader.input_path[{i}]' for i in range(train_paths)}
  assert {problem.split(':')[0] for problem in error.problems} == expected
  assert all(PLACEHOLDER in problem for problem in error.problems)
  # Nothing else is missing: the model part alone validates for export as shipped.
  validate(_configs(path), mode='export', source=str(path))


@pytest.mark.parametrize('path', ALL, ids=_ids(ALL))
def test_config_validates_without_warnings_once_paths_are_set(path, tmp_path):
  configs = _configs(path, replace_placeholders=tmp_path)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    ignored = validate(configs, mode='train', source=str(path))
  assert ignored == [] and not caught, [str(w.message) for w in caught]


@pytest.mark.parametrize('path', PAPER, ids=_ids(PAPER))
def test_paper_label_maps_are_the_shipped_ones_and_fit_num_classes(path):
  configs = _configs(path)
  readers = [configs['train_input_config']] + configs['eval_input_configs']
  for reader in readers:
    label_map = REPO / reader.label_map_path
    assert label_map.is_file(), reader.label_map_path
    assert label_map.parent == REPO / 'mtl_ssl' / 'data' / 'label_maps'
    assert (label_map_util.get_max_label_map_index(label_map_util.load_labelmap(str(label_map)))
            == configs['model'].faster_rcnn.num_classes)


@pytest.mark.parametrize('path', SCENES, ids=_ids(SCENES))
def test_scenes_config_is_small_and_reads_data_scenes(path):
  configs = _configs(path)
  fr = configs['model'].faster_rcnn
  assert fr.num_classes == 10
  prefix = _scene_family(path)
  assert fr.feature_extractor.type == SCENE_FAMILIES[prefix][0]
  assert 0.0 < fr.feature_extractor.depth_multiplier < 1.0
  resizer = fr.image_resizer.fixed_shape_resizer
  assert (resizer.height, resizer.width) == (256, 256)
  assert fr.first_stage_max_proposals <= 100 and fr.second_stage_batch_size <= 64
  tc = configs['train_config']
  assert 4 <= tc.batch_size <= 8 and 100 <= tc.num_steps <= 3000
  assert not tc.fine_tune_checkpoint  # trained from scratch: runs offline
  assert list(configs['train_input_config'].tf_record_input_reader.input_path) == [
      'data/scenes/scenes_train.record']
  assert list(configs['eval_input_config'].tf_record_input_reader.input_path) == [
      'data/scenes/scenes_test.record']
  for reader in (configs['train_input_config'], configs['eval_input_config']):
    assert reader.label_map_path == 'data/scenes/scenes_label_map.pbtxt'
  variant = path.name[len(prefix):-len('.config')]
  assert _tasks(configs['model']) == SCENE_VARIANTS[variant]
  if variant == 'refine':
    assert configs['model'].mtl.stop_gradient_for_aux_tasks


def _scene_family(path):
  return max((prefix for prefix in SCENE_FAMILIES if path.name.startswith(prefix)), key=len)


def _without_mtl(path):
  configs = _configs(path)
  configs['model'].ClearField('mtl')
  return config_util.create_pipeline_proto_from_configs(configs)


@pytest.mark.parametrize('prefix', sorted(SCENE_FAMILIES))
def test_scenes_configs_differ_only_in_the_mtl_block(prefix):
  family = [path for path in SCENES if _scene_family(path) == prefix]
  baseline = _without_mtl(family[0])
  assert len(family) >= 2 and all(_without_mtl(path) == baseline for path in family[1:])


def test_fpn_coco_configs_are_the_od_api_sample_model_plus_the_mtl_block(tmp_path):
  import sys  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(pathlib.Path(__file__).parent))
  import odapi_sample_configs as samples  # pylint: disable=g-import-not-at-top
  sample = config_util.parse_pipeline_text(samples.ODAPI_FRCNN_R50_FPN_640_TPU8, 'sample').model
  for name in ('use_static_shapes', 'use_matmul_crop_and_resize',
               'use_static_balanced_label_sampler', 'use_matmul_gather_in_matcher'):
    sample.faster_rcnn.ClearField(name)  # TPU-only switches, left out of the shipped configs
  assert _without_mtl(FPN[0]).model == sample
  assert _without_mtl(FPN[1]).model == sample
  assert not _configs(FPN[0])['model'].HasField('mtl')
  mtl = _configs(FPN[1])['model'].mtl
  assert _tasks(_configs(FPN[1])['model']) == (True, True, True, True)
  assert mtl.foreground_feature_level == 4 and mtl.stop_gradient_for_aux_tasks


SMALL_OVERRIDE = """
model { faster_rcnn {
  image_resizer { fixed_shape_resizer { height: 128 width: 128 } }
  first_stage_max_proposals: 16
  second_stage_batch_size: 8
  second_stage_post_processing { batch_non_max_suppression {
      max_detections_per_class: 10 max_total_detections: 20 } }
} }
"""


def _small(path):
  """The config with a --config_override for a 128x128 fixed-shape input and few proposals /
  windows: the same layers and variables, tiny tensors."""
  override = SMALL_OVERRIDE
  if 'mtl {' in _text(path):
    override += 'model { mtl { num_windows: 4 } }'
  return _configs(path, replace_placeholders='/unused', override=override)


def _big(path):
  return _configs(path)['model'].faster_rcnn.feature_extractor.type in BIG_BACKBONES


def _distinct_models(paths):
  """One config per distinct model block (configs that differ only in data, schedule or loss
  weights, e.g. VOC07 / 07+12 / 07++12 of one detector, build the same graph)."""
  seen, kept = set(), []
  for path in paths:
    model = _configs(path)['model']
    for message in (model.faster_rcnn, model.mtl):  # loss weights only scale finite losses
      for field, _ in message.ListFields():
        if field.name.endswith('_loss_weight'):
          message.ClearField(field.name)
    key = model.SerializeToString(deterministic=True)
    if key not in seen:
      seen.add(key)
      kept.append(path)
  return kept


BUILT = _distinct_models(ALL)


@pytest.mark.parametrize('path', [
    pytest.param(p, marks=pytest.mark.skipif(
        _big(p) and os.environ.get('MTL_SSL_FAST_TESTS') == '1',
        reason='MTL_SSL_FAST_TESTS=1 skips building the big backbones')) for p in BUILT
], ids=_ids(BUILT))
def test_config_builds_a_model_that_trains_and_predicts_finite_values(path):
  tf_keras.backend.clear_session()
  configs = _small(path)
  num_classes = configs['model'].faster_rcnn.num_classes
  model = model_builder.build(configs['model'], is_training=True)
  rng = np.random.default_rng(0)
  images, shapes = model.preprocess(tf.constant(rng.uniform(0, 255, [1, 200, 160, 3]), tf.float32))
  assert images.shape[1:3] == (128, 128)
  model.provide_groundtruth([tf.constant([[0.1, 0.1, 0.6, 0.5], [0.4, 0.45, 0.95, 0.9]])],
                            [tf.one_hot([0, num_classes - 1], num_classes)])
  predictions = model.predict(images, shapes, training=True)
  losses = model.loss(predictions, shapes)
  window, closeness, edgemask, refine = _tasks(configs['model']) or (False,) * 4
  expected = {'Loss/RPNLoss/localization_loss', 'Loss/RPNLoss/objectness_loss',
              'Loss/BoxClassifierLoss/localization_loss',
              'Loss/BoxClassifierLoss/classification_loss'}
  expected |= {name for name, on in (('Loss/MTL/window_loss', window),
                                     ('Loss/MTL/closeness_loss', closeness),
                                     ('Loss/MTL/foreground_loss', edgemask),
                                     ('Loss/MTL/refined_classification_loss', refine)) if on}
  assert set(losses) == expected
  for name, value in losses.items():
    assert np.isfinite(value.numpy()), name
  detections = model.postprocess(predictions, shapes)
  for name in ('detection_boxes', 'detection_scores', 'detection_classes', 'num_detections'):
    assert np.all(np.isfinite(detections[name].numpy())), name
  assert detections['detection_boxes'].shape[:2] == (1, 20)
  classes = detections['detection_classes'].numpy()
  assert np.all((classes >= 0) & (classes < num_classes))
  if refine:
    assert predictions['mtl_refined_class_logits'].shape[-1] == num_classes + 1
  if not _big(path):  # the inference graph too (all proposals, refinement at test time)
    model = model_builder.build(configs['model'], is_training=False)
    predictions = model.predict(images, shapes, training=False)
    detections = model.postprocess(predictions, shapes)
    for name in ('detection_boxes', 'detection_scores', 'num_detections'):
      assert np.all(np.isfinite(detections[name].numpy())), name
    assert ('mtl_refined_class_logits' in predictions) == refine
