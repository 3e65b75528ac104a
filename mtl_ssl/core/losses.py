"""Per-anchor weighted losses (OD API core/losses.py semantics).

Each returns a [B, N] tensor of per-anchor losses already multiplied by the
weights; the meta-architecture sums and normalizes them exactly as the OD API
(RPN: by the number of sampled anchors per image; box classifier: by the
number of sampled proposals per image; both then averaged over the batch).
"""
import tensorflow as tf


def huber(diff, delta=1.0):
  """0.5 x^2 for |x| <= delta, delta * (|x| - 0.5 delta) beyond."""
  abs_diff = tf.abs(diff)
  quadratic = tf.minimum(abs_diff, delta)
  linear = abs_diff - quadratic
  return 0.5 * quadratic * quadratic + delta * linear


def weighted_smooth_l1(predictions, targets, weights, delta=1.0):
  """Smooth L1 (Huber) summed over the code: [B, N, 4] -> [B, N]."""
  per_coord = huber(predictions - targets, delta)
  return tf.reduce_sum(per_coord, axis=-1) * weights


def weighted_smooth_l1_sigma(predictions, targets, weights, sigma=1.0):
  """py-faster-rcnn smooth L1 (the original mtl-ssl's RPN loss, sigma 3): per coordinate
  0.5 (sigma x)^2 for |x| < 1/sigma^2, else |x| - 0.5 / sigma^2; sigma 1 = weighted_smooth_l1."""
  sigma_sq = float(sigma) * float(sigma)
  return weighted_smooth_l1(predictions, targets, weights, delta=1.0 / sigma_sq) * sigma_sq


def weighted_l2(predictions, targets, weights):
  """0.5 * squared error summed over the code (OD API WeightedL2)."""
  diff = (predictions - targets) * weights[..., tf.newaxis]
  return 0.5 * tf.reduce_sum(tf.square(diff), axis=-1)


def weighted_softmax_cross_entropy(logits, targets, weights, logit_scale=1.0):
  """Softmax CE against (soft) one-hot targets: [B, N, C] -> [B, N].

  weights: [B, N] or [B, N, C] (then averaged over C, as the OD API).
  """
  if weights.shape.rank == logits.shape.rank:
    weights = tf.reduce_mean(weights, axis=-1)
  logits = logits / logit_scale
  loss = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
  return loss * weights


def weighted_sigmoid_cross_entropy(logits, targets, weights):
  """Independent sigmoid CE per class, summed over classes: -> [B, N]."""
  if weights.shape.rank != logits.shape.rank:
    weights = weights[..., tf.newaxis]
  loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
  return tf.reduce_sum(loss * weights, axis=-1)


def sigmoid_focal_cross_entropy(logits, targets, weights, gamma=2.0,
                                alpha=None):
  """OD API SigmoidFocalClassificationLoss, summed over classes -> [B, N]."""
  if weights.shape.rank != logits.shape.rank:
    weights = weights[..., tf.newaxis]
  ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
  prob = tf.sigmoid(logits)
  p_t = targets * prob + (1 - targets) * (1 - prob)
  modulator = tf.pow(1.0 - p_t, gamma)
  if alpha is not None:
    modulator *= targets * alpha + (1 - targets) * (1 - alpha)
  return tf.reduce_sum(modulator * ce * weights, axis=-1)
