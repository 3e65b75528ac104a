"""Region proposal network: head, proposals and loss (OD API first stage).

Head: a kernel_size x kernel_size conv to `depth` channels with relu6 (as the
OD API's RPNConv), then 1x1 convs to A * 4 box encodings and A * 2 objectness
logits (background, object), A anchors per location.
Proposals: decode at the anchors, softmax objectness, clip to the true image,
NMS (first_stage_* settings), padded to max_proposals.
Loss: anchors matched at IoU 0.7 / 0.3 (+ forced best anchor per GT), a
balanced minibatch of `minibatch_size` anchors per image, smooth L1 +
2-way softmax CE, each normalized by the sampled count per image and
averaged over the batch.
"""
import tensorflow as tf
import tf_keras

from mtl_ssl.core import box_ops
from mtl_ssl.core import losses
from mtl_ssl.core import post_processing
from mtl_ssl.core import sampler
from mtl_ssl.meta_arch import targets


class RPNHead(tf_keras.layers.Layer):
  """F [B, h, w, c] -> (box_encodings [B, h*w*A, 4], objectness [B, h*w*A, 2],
  rpn box-predictor features [B, h, w, depth]).

  compute_dtype 'bfloat16': the (costly) kxk conv computes in bfloat16 with float32
  variables (as the backbone with train_config.use_bfloat16); its output and everything
  after it (the 1x1 predictors, decoding, NMS, losses) are float32."""

  def __init__(self, num_anchors_per_location, depth, kernel_size,
               conv_hyperparams, atrous_rate=1, box_code_size=4,
               compute_dtype='float32', name='FirstStageBoxPredictor', **kwargs):
    super().__init__(name=name, **kwargs)
    self._num_anchors = int(num_anchors_per_location)
    self._code_size = int(box_code_size)
    params = conv_hyperparams.params()
    conv_dtype = {'float32': None, 'bfloat16': 'mixed_bfloat16'}[compute_dtype]
    self.rpn_conv = tf_keras.layers.Conv2D(
        depth, kernel_size, padding='same', dilation_rate=atrous_rate,
        name='RPNConv', dtype=conv_dtype, **params)
    self.rpn_batch_norm = conv_hyperparams.build_batch_norm('RPNBatchNorm')
    self.box_encoder = tf_keras.layers.Conv2D(
        self._num_anchors * self._code_size, 1, name='BoxEncodingPredictor',
        **conv_hyperparams.params(use_bias=True))
    self.class_predictor = tf_keras.layers.Conv2D(
        self._num_anchors * 2, 1, name='ClassPredictor',
        **conv_hyperparams.params(use_bias=True))

  def call(self, features, training=None):
    net = self.rpn_conv(features)
    if self.rpn_batch_norm is not None:
      net = self.rpn_batch_norm(net, training=training)
    net = tf.cast(tf.nn.relu6(net), tf.float32)
    batch = tf.shape(features)[0]
    encodings = tf.reshape(self.box_encoder(net), [batch, -1, self._code_size])
    objectness = tf.reshape(self.class_predictor(net), [batch, -1, 2])
    return encodings, objectness, net


def _batched(anchors):
  """Anchors [A, 4] (shared) or [B, A, 4] (per image) -> a rank-3 tensor."""
  return anchors[tf.newaxis] if anchors.shape.rank == 2 else anchors


def anchor_validity(anchors, true_image_shapes, is_training,
                    clip_anchors_to_image):
  """(anchors [B, A, 4], valid [B, A]) against each image's TRUE extent.

  As the original TF1 code, which trained unpadded at batch 1 (its image window
  was the true image): in training, anchors not fully inside the true image are
  invalid, i.e. ignored by the RPN sampler (the OD API's prune_outside_window),
  unless clip_anchors_to_image clips them instead; at inference they are
  clipped. So anchors lying over zero padding are never counted as negatives,
  whatever the batch's padding. (The OD API TF2 uses the padded image's window;
  the two agree on unpadded images.)
  """
  window = box_ops.true_image_window(true_image_shapes)  # [B, 4]
  per_image = tf.tile(anchors[tf.newaxis], [tf.shape(window)[0], 1, 1])
  if is_training and not clip_anchors_to_image:
    return per_image, box_ops.inside_window(per_image, window)
  clipped = box_ops.clip_to_window(per_image, window)
  return clipped, box_ops.area(clipped) > 0.0


def generate_proposals(box_encodings, objectness, anchors, anchor_valid,
                       true_image_shapes, box_coder, score_threshold,
                       iou_threshold, max_proposals):
  """-> (boxes [B, P, 4] absolute, clipped to the true image; scores [B, P];
  num_proposals [B]). No gradient flows into the proposals. anchors [B, A, 4]
  or [A, 4], anchor_valid [B, A] or [A]."""
  decoded = box_coder.decode(box_encodings, _batched(anchors))
  scores = tf.nn.softmax(objectness, axis=-1)[..., 1]
  valid = anchor_valid if anchor_valid.shape.rank == 2 else anchor_valid[tf.newaxis]
  scores = tf.where(valid, scores, tf.minimum(scores, score_threshold))
  nms = post_processing.batch_multiclass_nms(
      decoded[:, :, tf.newaxis], scores[..., tf.newaxis],
      score_threshold=score_threshold, iou_threshold=iou_threshold,
      max_size_per_class=max_proposals, max_total_size=max_proposals,
      clip_window=box_ops.true_image_window(true_image_shapes))
  return (tf.stop_gradient(nms['boxes']), tf.stop_gradient(nms['scores']),
          nms['num_detections'])


def rpn_loss(box_encodings, objectness, anchors, anchor_valid, gt_boxes_abs,
             gt_valid, gt_weights, box_coder, minibatch_size,
             positive_fraction, localization_loss_fn=None):
  """-> (localization_loss, objectness_loss), unweighted scalars."""
  if localization_loss_fn is None:
    localization_loss_fn = losses.weighted_smooth_l1
  valid = anchor_valid if anchor_valid.shape.rank == 2 else anchor_valid[tf.newaxis]
  t = targets.assign(_batched(anchors), valid,
                     gt_boxes_abs, gt_valid, gt_weights, box_coder,
                     matched_threshold=0.7, unmatched_threshold=0.3,
                     force_match_for_each_row=True)
  candidates = t['cls_weights'] > 0.0
  _, _, sampled = sampler.balanced_sample(candidates, t['positive'],
                                          minibatch_size, positive_fraction)
  sampled = tf.cast(sampled, tf.float32)
  normalizer = tf.maximum(tf.reduce_sum(sampled, axis=1), 1.0)
  loc = localization_loss_fn(box_encodings, t['reg_targets'],
                             sampled * t['reg_weights'])
  one_hot = tf.one_hot(tf.cast(t['positive'], tf.int32), 2)
  obj = losses.weighted_softmax_cross_entropy(objectness, one_hot, sampled)
  loc_loss = tf.reduce_mean(tf.reduce_sum(loc, axis=1) / normalizer)
  obj_loss = tf.reduce_mean(tf.reduce_sum(obj, axis=1) / normalizer)
  return loc_loss, obj_loss
