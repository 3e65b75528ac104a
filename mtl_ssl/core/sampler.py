"""Balanced positive/negative minibatch sampler with static shapes.

Semantics of the OD API's BalancedPositiveNegativeSampler (non-static path):
take min(#positives, floor(sample_size * positive_fraction)) random positives,
then fill up to sample_size with random negatives (fewer if there are not
enough). Implemented with random keys + top_k so it is batched, static-shaped
and O(N log S) instead of the OD API static path's [N, N] matmuls.
"""
import tensorflow as tf


def _top_random(mask, keys, k):
  """Indices [B, k] of the k largest keys among mask (others sort last)."""
  masked = tf.where(mask, keys, -1.0)
  return tf.math.top_k(masked, k=k, sorted=True).indices


def balanced_sample(candidate_mask, positive_mask, sample_size,
                    positive_fraction, seed=None):
  """Samples per image.

  Args:
    candidate_mask: bool [B, N], entries that may be sampled.
    positive_mask: bool [B, N], positives (only where candidate_mask).
    sample_size: int, S.
    positive_fraction: float in [0, 1].
    seed: optional op seed.

  Returns:
    indices: int32 [B, S], sampled positions, positives first; padding slots
      repeat a valid position but are marked invalid.
    valid: bool [B, S], which slots hold a sample.
    indicator: bool [B, N], sampled positions.
  """
  if not 0.0 <= positive_fraction <= 1.0:
    raise ValueError('positive_fraction must be in [0, 1], got %s' %
                     positive_fraction)
  sample_size = int(sample_size)
  if sample_size <= 0:
    raise ValueError('sample_size must be positive, got %d' % sample_size)
  candidate_mask = tf.cast(candidate_mask, tf.bool)
  pos = candidate_mask & tf.cast(positive_mask, tf.bool)
  neg = candidate_mask & tf.logical_not(pos)
  num_items = candidate_mask.shape[1]
  dynamic_items = None
  if num_items is None:  # e.g. the anchors of an unpadded image: size known only at run time
    # pad with non-candidates up to >= sample_size columns, so every top_k below is valid
    dynamic_items = tf.shape(candidate_mask)[1]
    extra = [[0, 0], [0, tf.maximum(sample_size - dynamic_items, 0)]]
    pos, neg = tf.pad(pos, extra), tf.pad(neg, extra)
    num_items = sample_size
  max_pos = int(sample_size * positive_fraction)
  num_pos = tf.minimum(tf.reduce_sum(tf.cast(pos, tf.int32), 1), max_pos)
  num_neg = tf.minimum(tf.reduce_sum(tf.cast(neg, tf.int32), 1),
                       sample_size - num_pos)
  keys = tf.random.uniform(tf.shape(pos), seed=seed)
  k_pos = min(max_pos, num_items)
  k_neg = min(sample_size, num_items)
  parts, part_valid = [], []
  if k_pos > 0:
    parts.append(_top_random(pos, keys, k_pos))
    part_valid.append(tf.range(k_pos)[tf.newaxis] < num_pos[:, tf.newaxis])
  parts.append(_top_random(neg, keys, k_neg))
  part_valid.append(tf.range(k_neg)[tf.newaxis] < num_neg[:, tf.newaxis])
  cand = tf.concat(parts, axis=1)
  cand_valid = tf.concat(part_valid, axis=1)
  # compact valid slots to the front, keeping their order
  width = cand.shape[1]
  order_key = tf.where(cand_valid, 0, width) + tf.range(width)[tf.newaxis]
  order = tf.argsort(order_key, axis=1, stable=True)
  if width < sample_size:
    order = tf.pad(order, [[0, 0], [0, sample_size - width]])
  order = order[:, :sample_size]
  indices = tf.gather(cand, order, batch_dims=1)
  valid = tf.range(sample_size)[tf.newaxis] < (num_pos + num_neg)[:, tf.newaxis]
  indices = tf.where(valid, indices, indices[:, :1])
  if dynamic_items is None:
    return indices, valid, indicator_from_indices(indices, valid, num_items)
  indices = tf.minimum(indices, dynamic_items - 1)  # padding columns are never valid samples
  return indices, valid, indicator_from_indices(indices, valid, dynamic_items)


def indicator_from_indices(indices, valid, num_items):
  """[B, S] indices + validity -> bool [B, num_items] indicator."""
  batch = tf.shape(indices)[0]
  batch_idx = tf.broadcast_to(tf.range(batch)[:, tf.newaxis], tf.shape(indices))
  scatter_idx = tf.stack([batch_idx, indices], axis=-1)
  counts = tf.scatter_nd(scatter_idx, tf.cast(valid, tf.int32),
                         tf.stack([batch, num_items]))
  return counts > 0
