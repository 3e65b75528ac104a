"""Per-example transform of the input pipeline: decoded tf.Example -> (features, labels, stats).

Order (one tf.data map, parallel on CPU): stop on a malformed record (error naming file, record and
key) -> drop bad boxes (counted in `stats`) -> augmentation (training) -> cap at max_number_of_boxes
-> resize -> model_preprocess_fn (normalization) -> zero-pad to the static shape, if the resizer
has one (else batching pads, see dataset_builder.batch_images) -> online MTL
labels from the final boxes -> pad every box field to max_number_of_boxes.

The MTL labels are made here, from the boxes of the augmented and resized example, so they always
match the image the model sees (flips and crops included), run in parallel on the CPU beside the
accelerator, and get fresh windows every epoch (the per-element seed). See docs/data.md.
"""
import tensorflow as tf

from mtl_ssl.data import resizers
from mtl_ssl.data import tf_example_decoder as dec
from mtl_ssl.data.fields import InputDataFields as F, MTL_LABEL_KEYS
from mtl_ssl.mtl import labels as mtl_labels

# Per-element counters reported by the pipeline (docs/data.md, "Bad input").
STAT_UNKNOWN_CLASS = 'boxes dropped: class id not in the label map / 1..num_classes'
STAT_DEGENERATE = 'boxes dropped: zero area, inverted (max <= min) or not finite'  # or weight
STAT_OUTSIDE = 'boxes dropped: empty after clipping to the image'
STAT_TRUNCATED = 'boxes dropped: more than max_number_of_boxes'
STAT_KEYS = (STAT_UNKNOWN_CLASS, STAT_DEGENERATE, STAT_OUTSIDE, STAT_TRUNCATED)

# make_mtl_labels outputs with one row per box (padded like the boxes); the others are per image.
_PER_BOX_MTL_LABELS = ('mtl_closeness_labels',)

# Salt folded into the per-element seed for the MTL labels (augmentation uses 0, 1, 2, ...).
_LABEL_SEED_SALT = 1000003


def mtl_tasks_on(model_config):
  """The model's MTL proto when it asks for at least one online label, else None."""
  if not model_config.HasField('mtl'):
    return None
  mtl = model_config.mtl
  return mtl if (mtl.window or mtl.closeness or mtl.edgemask) else None


def _count(mask):
  return tf.reduce_sum(tf.cast(mask, tf.int32))


def clean_boxes(boxes, classes, valid_class_ids, weights=None):
  """Keep mask of the boxes to train on, and the counts of each kind dropped (each box once).

  valid_class_ids: bool [num_classes + 1] lookup, True for the ids a box may have.
  weights: optional [n]; a NaN/Inf weight (it would make the loss NaN) counts as not finite.
  Boxes that cross the image border are clipped (by the caller, with the returned clipped boxes).
  """
  num_ids = tf.shape(valid_class_ids)[0]
  in_range = (classes >= 0) & (classes < num_ids)
  known = in_range & tf.gather(valid_class_ids, tf.clip_by_value(classes, 0, num_ids - 1))
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
  degenerate = (~tf.reduce_all(tf.math.is_finite(boxes), axis=1) | (ymax <= ymin) | (xmax <= xmin))
  if weights is not None:
    degenerate |= ~tf.math.is_finite(weights)
  clipped = tf.clip_by_value(tf.where(tf.math.is_finite(boxes), boxes, 0.0), 0.0, 1.0)
  cy0, cx0, cy1, cx1 = tf.unstack(clipped, axis=1)
  outside = (cy1 <= cy0) | (cx1 <= cx0)
  keep = known & ~degenerate & ~outside
  stats = {
      STAT_UNKNOWN_CLASS: _count(~known),
      STAT_DEGENERATE: _count(known & degenerate),
      STAT_OUTSIDE: _count(known & ~degenerate & outside),
  }
  return keep, clipped, stats


def _pad_rows(values, size):
  """Zero-pads (or cuts) the first dimension of `values` to `size`, static shape."""
  values = values[:size]
  padding = [[0, size - tf.shape(values)[0]]] + [[0, 0]] * (values.shape.rank - 1)
  padded = tf.pad(values, padding)
  padded.set_shape([size] + values.shape.as_list()[1:])
  return padded


def _check_record(decoded):
  """Stops the pipeline on a malformed record with an error naming file, record and problem."""
  message = tf.strings.join([
      'mtl_ssl input: TFRecord file ', decoded[dec.RECORD_FILE], ' record ',
      tf.strings.as_string(decoded[dec.RECORD_INDEX]), ': ', decoded[dec.ERROR]])
  return tf.debugging.Assert(tf.equal(decoded[dec.ERROR], ''), [message], summarize=1)


def build_transform(*, num_classes, image_resizer_config, max_number_of_boxes,
                    valid_class_ids=None, augment_fn=None, mtl_config=None,
                    model_preprocess_fn=None, retain_original_image=False):
  """Returns fn(decoded dict, seed int64 [2]) -> (features, labels, stats), all static shapes.

  valid_class_ids: iterable of the class ids a box may have (default 1..num_classes).
  """
  num_classes = int(num_classes)
  max_boxes = int(max_number_of_boxes)
  ids = set(range(1, num_classes + 1)) if valid_class_ids is None else set(valid_class_ids)
  bad_ids = sorted(i for i in ids if not 1 <= i <= num_classes)
  if bad_ids:
    raise ValueError(f'class ids {bad_ids} are outside 1..num_classes ({num_classes}): the label '
                     'map and the model\'s num_classes disagree')
  lookup = tf.constant([i in ids for i in range(num_classes + 1)], tf.bool)
  resize_fn = resizers.build(image_resizer_config, pad=False)
  labels_in_original_pixels = bool(getattr(mtl_config, 'labels_in_original_pixels', False))
  static_hw = resizers.padded_shape(image_resizer_config)  # None: no padding per image

  def transform(decoded, seed):
    with tf.control_dependencies([_check_record(decoded)]):
      image = tf.cast(decoded[dec.IMAGE], tf.float32)
    classes = decoded[dec.CLASSES]
    keep, boxes, stats = clean_boxes(decoded[dec.BOXES], classes, lookup, decoded[dec.WEIGHTS])
    boxes = tf.boolean_mask(boxes, keep)
    fields = {name: tf.boolean_mask(decoded[name], keep)
              for name in (dec.CLASSES, dec.DIFFICULT, dec.IS_CROWD, dec.WEIGHTS)}
    if augment_fn is not None:
      image, boxes, fields = augment_fn(image, boxes, fields, seed)
    image_hw = tf.shape(image)[:2]  # after augmentation, before the resizer
    num_boxes = tf.shape(boxes)[0]
    stats[STAT_TRUNCATED] = tf.maximum(num_boxes - max_boxes, 0)
    num_boxes = tf.minimum(num_boxes, max_boxes)

    resized, true_shape = resize_fn(image)
    if model_preprocess_fn is not None:
      normalized, true_shapes = model_preprocess_fn(resized[None])
      normalized, true_shape = normalized[0], tf.cast(true_shapes[0], tf.int32)
    else:
      normalized = resized
    features = {
        F.image: _pad_image(normalized, static_hw, tf.float32),
        F.true_image_shape: true_shape,
        F.original_image_spatial_shape: decoded[dec.IMAGE_SHAPE],
        F.source_id: _source_id(decoded),
    }
    if retain_original_image:
      original = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
      features[F.original_image] = _pad_image(original, static_hw, tf.uint8)

    padded_classes = _pad_rows(fields[dec.CLASSES], max_boxes)
    padded_boxes = _pad_rows(boxes, max_boxes)
    labels = {
        F.groundtruth_boxes: padded_boxes,
        F.groundtruth_classes: tf.one_hot(padded_classes - 1, num_classes, dtype=tf.float32),
        F.num_groundtruth_boxes: num_boxes,
        F.groundtruth_weights: _pad_rows(fields[dec.WEIGHTS], max_boxes),
        F.groundtruth_difficult: _pad_rows(fields[dec.DIFFICULT], max_boxes),
        F.groundtruth_is_crowd: _pad_rows(fields[dec.IS_CROWD], max_boxes),
    }
    if mtl_config is not None:
      label_seed = tf.random.experimental.stateless_fold_in(seed, _LABEL_SEED_SALT)
      # Unpadded boxes: the label cost grows with the rows, and padded rows add nothing.
      # window sizes and closeness distances in pixels of the resized image, or of the image
      # before resizing (mtl.labels_in_original_pixels, as the original's offline labels)
      label_hw = image_hw if labels_in_original_pixels else true_shape[:2]
      made = mtl_labels.make_mtl_labels(
          boxes[:max_boxes], fields[dec.CLASSES][:max_boxes], None, label_hw[0], label_hw[1],
          num_classes, mtl_config, seed=label_seed)
      for key, value in made.items():
        value = tf.cast(value, tf.float32)
        if key in _PER_BOX_MTL_LABELS:
          value = _pad_rows(value, max_boxes)
        labels[MTL_LABEL_KEYS[key]] = value
    return features, labels, stats

  return transform


def _pad_image(image, static_hw, dtype):
  """Zero-pads to the static (H, W); with None the image keeps its own size (batching pads)."""
  image = tf.cast(image, dtype)
  if static_hw is None:
    image.set_shape([None, None, 3])
    return image
  padded = tf.image.pad_to_bounding_box(image, 0, 0, static_hw[0], static_hw[1])
  padded.set_shape([static_hw[0], static_hw[1], 3])
  return padded


def _source_id(decoded):
  fallback = tf.strings.join([decoded[dec.RECORD_FILE], ':',
                              tf.strings.as_string(decoded[dec.RECORD_INDEX])])
  return tf.where(tf.equal(decoded[dec.SOURCE_ID], ''), fallback, decoded[dec.SOURCE_ID])
