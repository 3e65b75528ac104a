"""DetectionModel proto -> Faster R-CNN (C4 or FPN) or R-FCN (with the MTL
add-on when model.mtl turns a task on).

R-FCN is chosen, as in the OD API, by an rfcn_box_predictor in
second_stage_box_predictor; a mask_rcnn_box_predictor gives Faster R-CNN.
"""
from mtl_ssl import backbones
from mtl_ssl.builders import hyperparams_builder
from mtl_ssl.builders import losses_builder
from mtl_ssl.builders import post_processing_builder
from mtl_ssl.core import anchor_generator
from mtl_ssl.data import resizers
from mtl_ssl.meta_arch import box_predictors
from mtl_ssl.meta_arch import faster_rcnn
from mtl_ssl.meta_arch import rfcn

_PREFIX = 'model.faster_rcnn'


def _hyperparams(message, field):
  value = getattr(message, field) if message.HasField(field) else None
  return hyperparams_builder.KerasLayerHyperparams(value, field)


def _positive(cfg, field):
  value = getattr(cfg, field)
  if value < 1:
    raise ValueError('%s.%s must be >= 1, got %s' % (_PREFIX, field, value))
  return value


def _box_predictor(cfg, num_classes):
  predictor = cfg.second_stage_box_predictor
  which = predictor.WhichOneof('box_predictor_oneof')
  trainable = predictor.trainable
  if which == 'mask_rcnn_box_predictor':
    p = predictor.mask_rcnn_box_predictor
    if p.predict_instance_masks or p.predict_keypoints:
      raise ValueError('%s.second_stage_box_predictor.mask_rcnn_box_predictor: '
                       'instance masks / keypoints are not supported' % _PREFIX)
    for field in ('initial_crop_size', 'maxpool_kernel_size', 'maxpool_stride'):
      _positive(cfg, field)
    return faster_rcnn.FasterRCNNMetaArch, box_predictors.MaskRCNNBoxPredictor(
        num_classes, _hyperparams(p, 'fc_hyperparams'),
        use_dropout=p.use_dropout,
        dropout_keep_probability=p.dropout_keep_probability,
        box_code_size=p.box_code_size,
        share_box_across_classes=p.share_box_across_classes,
        spatial_average=p.spatial_average, trainable=trainable)
  if which == 'rfcn_box_predictor':
    p = predictor.rfcn_box_predictor
    return rfcn.RFCNMetaArch, box_predictors.RfcnBoxPredictor(
        num_classes, _hyperparams(p, 'conv_hyperparams'),
        num_spatial_bins=(p.num_spatial_bins_height, p.num_spatial_bins_width),
        depth=p.depth, crop_size=(p.crop_height, p.crop_width),
        box_code_size=p.box_code_size, trainable=trainable)
  raise ValueError('%s.second_stage_box_predictor must be a '
                   'mask_rcnn_box_predictor or an rfcn_box_predictor, got %s' %
                   (_PREFIX, which or 'nothing'))


def build(model_config, is_training, max_num_groundtruth_boxes=100,
          use_bfloat16=False, **feature_extractor_overrides):
  """DetectionModel proto -> FasterRCNNMetaArch / RFCNMetaArch.

  use_bfloat16 (train_config.use_bfloat16 of the pipeline, also for eval and
  export): the backbone, the box-classifier stages and the RPN conv compute in
  bfloat16 with float32 variables; heads, box coding, NMS and losses stay
  float32 (docs/performance.md).

  max_num_groundtruth_boxes: the static row count ground truth is padded to
  when provide_groundtruth gets lists of unknown length (rows beyond it are
  dropped): pass train_config.max_number_of_boxes.
  feature_extractor_overrides go to mtl_ssl.backbones.build (e.g.
  depth_multiplier=0.25 for a small MobileNet in tests).
  """
  which = model_config.WhichOneof('model')
  if which != 'faster_rcnn':
    raise ValueError('model: only faster_rcnn { ... } is supported, got %s' %
                     (which or 'nothing'))
  cfg = model_config.faster_rcnn
  num_classes = _positive(cfg, 'num_classes')
  if cfg.number_of_stages != 2:
    raise ValueError('%s.number_of_stages must be 2, got %d' %
                     (_PREFIX, cfg.number_of_stages))
  for field in ('hard_example_miner', 'context_config'):
    if cfg.HasField(field):
      raise ValueError('%s.%s is not supported' % (_PREFIX, field))
  for field in ('feature_extractor', 'image_resizer',
                'first_stage_anchor_generator', 'second_stage_box_predictor'):
    if not cfg.HasField(field):
      raise ValueError('%s.%s is required' % (_PREFIX, field))
  meta_arch_cls, box_predictor = _box_predictor(cfg, num_classes)
  # FPN ignores use_bfloat16 (config validation warns): the OD API's FPN samples set it for TPUs
  if use_bfloat16 and cfg.feature_extractor.type not in backbones.FPN_TYPES:
    feature_extractor_overrides.setdefault('compute_dtype', 'bfloat16')
  if (meta_arch_cls is rfcn.RFCNMetaArch and
      cfg.feature_extractor.type in backbones.FPN_TYPES):
    raise ValueError('%s: rfcn_box_predictor needs a C4 feature extractor (one stride-16 '
                     'map), got %s' % (_PREFIX, cfg.feature_extractor.type))
  feature_extractor = backbones.build(
      cfg.feature_extractor, is_training,
      first_stage_features_stride=cfg.feature_extractor.first_stage_features_stride,
      **feature_extractor_overrides)
  mtl_config = model_config.mtl if model_config.HasField('mtl') else None
  return meta_arch_cls(
      is_training=is_training,
      num_classes=num_classes,
      image_resizer_fn=resizers.build(cfg.image_resizer),
      feature_extractor=feature_extractor,
      first_stage_anchor_generator=anchor_generator.build(
          cfg.first_stage_anchor_generator),
      first_stage_box_predictor_conv_hyperparams=_hyperparams(
          cfg, 'first_stage_box_predictor_conv_hyperparams'),
      second_stage_box_predictor=box_predictor,
      second_stage_postprocessor=post_processing_builder.build(
          cfg.second_stage_post_processing),
      first_stage_atrous_rate=_positive(cfg, 'first_stage_atrous_rate'),
      first_stage_box_predictor_kernel_size=_positive(
          cfg, 'first_stage_box_predictor_kernel_size'),
      first_stage_box_predictor_depth=_positive(
          cfg, 'first_stage_box_predictor_depth'),
      first_stage_minibatch_size=_positive(cfg, 'first_stage_minibatch_size'),
      first_stage_positive_balance_fraction=(
          cfg.first_stage_positive_balance_fraction),
      first_stage_nms_score_threshold=cfg.first_stage_nms_score_threshold,
      first_stage_nms_iou_threshold=cfg.first_stage_nms_iou_threshold,
      first_stage_max_proposals=_positive(cfg, 'first_stage_max_proposals'),
      first_stage_localization_loss_weight=(
          cfg.first_stage_localization_loss_weight),
      first_stage_objectness_loss_weight=cfg.first_stage_objectness_loss_weight,
      initial_crop_size=cfg.initial_crop_size,
      maxpool_kernel_size=cfg.maxpool_kernel_size,
      maxpool_stride=cfg.maxpool_stride,
      second_stage_batch_size=_positive(cfg, 'second_stage_batch_size'),
      second_stage_balance_fraction=cfg.second_stage_balance_fraction,
      second_stage_localization_loss_weight=(
          cfg.second_stage_localization_loss_weight),
      second_stage_classification_loss_weight=(
          cfg.second_stage_classification_loss_weight),
      second_stage_classification_loss_fn=(
          losses_builder.build_faster_rcnn_classification_loss(
              cfg.second_stage_classification_loss)),
      clip_anchors_to_image=cfg.clip_anchors_to_image,
      first_stage_localization_loss_sigma=cfg.first_stage_localization_loss_sigma,
      mtl_config=mtl_config,
      max_num_groundtruth_boxes=max_num_groundtruth_boxes)
