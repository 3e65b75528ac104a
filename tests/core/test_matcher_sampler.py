"""Arg-max matcher (thresholds, forced matches, padded GT) and the balanced
sampler (counts, fraction, candidates only, static shapes, randomness)."""
import numpy as np
import tensorflow as tf

from mtl_ssl.core import matcher
from mtl_ssl.core import sampler


def test_argmax_match_thresholds_hand_worked():
  # 2 GT rows x 5 columns
  sim = tf.constant([[[0.8, 0.5, 0.2, 0.1, 0.65],
                      [0.1, 0.6, 0.75, 0.05, 0.7]]])
  valid = tf.constant([[True, True]])
  got = matcher.argmax_match(sim, valid, 0.7, 0.3).numpy()[0]
  # col0 -> 0 (0.8), col1 max .6 in [.3,.7) ignored, col2 -> 1 (.75),
  # col3 max .1 < .3 negative, col4 max .7 >= .7 -> row 1
  assert got.tolist() == [0, matcher.IGNORED, 1, matcher.UNMATCHED, 1]
  # equal thresholds (second stage): everything below .5 negative
  got = matcher.argmax_match(sim, valid, 0.5).numpy()[0]
  assert got.tolist() == [0, 1, 1, matcher.UNMATCHED, 1]


def test_force_match_each_row_and_padded_rows():
  sim = tf.constant([[[0.2, 0.25, 0.1],
                      [0.0, 0.1, 0.05],
                      [0.9, 0.9, 0.9]]])  # row 2 is padding
  valid = tf.constant([[True, True, False]])
  got = matcher.argmax_match(sim, valid, 0.7, 0.3,
                             force_match_for_each_row=True).numpy()[0]
  # rows 0 and 1 both claim column 1; the first row wins (argmax over the
  # forced one-hot indicator, as the OD API)
  assert got.tolist() == [matcher.UNMATCHED, 0, matcher.UNMATCHED]
  no_force = matcher.argmax_match(sim, valid, 0.7, 0.3).numpy()[0]
  assert no_force.tolist() == [matcher.UNMATCHED] * 3  # padded row 2 ignored
  empty = matcher.argmax_match(sim, tf.zeros([1, 3], tf.bool), 0.7, 0.3,
                               force_match_for_each_row=True).numpy()[0]
  assert empty.tolist() == [matcher.UNMATCHED] * 3


def test_force_match_distinct_columns():
  sim = tf.constant([[[0.5, 0.1, 0.0, 0.0],
                      [0.0, 0.0, 0.4, 0.1]]])
  got = matcher.argmax_match(sim, tf.ones([1, 2], tf.bool), 0.7, 0.3,
                             force_match_for_each_row=True).numpy()[0]
  assert got.tolist() == [0, matcher.UNMATCHED, 1, matcher.UNMATCHED]


def _sample(cand, pos, size, frac, seed=None):
  idx, valid, ind = sampler.balanced_sample(tf.constant(cand), tf.constant(pos),
                                            size, frac, seed=seed)
  return idx.numpy(), valid.numpy(), ind.numpy()


def test_sampler_respects_fraction_and_candidates():
  rng = np.random.RandomState(0)
  n = 400
  cand = rng.rand(2, n) < 0.8
  pos = rng.rand(2, n) < 0.1
  idx, valid, ind = _sample(cand, pos, 64, 0.25)
  assert idx.shape == (2, 64) and valid.shape == (2, 64) and ind.shape == (2, n)
  for b in range(2):
    chosen = idx[b][valid[b]]
    assert len(set(chosen.tolist())) == len(chosen) == 64
    assert np.all(cand[b][chosen])
    n_pos = int(np.sum(pos[b][chosen]))
    assert n_pos == min(16, int(np.sum(cand[b] & pos[b])))
    # positives first
    assert np.all(pos[b][chosen[:n_pos]]) and not np.any(pos[b][chosen[n_pos:]])
    assert sorted(np.nonzero(ind[b])[0].tolist()) == sorted(chosen.tolist())


def test_sampler_fills_with_negatives_and_pads_when_short():
  cand = np.zeros((1, 50), bool)
  cand[0, :10] = True
  pos = np.zeros((1, 50), bool)
  pos[0, :2] = True
  idx, valid, ind = _sample(cand, pos, 32, 0.5)
  assert valid.sum() == 10 and ind.sum() == 10
  assert set(idx[0][valid[0]].tolist()) == set(range(10))
  assert idx[0][:2].tolist() in ([0, 1], [1, 0])
  # many positives, few negatives: positives capped at the fraction
  cand = np.ones((1, 50), bool)
  pos = np.zeros((1, 50), bool)
  pos[0, :45] = True
  _, valid, ind = _sample(cand, pos, 20, 0.5)
  assert valid.sum() == 15 and (ind & pos).sum() == 10


def test_sampler_is_random_and_works_in_tf_function():
  cand = np.ones((1, 1000), bool)
  pos = np.zeros((1, 1000), bool)
  fn = tf.function(lambda c, p: sampler.balanced_sample(c, p, 16, 0.5)[0])
  a = fn(tf.constant(cand), tf.constant(pos)).numpy()
  b = fn(tf.constant(cand), tf.constant(pos)).numpy()
  assert set(a[0].tolist()) != set(b[0].tolist())


def test_sampler_with_a_number_of_items_known_only_at_run_time():
  # e.g. the anchors of an unpadded image: traced with N = None, run with N < and > sample_size
  sample = tf.function(lambda c, p: sampler.balanced_sample(c, p, 8, 0.5)[1:],
                       input_signature=[tf.TensorSpec([1, None], tf.bool)] * 2)
  for n, num_pos in ((5, 3), (40, 10)):
    candidates = tf.ones([1, n], tf.bool)
    positives = tf.constant([[i < num_pos for i in range(n)]])
    valid, indicator = sample(candidates, positives)
    assert indicator.shape == (1, n)
    picked = indicator.numpy()[0]
    assert picked.sum() == min(8, n) == valid.numpy().sum()
    assert picked[:num_pos].sum() == min(num_pos, 4)  # at most half positives
