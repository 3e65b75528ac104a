"""Makes bad input visible: running counts printed to stderr from inside the tf.data pipeline.

Two sequential `scan` stages (cheap: they only add counters) sit after the parallel maps:
- records that could not be parsed or whose image could not be decoded: every one is printed
  with its TFRecord file and record index and the running total, then filtered out;
- boxes dropped by the per-example transform (inputs.STAT_KEYS): the first 20 records with drops
  are printed, then every 2^k-th one, always with running totals per kind.
tf.print writes to the process's stderr, whatever TF_CPP_MIN_LOG_LEVEL says.
"""
import sys

import tensorflow as tf

from mtl_ssl.data import tf_example_decoder as dec

DECODED = 'decoded'  # bool key added by the safe decoder: False for a dropped record
_ALWAYS_PRINTED = 20


def _record_name(file, index):
  return tf.strings.join([file, ' record ', tf.strings.as_string(index)])


def report_and_drop_undecodable(dataset):
  """Prints and removes the elements whose DECODED flag is False."""

  def count(total, element):
    failed = tf.logical_not(element[DECODED])
    total += tf.cast(failed, tf.int64)

    def log():
      tf.print(tf.strings.join([
          'mtl_ssl input: dropped ', _record_name(element[dec.RECORD_FILE],
                                                  element[dec.RECORD_INDEX]),
          ': not a parsable tf.Example or its image bytes cannot be decoded (details: python -m '
          'mtl_ssl.data.tf_example_decoder FILE); records dropped so far: ',
          tf.strings.as_string(total)]), output_stream=sys.stderr)
      return tf.constant(True)

    printed = tf.cond(failed, log, lambda: tf.constant(False))
    with tf.control_dependencies([printed]):
      total = tf.identity(total)
    return total, element

  dataset = dataset.scan(tf.constant(0, tf.int64), count)
  return dataset.filter(lambda element: element[DECODED])


def report_dropped_boxes(dataset, stat_keys):
  """Elements are (features, labels, stats, record_file, record_index); returns (features, labels).

  stats: {key: int32 scalar} of boxes dropped in this element, for every key of stat_keys.
  """
  stat_keys = tuple(stat_keys)

  def count(state, element):
    totals, events = state
    features, labels, stats, file, index = element
    counts = tf.cast(tf.stack([stats[key] for key in stat_keys]), tf.int64)
    totals += counts
    dropped = tf.reduce_any(counts > 0)
    events += tf.cast(dropped, tf.int64)
    power_of_two = tf.equal(tf.bitwise.bitwise_and(events, events - 1), 0)
    should_print = dropped & ((events <= _ALWAYS_PRINTED) | power_of_two)

    def log():
      parts = ['mtl_ssl input: ', _record_name(file, index), ':']
      for i, key in enumerate(stat_keys):
        parts.append(tf.where(counts[i] > 0, tf.strings.join(
            [' ', tf.strings.as_string(counts[i]), ' ', key, ';']), ''))
      parts.append(' totals so far:')
      for i, key in enumerate(stat_keys):
        parts += [' ', tf.strings.as_string(totals[i]), ' ', key.split(': ', 1)[-1], ',']
      parts += [' in ', tf.strings.as_string(events), ' record(s)']
      tf.print(tf.strings.join(parts), output_stream=sys.stderr)
      return tf.constant(True)

    printed = tf.cond(should_print, log, lambda: tf.constant(False))
    with tf.control_dependencies([printed]):
      events = tf.identity(events)
    return (totals, events), (features, labels)

  initial = (tf.zeros([len(stat_keys)], tf.int64), tf.constant(0, tf.int64))
  return dataset.scan(initial, count)
