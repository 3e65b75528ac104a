"""PostProcessing proto -> SecondStagePostprocessor (per-class NMS + score
converter, OD API post_processing_builder semantics)."""
from mtl_ssl.meta_arch import postprocess

_CONVERTERS = {0: 'IDENTITY', 1: 'SIGMOID', 2: 'SOFTMAX'}


def build(post_processing_config):
  """Unset fields take the proto defaults (IDENTITY converter, as the OD API;
  Faster R-CNN configs set SOFTMAX)."""
  cfg = post_processing_config
  nms = cfg.batch_non_max_suppression
  if nms.soft_nms_sigma:
    raise ValueError('second_stage_post_processing.batch_non_max_suppression.'
                     'soft_nms_sigma is not supported (hard NMS only)')
  if nms.max_classes_per_detection != 1:
    raise ValueError('batch_non_max_suppression.max_classes_per_detection must '
                     'be 1, got %d' % nms.max_classes_per_detection)
  if cfg.HasField('calibration_config'):
    raise ValueError('second_stage_post_processing.calibration_config is not '
                     'supported')
  if cfg.score_converter not in _CONVERTERS:
    raise ValueError('second_stage_post_processing.score_converter %d is '
                     'unknown' % cfg.score_converter)
  return postprocess.SecondStagePostprocessor(
      score_converter=_CONVERTERS[cfg.score_converter],
      logit_scale=cfg.logit_scale,
      score_threshold=nms.score_threshold,
      iou_threshold=nms.iou_threshold,
      max_detections_per_class=nms.max_detections_per_class,
      max_total_detections=nms.max_total_detections,
      use_class_agnostic_nms=nms.use_class_agnostic_nms)
