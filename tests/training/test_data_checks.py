"""Warnings for small dense objects and one-class data: detection caps, anchors, closeness."""
import os
import warnings

import numpy as np
import pytest

import tiny_pipeline
from mtl_ssl.config import config_util
from mtl_ssl.config import validation
from mtl_ssl.config.errors import ConfigAdviceWarning
from mtl_ssl.data.fields import InputDataFields as fields
from mtl_ssl.data.scenes import generator
from mtl_ssl.training import data_checks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENES_MTL = os.path.join(REPO, 'pipeline_configs', 'scenes',
                          'faster_rcnn_mobilenet_v1_scenes_mtl.config')
# the aerial-trees setting that first showed the problems: 400x400 photos resized to 256,
# anchors of 32/64/128 px, 20 detections per class
TREES = """
  faster_rcnn { num_classes: 1
    first_stage_max_proposals: 64
    first_stage_anchor_generator { grid_anchor_generator {
      scales: [0.125, 0.25, 0.5] aspect_ratios: [0.5, 1.0, 2.0] height_stride: 16 width_stride: 16 } }
    second_stage_post_processing { batch_non_max_suppression {
      max_detections_per_class: 20 max_total_detections: 50 } } }
"""


def _model(text):
  pipeline = config_util.parse_pipeline_text(f'model {{ {text} }}')
  return pipeline.model


def _batch(boxes_per_image, classes_per_image, num_classes, size):
  """Numpy (features, labels) of the input pipeline's layout, boxes normalized."""
  n = max(len(b) for b in boxes_per_image)
  boxes = np.zeros((len(boxes_per_image), n, 4), np.float32)
  classes = np.zeros((len(boxes_per_image), n, num_classes), np.float32)
  for i, (image_boxes, image_classes) in enumerate(zip(boxes_per_image, classes_per_image)):
    boxes[i, :len(image_boxes)] = image_boxes
    classes[i, np.arange(len(image_classes)), np.asarray(image_classes, int)] = 1.0
  features = {fields.true_image_shape: np.array([[size, size, 3]] * len(boxes_per_image))}
  labels = {fields.groundtruth_boxes: boxes, fields.groundtruth_classes: classes,
            fields.num_groundtruth_boxes: np.array([len(b) for b in boxes_per_image])}
  return features, labels


def _trees(num_images=4, per_image=40, seed=0):
  """~24 px trees in 400 px photos (normalized boxes), one class."""
  rng = np.random.default_rng(seed)
  images = []
  for _ in range(num_images):
    corner = rng.uniform(0, 376, (per_image, 2))
    pixels = np.concatenate([corner, corner + 24.0], axis=1)
    images.append(pixels / 400.0)
  return images


def test_recall_bound_hand_worked():
  # one class: 30 objects capped at 20, 10 kept whole -> 30 / 40
  assert data_checks.recall_bound([[30], [10]], 20, 50) == pytest.approx(0.75)
  # two classes of 15 and 10 objects: 25 after the per-class cap, 20 after the total cap
  assert data_checks.recall_bound([[15, 10]], 20, 20) == pytest.approx(0.8)
  assert data_checks.recall_bound([[3, 2], [0, 1]], 20, 50) == 1.0
  assert data_checks.recall_bound(np.zeros((2, 3)), 1, 1) == 1.0


def test_best_centred_iou_and_anchor_shapes():
  assert data_checks.best_centred_iou([[15, 15]], [[32, 32], [64, 64]])[0] == pytest.approx(
      225 / 1024)
  assert data_checks.best_centred_iou([[32, 16]], [[32, 32]])[0] == pytest.approx(0.5)
  assert data_checks.best_centred_iou([[32, 16]], [[32, 32], [32, 16]])[0] == pytest.approx(1.0)
  anchors = data_checks.anchor_shapes(_model(TREES))
  sides = sorted({round(float(np.sqrt(h * w))) for h, w in anchors})
  assert sides == [32, 64, 128] and len(anchors) == 9  # 3 scales x 3 ratios, base 256


def test_anchor_shapes_of_an_fpn_multiscale_generator_cover_every_level():
  anchors = data_checks.anchor_shapes(_model("""
    faster_rcnn { num_classes: 2 first_stage_anchor_generator { multiscale_anchor_generator {
      min_level: 3 max_level: 6 anchor_scale: 4.0 aspect_ratios: [1.0, 2.0, 0.5]
      scales_per_octave: 2 normalize_coordinates: false } } }"""))
  sides = sorted({round(float(np.sqrt(h * w))) for h, w in anchors})
  # anchor_scale x stride x 2^(k/2): 32, 45 (level 3) ... 128, 181 (level 5), 256, 362 (level 6)
  assert sides == [32, 45, 64, 91, 128, 181, 256, 362] and len(anchors) == 4 * 2 * 3


def test_aerial_trees_get_both_warnings():
  summary = data_checks.GroundTruthSummary()
  summary.add_batch(*_batch(_trees(), [[0] * 40] * 4, 1, 256))
  messages = summary.warnings(_model(TREES))
  assert len(messages) == 2
  assert 'limit the recall to 50.0%' in messages[0]  # 20 of 40 per image
  assert 'max_detections_per_class 20' in messages[0] and '40 objects of one class' in messages[0]
  assert '100% of the objects fit no anchor shape' in messages[1]
  assert 'median 15 px' in messages[1] and 'anchors 32-128 px' in messages[1]

  fixed = _model(TREES.replace('max_detections_per_class: 20 max_total_detections: 50',
                               'max_detections_per_class: 100 max_total_detections: 100')
                 .replace('first_stage_max_proposals: 64', 'first_stage_max_proposals: 300')
                 .replace('scales: [0.125, 0.25, 0.5]', 'scales: [0.0625, 0.125, 0.25]'))
  assert summary.warnings(fixed) == []


def test_proposals_cap_the_detections_too():
  summary = data_checks.GroundTruthSummary()
  summary.add_batch(*_batch(_trees(per_image=40), [[0] * 40] * 4, 1, 256))
  model = _model(TREES.replace('max_detections_per_class: 20 max_total_detections: 50',
                               'max_detections_per_class: 100 max_total_detections: 100'))
  assert not any('limit the recall' in m for m in summary.warnings(model))  # 64 >= 40
  model.faster_rcnn.first_stage_max_proposals = 30  # at most 30 boxes per class survive
  assert 'limit the recall to 75.0%' in summary.warnings(model)[0]


def test_shipped_scenes_config_fits_the_scenes_data():
  config = generator.SceneConfig(num_train_images=0, num_test_images=24, objects='subset')
  scenes = generator.SceneGenerator(config)
  boxes, classes = [], []
  for index in range(config.num_test_images):
    scene = scenes.make_scene('test', index)
    boxes.append(scene.normalized_boxes())
    classes.append(scene.classes)
  summary = data_checks.GroundTruthSummary()
  summary.add_batch(*_batch(boxes, classes, 10, 256))
  model = config_util.get_configs_from_pipeline_file(SCENES_MTL)['model']
  assert summary.warnings(model) == []


def test_one_class_closeness_is_flagged_by_validation():
  configs = config_util.get_configs_from_pipeline_file(SCENES_MTL)
  with warnings.catch_warnings():
    warnings.simplefilter('error', ConfigAdviceWarning)
    validation.validate(configs, mode='train')  # 10 classes: no advice
  configs['model'].faster_rcnn.num_classes = 1
  with pytest.warns(ConfigAdviceWarning, match='closeness is on but num_classes is 1'):
    validation.validate(configs, mode='train')
  configs['model'].mtl.closeness = False
  with warnings.catch_warnings():
    warnings.simplefilter('error', ConfigAdviceWarning)
    validation.validate(configs, mode='train')


def test_first_evaluation_warns_once(tmp_path):
  from mtl_ssl.training import eval_loop  # pylint: disable=import-outside-toplevel
  data_dir = tiny_pipeline.write_scenes(tmp_path / 'data', num_train=2, num_test=4)
  config = tiny_pipeline.write_pipeline(tmp_path, data_dir)
  configs = config_util.get_configs_from_pipeline_file(
      config, 'model { faster_rcnn { second_stage_post_processing { batch_non_max_suppression {'
              ' max_detections_per_class: 1 max_total_detections: 1 } } } }')
  evaluation = eval_loop.CheckpointEvaluation(configs, str(tmp_path / 'model'))
  with pytest.warns(ConfigAdviceWarning, match='detection caps limit the recall'):
    evaluation.evaluate(0)  # random weights are enough: the check looks at the ground truth
  with warnings.catch_warnings():
    warnings.simplefilter('error', ConfigAdviceWarning)
    evaluation.evaluate(0)
