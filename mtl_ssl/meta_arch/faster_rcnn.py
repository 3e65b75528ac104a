"""Faster R-CNN (C4 and FPN) meta-architecture, OD API semantics, static shapes.

images -> proposal extractor -> F (stride 16) -> RPN -> proposals (NMS,
clipped to the true image, padded to first_stage_max_proposals) -> in
training a balanced sample of second_stage_batch_size proposals per image ->
crop_and_pool(F) -> box-classifier stage -> box predictor -> per-class NMS.
FPN: F is a list of pyramid levels, the images are padded to a multiple of 32,
and the RPN head, anchors and crops are the multi-level ones of multilevel.py.
Coordinates: anchors and proposals are absolute pixels of the padded image
(the true image at its top-left); crops use boxes normalized w.r.t. the
padded image; ground truth and detections are normalized w.r.t. the true
image. Prediction tensors keep a [B, P, ...] layout.
"""
import contextlib
import functools

import tensorflow as tf

from mtl_ssl.core import box_coder as box_coder_lib
from mtl_ssl.core import box_ops
from mtl_ssl.core import losses
from mtl_ssl.core import sampler
from mtl_ssl.meta_arch import model
from mtl_ssl.meta_arch import mtl_hooks
from mtl_ssl.meta_arch import multilevel
from mtl_ssl.meta_arch import rpn
from mtl_ssl.meta_arch import targets

# plain Python control flow over static values: no AutoGraph conversion
_no_autograph = tf.autograph.experimental.do_not_convert

RPN_LOC = 'Loss/RPNLoss/localization_loss'
RPN_OBJ = 'Loss/RPNLoss/objectness_loss'
BOX_LOC = 'Loss/BoxClassifierLoss/localization_loss'
BOX_CLS = 'Loss/BoxClassifierLoss/classification_loss'


class FasterRCNNMetaArch(model.DetectionModel):
  """Two-stage detector; see the module docstring."""

  meta_arch_name = 'faster_rcnn'

  def __init__(self, is_training, num_classes, image_resizer_fn,
               feature_extractor, first_stage_anchor_generator,
               first_stage_box_predictor_conv_hyperparams,
               second_stage_box_predictor, second_stage_postprocessor,
               first_stage_atrous_rate=1, first_stage_box_predictor_kernel_size=3,
               first_stage_box_predictor_depth=512,
               first_stage_minibatch_size=256,
               first_stage_positive_balance_fraction=0.5,
               first_stage_nms_score_threshold=0.0,
               first_stage_nms_iou_threshold=0.7, first_stage_max_proposals=300,
               first_stage_localization_loss_weight=1.0,
               first_stage_objectness_loss_weight=1.0,
               initial_crop_size=14, maxpool_kernel_size=2, maxpool_stride=2,
               second_stage_batch_size=64, second_stage_balance_fraction=0.25,
               second_stage_localization_loss_weight=1.0,
               second_stage_classification_loss_weight=1.0,
               second_stage_classification_loss_fn=None,
               clip_anchors_to_image=False, box_coder=None, mtl_config=None,
               first_stage_localization_loss_sigma=1.0,
               max_num_groundtruth_boxes=100, name='FasterRCNN', **kwargs):
    super().__init__(num_classes, is_training, max_num_groundtruth_boxes,
                     name=name, **kwargs)
    if is_training and second_stage_batch_size > first_stage_max_proposals:
      raise ValueError(
          'faster_rcnn.second_stage_batch_size (%d) must not exceed '
          'first_stage_max_proposals (%d)' % (second_stage_batch_size,
                                              first_stage_max_proposals))
    for field, value in (('first_stage_positive_balance_fraction',
                          first_stage_positive_balance_fraction),
                         ('second_stage_balance_fraction',
                          second_stage_balance_fraction)):
      if not 0.0 <= value <= 1.0:
        raise ValueError('faster_rcnn.%s must be in [0, 1], got %s' %
                         (field, value))
    multilevel.check_levels(first_stage_anchor_generator, feature_extractor)
    self._image_resizer_fn = image_resizer_fn
    self._feature_extractor = feature_extractor
    self._anchor_generator = first_stage_anchor_generator
    self._box_coder = box_coder or box_coder_lib.FasterRcnnBoxCoder()
    self._first_stage_minibatch_size = int(first_stage_minibatch_size)
    self._first_stage_positive_fraction = float(
        first_stage_positive_balance_fraction)
    self._nms_score_threshold = float(first_stage_nms_score_threshold)
    self._nms_iou_threshold = float(first_stage_nms_iou_threshold)
    self._max_proposals = int(first_stage_max_proposals)
    self._initial_crop_size = int(initial_crop_size)
    self._maxpool_kernel_size = int(maxpool_kernel_size)
    self._maxpool_stride = int(maxpool_stride)
    self._second_stage_batch_size = int(second_stage_batch_size)
    self._second_stage_fraction = float(second_stage_balance_fraction)
    self._postprocessor = second_stage_postprocessor
    self._cls_loss_fn = (second_stage_classification_loss_fn or
                         losses.weighted_softmax_cross_entropy)
    self._clip_anchors_to_image = bool(clip_anchors_to_image)
    if first_stage_localization_loss_sigma <= 0:
      raise ValueError('faster_rcnn.first_stage_localization_loss_sigma must be > 0, got %s' %
                       first_stage_localization_loss_sigma)
    self._rpn_localization_loss_fn = functools.partial(
        losses.weighted_smooth_l1_sigma, sigma=float(first_stage_localization_loss_sigma))
    self._mtl_config = mtl_config
    self.loss_weights = {
        RPN_LOC: float(first_stage_localization_loss_weight),
        RPN_OBJ: float(first_stage_objectness_loss_weight),
        BOX_LOC: float(second_stage_localization_loss_weight),
        BOX_CLS: float(second_stage_classification_loss_weight),
    }
    self._proposal_model = feature_extractor.get_proposal_feature_extractor_model(
        name='FirstStageFeatureExtractor')
    self._box_classifier_model = (
        feature_extractor.get_box_classifier_feature_extractor_model(
            name='SecondStageFeatureExtractor'))
    self._rpn = multilevel.make_rpn_head(
        feature_extractor, first_stage_anchor_generator,
        first_stage_box_predictor_depth, first_stage_box_predictor_kernel_size,
        first_stage_box_predictor_conv_hyperparams, first_stage_atrous_rate,
        compute_dtype=getattr(feature_extractor, 'compute_dtype', 'float32'))
    self._box_predictor = second_stage_box_predictor
    self._crop_fn = multilevel.make_crop_fn(
        feature_extractor, self._initial_crop_size, self._maxpool_kernel_size,
        self._maxpool_stride)
    def crop_fn_of(field):  # mtl.window_crop_size / closeness_crop_size (0: the detector's)
      size = int(getattr(mtl_config, field, 0) or 0)
      return multilevel.make_crop_fn(feature_extractor, size, self._maxpool_kernel_size,
                                     self._maxpool_stride) if size > 0 else None

    self._mtl_heads = mtl_hooks.make_heads(
        mtl_config, num_classes, feature_extractor, self._box_classifier_model,
        self._crop_fn, is_training, self.meta_arch_name,
        rfcn_ps_pool_fn=getattr(second_stage_box_predictor, 'ps_pool', None),
        feature_levels=getattr(feature_extractor, 'feature_levels', None),
        window_crop_fn=crop_fn_of('window_crop_size'),
        closeness_crop_fn=crop_fn_of('closeness_crop_size'))
    if self._mtl_heads is not None:
      # the heads apply their own weights (architecture §6); listed here so
      # every loss weight of the model can be read in one dict
      self.loss_weights.update(self._mtl_heads.loss_weights)
    self._state.mtl_labels = None
    self._state.mtl_paused = False

  @contextlib.contextmanager
  def without_mtl(self):
    """Within it, predict and loss are the detector's alone: the MTL heads do not run (their
    variables get no gradient). mtl.train_every_n_steps traces its detector-only step in here."""
    paused, self._state.mtl_paused = self._state.mtl_paused, True
    try:
      yield
    finally:
      self._state.mtl_paused = paused

  def _active_mtl_heads(self):
    return None if self._state.mtl_paused else self._mtl_heads

  @property
  def feature_extractor(self):
    return self._feature_extractor

  @property
  def mtl_heads(self):
    return self._mtl_heads

  @property
  def max_num_proposals(self):
    return (self._second_stage_batch_size if self._is_training else
            self._max_proposals)

  # -------------------------------------------------------------- preprocess
  @_no_autograph
  def preprocess(self, inputs):
    inputs = tf.convert_to_tensor(inputs, tf.float32)
    if inputs.shape.rank != 4 or inputs.shape[-1] != 3:
      raise ValueError('preprocess expects float32 [batch, height, width, 3], '
                       'got shape %s' % inputs.shape)
    if inputs.shape[0] is not None:
      outputs = [self._image_resizer_fn(image) for image in tf.unstack(inputs)]
      resized = tf.stack([o[0] for o in outputs])
      shapes = tf.stack([tf.cast(o[1], tf.int32) for o in outputs])
    else:
      resized, shapes = tf.map_fn(
          lambda image: self._image_resizer_fn(image), inputs,
          fn_output_signature=(tf.TensorSpec([None, None, 3], tf.float32),
                               tf.TensorSpec([3], tf.int32)))
    return self._feature_extractor.preprocess(resized), shapes

  def _groundtruth_changed(self):
    self._state.mtl_labels = None

  # ----------------------------------------------------------------- predict
  @_no_autograph
  def predict(self, preprocessed_inputs, true_image_shapes, training=None):
    training = self._is_training if training is None else bool(training)
    images = multilevel.pad_images(
        tf.convert_to_tensor(preprocessed_inputs, tf.float32),
        self._feature_extractor)
    true_image_shapes = tf.cast(true_image_shapes, tf.int32)
    image_shape = tf.shape(images)
    features = self._proposal_model(images, training=training)
    box_encodings, objectness, rpn_features = self._rpn(features,
                                                        training=training)
    anchors = multilevel.generate_anchors(self._anchor_generator, features)
    anchors, anchor_valid = rpn.anchor_validity(
        anchors, true_image_shapes, training, self._clip_anchors_to_image)
    proposals, proposal_scores, num_proposals = rpn.generate_proposals(
        box_encodings, objectness, anchors, anchor_valid, true_image_shapes,
        self._box_coder, self._nms_score_threshold, self._nms_iou_threshold,
        self._max_proposals)
    if training:
      proposals, proposal_scores, num_proposals = self._sample_proposals(
          proposals, proposal_scores, num_proposals, true_image_shapes)
    padded_hw = tf.cast(image_shape[1:3], tf.float32)
    boxes_for_crops = box_ops.to_normalized(proposals, padded_hw[0],
                                            padded_hw[1])
    second = self._predict_second_stage(features, boxes_for_crops, training)
    prediction_dict = {
        'image_shape': image_shape,
        'rpn_box_predictor_features': rpn_features,
        'rpn_features_to_crop': features,
        'rpn_box_encodings': box_encodings,
        'rpn_objectness_predictions_with_background': objectness,
        'anchors': anchors,
        'anchor_valid': anchor_valid,
        'proposal_boxes': proposals,
        'proposal_scores': proposal_scores,
        'proposal_boxes_normalized': boxes_for_crops,
        'num_proposals': num_proposals,
    }
    prediction_dict.update(second)
    if self._active_mtl_heads() is not None:
      prediction_dict.update(self._mtl_heads.predict(
          self._mtl_context(prediction_dict, images, true_image_shapes,
                            training)))
    return prediction_dict

  def _predict_second_stage(self, features, boxes_normalized, training):
    """Crops -> box-classifier stage -> predictor, [B, P, ...] outputs."""
    crops = self._crop_fn(features, boxes_normalized)
    classifier_features = self._box_classifier_model(crops, training=training)
    encodings, logits = self._box_predictor(classifier_features,
                                            training=training)
    shape = tf.shape(boxes_normalized)
    return {
        'proposal_crops': crops,
        'box_classifier_features': classifier_features,
        'refined_box_encodings': tf.reshape(
            encodings, tf.concat([shape[:2], tf.shape(encodings)[1:]], 0)),
        'class_predictions_with_background': tf.reshape(
            logits, [shape[0], shape[1], self._num_classes + 1]),
    }

  def _groundtruth_absolute(self, true_image_shapes):
    gt = self._require_groundtruth('training')
    shapes = tf.cast(true_image_shapes, tf.float32)
    return gt, box_ops.to_absolute(gt['boxes'], shapes[:, 0], shapes[:, 1])

  def _sample_proposals(self, proposals, scores, num_proposals,
                        true_image_shapes):
    """OD API _sample_box_classifier_batch: balanced sample of proposals
    matched to GT at IoU 0.5, padded with zeros to second_stage_batch_size."""
    gt, gt_abs = self._groundtruth_absolute(true_image_shapes)
    valid = tf.sequence_mask(num_proposals, proposals.shape[1])
    t = targets.assign(proposals, valid, gt_abs, gt['valid'], gt['weights'],
                       self._box_coder, 0.5, 0.5, False)
    candidates = t['cls_weights'] > 0.0
    # no candidate at all (every match has GT weight 0): take all valid ones
    none = tf.logical_not(tf.reduce_any(candidates, axis=1, keepdims=True))
    candidates |= none & valid
    indices, sampled, _ = sampler.balanced_sample(
        candidates, t['positive'], self._second_stage_batch_size,
        self._second_stage_fraction)
    boxes = tf.gather(proposals, indices, batch_dims=1)
    boxes = tf.where(sampled[..., tf.newaxis], boxes, 0.0)
    scores = tf.where(sampled, tf.gather(scores, indices, batch_dims=1), 0.0)
    return boxes, scores, tf.reduce_sum(tf.cast(sampled, tf.int32), axis=1)

  # -------------------------------------------------------------------- MTL
  def _mtl_labels(self, true_image_shapes):
    if self._state.mtl_labels is None:
      self._state.mtl_labels = mtl_hooks.mtl_groundtruth(
          self._state.groundtruth, self.groundtruth_class_ids(),
          true_image_shapes,
          self._num_classes, self._mtl_config)
    return self._state.mtl_labels

  def _mtl_context(self, prediction_dict, images, true_image_shapes, training):
    shapes = tf.cast(true_image_shapes, tf.float32)
    windows = None
    if self._state.groundtruth is not None:
      windows = self._mtl_labels(true_image_shapes).get('mtl_windows')
    return {
        'feature_map': prediction_dict['rpn_features_to_crop'],
        'image_shape': tf.shape(images),
        'true_image_shapes': true_image_shapes,
        'proposal_boxes_normalized': box_ops.to_normalized(
            prediction_dict['proposal_boxes'], shapes[:, 0], shapes[:, 1]),
        'num_proposals': prediction_dict['num_proposals'],
        'proposal_crops': prediction_dict.get('proposal_crops'),
        'box_classifier_features': prediction_dict['box_classifier_features'],
        'class_logits': prediction_dict['class_predictions_with_background'],
        'windows': windows,
        'groundtruth_provided': self._state.groundtruth is not None,
        'training': training,
    }

  # -------------------------------------------------------------------- loss
  @_no_autograph
  def loss(self, prediction_dict, true_image_shapes):
    gt, gt_abs = self._groundtruth_absolute(true_image_shapes)
    raw = {}
    raw[RPN_LOC], raw[RPN_OBJ] = rpn.rpn_loss(
        prediction_dict['rpn_box_encodings'],
        prediction_dict['rpn_objectness_predictions_with_background'],
        prediction_dict['anchors'], prediction_dict['anchor_valid'], gt_abs,
        gt['valid'], gt['weights'], self._box_coder,
        self._first_stage_minibatch_size, self._first_stage_positive_fraction,
        localization_loss_fn=self._rpn_localization_loss_fn)
    t = self._proposal_targets(prediction_dict, gt, gt_abs)
    raw[BOX_LOC] = self._box_localization_loss(prediction_dict, t)
    cls_loss_fn = functools.partial(self._box_classification_loss, t=t)
    raw[BOX_CLS] = cls_loss_fn(
        prediction_dict['class_predictions_with_background'])
    loss_dict = {key: self.loss_weights[key] * value
                 for key, value in raw.items()}
    if self._active_mtl_heads() is not None:
      proposal_targets = {'matched_gt_indices': t['matches'],
                          'positive_mask': t['positive']}
      loss_dict.update(self._mtl_heads.loss(
          prediction_dict, self._mtl_labels(true_image_shapes),
          proposal_targets, cls_loss_fn))
    return loss_dict

  def _proposal_targets(self, prediction_dict, gt, gt_abs):
    proposals = prediction_dict['proposal_boxes']
    num_proposals = prediction_dict['num_proposals']
    valid = tf.sequence_mask(num_proposals, tf.shape(proposals)[1])
    t = targets.assign(proposals, valid, gt_abs, gt['valid'], gt['weights'],
                       self._box_coder, 0.5, 0.5, False)
    t['cls_targets'] = targets.class_targets_with_background(
        t['matches'], t['positive'], gt['classes'])
    batch = tf.cast(tf.shape(proposals)[0], tf.float32)
    # OD API: per image / max(num_proposals, 1), summed, / batch size
    t['normalizer'] = (tf.maximum(tf.cast(num_proposals, tf.float32), 1.0) *
                       batch)[:, tf.newaxis]
    t['valid'] = valid
    return t

  def _box_localization_loss(self, prediction_dict, t):
    encodings = prediction_dict['refined_box_encodings']  # [B, P, q, 4]
    if encodings.shape[2] == 1:
      selected = encodings[:, :, 0]
    else:
      target_class = tf.argmax(t['cls_targets'][..., 1:], axis=-1,
                               output_type=tf.int32)
      selected = tf.gather(encodings, target_class[..., tf.newaxis],
                           batch_dims=2)[:, :, 0]
    per_box = losses.weighted_smooth_l1(selected, t['reg_targets'],
                                        t['reg_weights'])
    return tf.reduce_sum(per_box / t['normalizer'])

  def _box_classification_loss(self, logits, t):
    """The box classifier's classification loss for any [B, P, C+1] logits
    on the current proposals (also the refined-logits loss of MTL)."""
    per_box = self._cls_loss_fn(logits, t['cls_targets'], t['cls_weights'])
    return tf.reduce_sum(per_box / t['normalizer'])

  # ------------------------------------------------------------- postprocess
  @_no_autograph
  def postprocess(self, prediction_dict, true_image_shapes):
    logits = prediction_dict.get('mtl_refined_class_logits')
    if logits is None:
      logits = prediction_dict['class_predictions_with_background']
    return self._postprocessor(
        prediction_dict['refined_box_encodings'], logits,
        prediction_dict['proposal_boxes'], prediction_dict['num_proposals'],
        tf.cast(true_image_shapes, tf.int32), self._box_coder)

  # ------------------------------------------------------------ bookkeeping
  @_no_autograph
  def regularization_losses(self):
    result = list(self.losses)
    extractor_losses = getattr(self._feature_extractor,
                               'regularization_losses', None)
    if extractor_losses is not None:
      result += list(extractor_losses())
    return result

  def restore_from_objects(self, fine_tune_checkpoint_type='detection'):
    if fine_tune_checkpoint_type == 'classification':
      return self._feature_extractor.classification_backbone_objects()
    if fine_tune_checkpoint_type == 'detection':
      parts = {'_proposal_model': self._proposal_model,
               '_box_classifier_model': self._box_classifier_model,
               '_rpn': self._rpn}
      trunk = self._box_predictor.trunk_layers()
      if trunk:
        parts['_box_predictor'] = tf.train.Checkpoint(**trunk)
      return {'model': tf.train.Checkpoint(**parts)}
    if fine_tune_checkpoint_type == 'full':
      return {'model': self}
    raise ValueError("fine_tune_checkpoint_type must be 'classification', "
                     "'detection' or 'full', got %r" % fine_tune_checkpoint_type)
