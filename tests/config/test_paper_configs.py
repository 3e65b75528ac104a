"""Every shipped paper config against the original TF1 values (tests/config/paper_originals.py):
backbone L2, learning-rate boundaries and values, steps, batch, loss weights, stop-gradient
flags, resizer, proposals, RoIs, post-processing and the MTL block, field by field."""
import pathlib

import pytest

import paper_originals as po
from mtl_ssl.config import config_util

REPO = pathlib.Path(__file__).resolve().parents[2]
PAPER_DIR = REPO / 'pipeline_configs' / 'paper'
NAMES = sorted(po.SHIPPED)
approx = pytest.approx


def _configs(name):
  return config_util.get_configs_from_pipeline_file(str(PAPER_DIR / f'{name}.config'))


def _l2(hyperparams):
  return hyperparams.regularizer.l2_regularizer.weight


def test_exactly_the_tabled_configs_are_shipped():
  assert {p.stem for p in PAPER_DIR.glob('*.config')} == set(po.SHIPPED)


@pytest.mark.parametrize('name', NAMES)
def test_model_matches_the_original(name):
  original = po.ORIGINAL[po.SHIPPED[name][0]]
  common = po.COMMON
  configs = _configs(name)
  fr = configs['model'].faster_rcnn
  assert fr.num_classes == original['num_classes']
  resizer = fr.image_resizer.keep_aspect_ratio_resizer
  assert (resizer.min_dimension, resizer.max_dimension) == common['resizer']
  assert not resizer.pad_to_max_dimension  # unpadded at batch 1, as the original
  extractor = fr.feature_extractor
  assert extractor.type == original['backbone']
  assert extractor.first_stage_features_stride == 16
  assert extractor.batch_norm_trainable == common['batch_norm_trainable']
  assert extractor.HasField('conv_hyperparams')  # the backbone L2 is set explicitly
  assert _l2(extractor.conv_hyperparams) == approx(original['backbone_l2'])
  grid = fr.first_stage_anchor_generator.grid_anchor_generator
  assert list(grid.scales) == common['anchor_scales']
  assert list(grid.aspect_ratios) == common['anchor_ratios']
  assert (grid.height_stride, grid.width_stride) == common['anchor_stride']
  assert (grid.height, grid.width, grid.height_offset, grid.width_offset) == (256, 256, 0, 0)
  assert _l2(fr.first_stage_box_predictor_conv_hyperparams) == approx(original['rpn_l2'])
  assert fr.first_stage_minibatch_size == common['rpn_minibatch']
  assert fr.first_stage_positive_balance_fraction == approx(common['rpn_positive_fraction'])
  assert fr.first_stage_nms_iou_threshold == approx(common['rpn_nms_iou'])
  assert fr.first_stage_nms_score_threshold == 0.0
  assert fr.first_stage_max_proposals == common['max_proposals']
  assert (fr.first_stage_localization_loss_weight,
          fr.first_stage_objectness_loss_weight) == common['rpn_loss_weights']
  assert fr.first_stage_localization_loss_sigma == approx(common['rpn_smooth_l1_sigma'])
  assert fr.second_stage_batch_size == common['rois_per_image']
  assert fr.second_stage_balance_fraction == approx(common['roi_positive_fraction'])
  assert (fr.second_stage_localization_loss_weight,
          fr.second_stage_classification_loss_weight) == common['box_loss_weights']
  predictor = fr.second_stage_box_predictor
  if original['arch'] == 'rfcn':
    rfcn = predictor.rfcn_box_predictor
    assert predictor.WhichOneof('box_predictor_oneof') == 'rfcn_box_predictor'
    assert (rfcn.crop_height, rfcn.crop_width) == original['rfcn_crop']
    assert (rfcn.num_spatial_bins_height, rfcn.num_spatial_bins_width) == original['rfcn_bins']
    hyperparams = rfcn.conv_hyperparams
  else:
    assert predictor.WhichOneof('box_predictor_oneof') == 'mask_rcnn_box_predictor'
    assert (fr.initial_crop_size, fr.maxpool_kernel_size, fr.maxpool_stride) == original['crop']
    assert not predictor.mask_rcnn_box_predictor.use_dropout
    hyperparams = predictor.mask_rcnn_box_predictor.fc_hyperparams
  assert _l2(hyperparams) == approx(original['box_l2'])
  assert hyperparams.initializer.WhichOneof('initializer_oneof') == original['box_init']
  nms = fr.second_stage_post_processing.batch_non_max_suppression
  assert nms.iou_threshold == approx(original['box_nms_iou'])
  assert (nms.score_threshold, nms.max_detections_per_class, nms.max_total_detections) == (
      common['score_threshold'], common['max_per_class'], common['max_total'])
  post = fr.second_stage_post_processing
  assert post.DESCRIPTOR.fields_by_name['score_converter'].enum_type.values_by_number[
      post.score_converter].name == 'SOFTMAX'


@pytest.mark.parametrize('name', NAMES)
def test_training_matches_the_original(name):
  original_id, train_sets, eval_set = po.SHIPPED[name]
  original = po.ORIGINAL[original_id]
  common = po.COMMON
  configs = _configs(name)
  tc = configs['train_config']
  assert tc.batch_size == original['batch']
  momentum = tc.optimizer.momentum_optimizer
  assert momentum.momentum_optimizer_value == approx(common['momentum'])
  assert not tc.optimizer.use_moving_average
  schedule = momentum.learning_rate.manual_step_learning_rate
  got = (schedule.initial_learning_rate, [(s.step, s.learning_rate) for s in schedule.schedule])
  expected = original['lr']
  deviation = po.DEVIATIONS.get((original_id, 'lr'))
  if deviation is not None:
    expected = deviation[0]
  assert got[0] == approx(expected[0])
  assert [step for step, _ in got[1]] == [step for step, _ in expected[1]]
  assert [rate for _, rate in got[1]] == approx([rate for _, rate in expected[1]])
  num_steps = original['num_steps'] or po.NUM_STEPS[original_id]
  assert tc.num_steps == num_steps
  assert any(step < num_steps for step, _ in got[1])  # the learning rate drops in the run
  assert tc.gradient_clipping_by_norm == common['clip_norm']
  assert tc.gradient_clipping_per_variable == common['clip_per_variable']
  assert [o.WhichOneof('preprocessing_step') for o in tc.data_augmentation_options] == (
      common['augmentation'])
  assert tc.fine_tune_checkpoint_type == 'classification'
  train_paths = list(configs['train_input_config'].tf_record_input_reader.input_path)
  assert train_paths == [f'PATH_TO_BE_CONFIGURED/{s}.record*' for s in train_sets]
  eval_paths = list(configs['eval_input_config'].tf_record_input_reader.input_path)
  if eval_set == 'voc12_test':  # no public ground truth: evaluation server only
    eval_set = 'voc07_test'
  assert eval_paths == [f'PATH_TO_BE_CONFIGURED/{eval_set}.record*']
  metrics = ('coco_detection_metrics' if original['num_classes'] == 90
             else 'pascal_voc_detection_metrics')
  assert list(configs['eval_config'].metrics_set) == [metrics]


@pytest.mark.parametrize('name', NAMES)
def test_mtl_block_matches_the_original(name):
  original = po.ORIGINAL[po.SHIPPED[name][0]]
  model = _configs(name)['model']
  if original['mtl'] is None:
    assert not model.HasField('mtl') and name.endswith('_baseline')
    return
  assert name.endswith('_mtl')
  expected = dict(po.MTL_COMMON, **original['mtl'])
  mtl = model.mtl
  assert (mtl.window, mtl.closeness, mtl.edgemask, mtl.refine) == expected['tasks']
  assert (mtl.window_class_loss_weight, mtl.closeness_loss_weight,
          mtl.edgemask_loss_weight, mtl.refined_classification_loss_weight) == approx(
              (expected['window_weight'], expected['closeness_weight'],
               expected['edgemask_weight'], expected['refined_weight']))
  for field in ('refine_residue', 'refine_num_fc_layers', 'shared_feature',
                'share_second_stage_init', 'global_closeness', 'edgemask_weighted',
                'stop_gradient_for_prediction_org', 'stop_gradient_for_aux_tasks',
                'labels_in_original_pixels'):
    assert getattr(mtl, field) == expected[field], field
  assert mtl.refine_dropout_rate == approx(expected['refine_dropout_rate'])
  assert mtl.stop_gradient_covers_foreground == expected.get(
      'stop_gradient_covers_foreground', True)
  assert not mtl.closeness_loss_sum_over_images  # see test_paper_originals_notes below
  assert (mtl.num_windows, mtl.window_min_size, mtl.foreground_grid_size,
          mtl.num_context_levels, mtl.foreground_tanh) == (64, 32, 64, 5, False)
  assert mtl.edgemask_predictor.kernel_size == expected['edgemask_kernel_size']
  aux_l2 = [_l2(mtl.refiner_fc_hyperparams), _l2(mtl.edgemask_predictor.conv_hyperparams)]
  for predictor in (mtl.window_box_predictor, mtl.closeness_box_predictor):
    which = predictor.WhichOneof('box_predictor_oneof')
    assert which == ('rfcn_box_predictor' if original['arch'] == 'rfcn'
                     else 'mask_rcnn_box_predictor')
    inner = getattr(predictor, which)
    aux_l2.append(_l2(inner.conv_hyperparams if original['arch'] == 'rfcn'
                      else inner.fc_hyperparams))
  assert aux_l2 == approx([expected['aux_l2']] * 4)


def test_paper_originals_notes():
  # The original ran batch 3 (COCO) as 3 clones x 1 image (one clone cannot concatenate
  # differently sized images, and its refiner reshape fails above one image); slim divides
  # each clone's loss by the number of clones, so its closeness loss is the per-image mean,
  # as here. Every deviation carries its reason.
  assert all(reason for _, reason in po.DEVIATIONS.values())
  assert set(po.NUM_STEPS) == {k for k, v in po.ORIGINAL.items() if v['num_steps'] is None}
