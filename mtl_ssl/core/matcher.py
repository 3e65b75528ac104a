"""Arg-max matcher (OD API ArgMaxMatcher semantics), batched with padded GT.

For every column (anchor / proposal) the best ground-truth row by similarity:
  >= matched_threshold                    -> matched row index (>= 0)
  <  unmatched_threshold                  -> UNMATCHED (-1, a negative)
  in [unmatched_threshold, matched_threshold) -> IGNORED (-2)
With force_match_for_each_row, every valid row claims its best column even if
below threshold (the OD API's RPN setting). Padded rows never match.
"""
import tensorflow as tf

UNMATCHED = -1
IGNORED = -2


def argmax_match(similarity, row_valid, matched_threshold,
                 unmatched_threshold=None, force_match_for_each_row=False):
  """similarity [B, M, N] (rows = GT), row_valid [B, M] bool -> [B, N] int32.

  Also returns nothing else: the caller gathers what it needs with the
  indices. A batch element without valid rows gets all UNMATCHED.
  """
  if unmatched_threshold is None:
    unmatched_threshold = matched_threshold
  if unmatched_threshold > matched_threshold:
    raise ValueError('unmatched_threshold (%s) must be <= matched_threshold '
                     '(%s)' % (unmatched_threshold, matched_threshold))
  row_valid = tf.cast(row_valid, tf.bool)
  # padded rows get a similarity below every real value (IoU >= 0)
  sim = tf.where(row_valid[:, :, tf.newaxis], similarity, -1.0)
  matches = tf.argmax(sim, axis=1, output_type=tf.int32)  # [B, N]
  best = tf.reduce_max(sim, axis=1)
  matches = tf.where(best < unmatched_threshold, UNMATCHED, matches)
  between = (best >= unmatched_threshold) & (best < matched_threshold)
  matches = tf.where(between, IGNORED, matches)
  if force_match_for_each_row:
    num_cols = tf.shape(sim)[2]
    best_col = tf.argmax(sim, axis=2, output_type=tf.int32)  # [B, M]
    forced = (tf.one_hot(best_col, num_cols, dtype=tf.float32) *
              tf.cast(row_valid, tf.float32)[:, :, tf.newaxis])  # [B, M, N]
    forced_row = tf.argmax(forced, axis=1, output_type=tf.int32)
    is_forced = tf.reduce_max(forced, axis=1) > 0
    matches = tf.where(is_forced, forced_row, matches)
  return matches
