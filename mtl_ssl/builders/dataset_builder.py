"""tf.data input pipeline built from an `input_reader` config (OD API dataset_builder role).

files (globs, shards) -> [shard per input pipeline] -> [shuffle files] -> repeat(num_epochs) ->
interleave TFRecord readers -> [sample_1_of_n] -> [shuffle records] -> zip a per-element seed ->
safe parse+decode (parallel) -> drop and print undecodable records -> transform (parallel: boxes,
augmentation, resize, normalization, MTL labels, padding) -> print dropped-box counts -> batch ->
prefetch. Every stage is documented in docs/data.md.
"""
import logging
import os

import tensorflow as tf

from mtl_ssl.data import augmentation
from mtl_ssl.data import input_report
from mtl_ssl.data import inputs
from mtl_ssl.data import label_map_util
from mtl_ssl.data import resizers
from mtl_ssl.data.fields import InputDataFields as F
from mtl_ssl.data import tf_example_decoder as dec

_LOG = logging.getLogger(__name__)


def expand_input_paths(input_paths):
  """Sorted unique files of the `input_path` entries (plain paths, globs, `name-?????-of-NNNNN`)."""
  if not input_paths:
    raise ValueError('input_reader.tf_record_input_reader.input_path is empty')
  files = []
  for pattern in input_paths:
    matched = tf.io.gfile.glob(pattern)
    if not matched:
      raise ValueError(f'input_reader.tf_record_input_reader.input_path {pattern!r} matches '
                       'no file')
    files.extend(matched)
  return sorted(set(files))


def _sub_seed(seed, salt):
  return None if seed is None else (int(seed) * 7919 + salt) % (2**31 - 1)


def _read_file(filename):
  records = tf.data.TFRecordDataset(filename).enumerate()
  return records.map(lambda index, record: (record, filename, index))


def read_records(config, files, input_context=None, seed=None):
  """Dataset of (serialized tf.Example, TFRecord path, record index in that file)."""
  filenames = tf.data.Dataset.from_tensor_slices(files)
  shard_records = False
  if input_context is not None and input_context.num_input_pipelines > 1:
    if len(files) >= input_context.num_input_pipelines:
      filenames = filenames.shard(input_context.num_input_pipelines,
                                  input_context.input_pipeline_id)
    else:  # too few files: every pipeline reads all files and keeps its share of the records
      shard_records = True
  if config.shuffle:
    filenames = filenames.shuffle(max(1, config.filenames_shuffle_buffer_size),
                                  seed=_sub_seed(seed, 1), reshuffle_each_iteration=True)
  elif config.num_readers > 1 and len(files) > 1:
    _LOG.info('input reader: shuffle is off, files are read in a fixed interleaved order')
  filenames = filenames.repeat(config.num_epochs if config.num_epochs > 0 else None)
  cycle_length = max(1, min(int(config.num_readers), len(files)))
  deterministic = seed is not None or not config.shuffle
  parallel_reads = {}
  if cycle_length > 1:
    parallel_reads = {'num_parallel_calls': tf.data.AUTOTUNE, 'deterministic': deterministic}
  records = filenames.interleave(_read_file, cycle_length=cycle_length,
                                 block_length=max(1, config.read_block_length), **parallel_reads)
  if shard_records:
    records = records.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  if config.sample_1_of_n_examples > 1:
    records = records.shard(config.sample_1_of_n_examples, 0)
  if config.shuffle:
    records = records.shuffle(max(1, config.shuffle_buffer_size), seed=_sub_seed(seed, 2),
                              reshuffle_each_iteration=True)
  return records


def _safe_decoder(decoder):
  """fn(record, file, index, seed) -> dataset of ONE decoded dict; a record that fails to parse or
  decode gives a stand-in with DECODED False (its error is caught per record, so reader errors
  upstream still stop the pipeline)."""

  def decode(record, file, index, seed):
    out = decoder.decode(record)
    out.update({dec.RECORD_FILE: file, dec.RECORD_INDEX: index, 'seed': seed,
                input_report.DECODED: tf.constant(True)})
    return out

  def stand_in(record, file, index, seed):
    del record
    out = decode(tf.constant(b''), file, index, seed)
    out[input_report.DECODED] = tf.constant(False)
    return out

  def safe(record, file, index, seed):
    one = tf.data.Dataset.from_tensors((record, file, index, seed))
    return one.map(decode).ignore_errors().concatenate(one.map(stand_in)).take(1)

  return safe


def _first_record_check(files, decoder):
  """Fails fast, naming the file, on a data set whose first record is unusable or that is empty."""
  for path in files:
    if next(iter(tf.data.TFRecordDataset(path).take(1)), None) is None:
      continue
    problems = dec.check_records([path], decoder, max_records=1)
    if problems:
      path, index, problem = problems[0]
      raise ValueError(f'input reader: TFRecord file {path} record {index}: {problem}')
    return
  raise ValueError(f'input reader: the input files contain no records: {files}')


def _model_parts(model_config):
  which = model_config.WhichOneof('model')
  if which != 'faster_rcnn':
    raise ValueError(f'model: the input pipeline needs model.faster_rcnn (num_classes and '
                     f'image_resizer), got {which or "no model"}')
  meta = model_config.faster_rcnn
  if meta.num_classes < 1:
    raise ValueError(f'model.faster_rcnn.num_classes must be >= 1, got {meta.num_classes}')
  return meta.num_classes, meta.image_resizer


def max_number_of_boxes(input_reader_config, train_config=None):
  """N of the padded box tensors: train_config's when set explicitly, else the input reader's."""
  if train_config is not None and train_config.HasField('max_number_of_boxes'):
    return int(train_config.max_number_of_boxes)
  return int(input_reader_config.max_number_of_boxes)


_IMAGE_KEYS = (F.image, F.original_image)


def _pad_to_multiple(features, labels):
  """Pads the batch's images (bottom/right, zeros) up to a multiple of PAD_MULTIPLE."""
  features = dict(features)
  for key in _IMAGE_KEYS:
    if key in features:
      image = features[key]
      size = tf.shape(image)[1:3]
      target = -(-size // resizers.PAD_MULTIPLE) * resizers.PAD_MULTIPLE
      features[key] = tf.pad(image, [[0, 0], [0, target[0] - size[0]],
                                     [0, target[1] - size[1]], [0, 0]])
  return features, labels


def batch_images(dataset, batch_size, drop_remainder, variable_size):
  """Batches (features, labels). Images of a variable-size resizer (keep aspect ratio without
  pad_to_max_dimension) are not padded at batch 1, as the original trained: no wasted pixels; a
  larger batch is padded to its largest image, rounded up to resizers.PAD_MULTIPLE. Boxes stay
  normalized w.r.t. each true image (true_image_shape), so padding never moves them."""
  if not variable_size:
    return dataset.batch(batch_size, drop_remainder=drop_remainder)
  if batch_size == 1:
    return dataset.batch(1, drop_remainder=drop_remainder)
  dataset = dataset.padded_batch(batch_size, drop_remainder=drop_remainder)
  return dataset.map(_pad_to_multiple, num_parallel_calls=tf.data.AUTOTUNE)


def build(input_reader_config, batch_size, *, model_config, train_config=None, is_training,
          model_preprocess_fn=None, retain_original_image=False, input_context=None, seed=None):
  """tf.data.Dataset of (features, labels) batches; keys and shapes of docs/architecture.md s.2.

  batch_size is the global batch size; with an input_context each pipeline yields per-replica
  batches. seed makes the order, augmentation and MTL windows reproducible (new each epoch).
  """
  if input_reader_config.WhichOneof('input_reader') != 'tf_record_input_reader':
    raise ValueError('input_reader: only tf_record_input_reader is supported')
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  num_classes, image_resizer_config = _model_parts(model_config)
  files = expand_input_paths(list(input_reader_config.tf_record_input_reader.input_path))
  label_map_path = input_reader_config.label_map_path
  decoder = dec.TfExampleDecoder(label_map_path, input_reader_config.use_display_name)
  _first_record_check(files, decoder)

  valid_ids = None
  if label_map_path:
    valid_ids = [c['id'] for c in label_map_util.create_categories_from_labelmap(label_map_path)]
  augment_fn = None
  if is_training and train_config is not None:
    augment_fn = augmentation.build(train_config.data_augmentation_options)
  mtl_config = inputs.mtl_tasks_on(model_config)
  if seed is None and mtl_config is not None and model_config.mtl.label_seed:
    seed = int(model_config.mtl.label_seed)
  transform = inputs.build_transform(
      num_classes=num_classes, image_resizer_config=image_resizer_config,
      max_number_of_boxes=max_number_of_boxes(input_reader_config, train_config),
      valid_class_ids=valid_ids, augment_fn=augment_fn, mtl_config=mtl_config,
      model_preprocess_fn=model_preprocess_fn, retain_original_image=retain_original_image)

  if input_context is not None:
    batch_size = input_context.get_per_replica_batch_size(batch_size)
  parallel = max(1, batch_size * max(1, input_reader_config.num_parallel_batches))

  records = read_records(input_reader_config, files, input_context, seed)
  seeds = tf.data.Dataset.random(seed=_sub_seed(seed, 3), rerandomize_each_iteration=True).batch(2)
  dataset = tf.data.Dataset.zip((records, seeds)).map(lambda r, s: (r[0], r[1], r[2], s))
  # One tiny dataset per record: its own parse/decode error is caught there and nowhere else.
  decoders = max(1, min(parallel, os.cpu_count() or 1))
  dataset = dataset.interleave(_safe_decoder(decoder), cycle_length=decoders, block_length=1,
                               num_parallel_calls=decoders, deterministic=True)
  dataset = input_report.report_and_drop_undecodable(dataset)

  def transform_element(decoded):
    features, labels, stats = transform(decoded, decoded['seed'])
    return features, labels, stats, decoded[dec.RECORD_FILE], decoded[dec.RECORD_INDEX]

  dataset = dataset.map(transform_element, num_parallel_calls=parallel, deterministic=True)
  dataset = input_report.report_dropped_boxes(dataset, inputs.STAT_KEYS)
  drop_remainder = bool(input_reader_config.drop_remainder) if is_training else False
  dataset = batch_images(dataset, batch_size, drop_remainder,
                         resizers.padded_shape(image_resizer_config) is None)
  prefetch = input_reader_config.num_prefetch_batches
  if prefetch != 0:
    dataset = dataset.prefetch(tf.data.AUTOTUNE if prefetch < 0 else prefetch)
  return dataset
