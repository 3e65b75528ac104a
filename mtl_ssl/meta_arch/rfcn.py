"""R-FCN meta-architecture (OD API rfcn_meta_arch): Faster R-CNN's first
stage, then the box-classifier stage runs once on the whole feature map and
an rfcn_box_predictor pools class logits and per-class box encodings at the
proposals with position-sensitive RoI pooling."""
from mtl_ssl.meta_arch import faster_rcnn


class RFCNMetaArch(faster_rcnn.FasterRCNNMetaArch):
  """R-FCN; everything but the second stage is Faster R-CNN's."""

  meta_arch_name = 'rfcn'

  def __init__(self, *args, name='RFCN', **kwargs):
    super().__init__(*args, name=name, **kwargs)
    if not hasattr(self._box_predictor, 'ps_pool'):
      raise ValueError('R-FCN needs an rfcn_box_predictor as '
                       'second_stage_box_predictor')

  def _predict_second_stage(self, features, boxes_normalized, training):
    classifier_features = self._box_classifier_model(features,
                                                     training=training)
    encodings, logits = self._box_predictor(classifier_features,
                                            boxes_normalized,
                                            training=training)
    return {
        'box_classifier_features': classifier_features,
        'refined_box_encodings': encodings,
        'class_predictions_with_background': logits,
    }
