"""DetectionModel: the OD API model interface as a tf_keras Layer.

preprocess -> predict -> loss / postprocess, with ground truth handed over
beforehand by provide_groundtruth (lists of per-image tensors, as the OD API).
Ground truth is padded here to one static size so every later op is batched
and static-shaped (tf.function, tf.distribute).
"""
import abc
import types

import tensorflow as tf
import tf_keras

# optional per-image ground-truth lists: provide_groundtruth argument -> key
MTL_GROUNDTRUTH_KEYS = {
    'groundtruth_mtl_windows_list': 'mtl_windows',
    'groundtruth_mtl_window_labels_list': 'mtl_window_labels',
    'groundtruth_mtl_closeness_labels_list': 'mtl_closeness_labels',
    'groundtruth_mtl_foreground_mask_list': 'mtl_foreground_mask',
    'groundtruth_mtl_foreground_weights_list': 'mtl_foreground_weights',
}
# keys whose rows follow the GT boxes (padded like the boxes)
_PER_BOX_KEYS = ('mtl_closeness_labels',)


def _pad_rows(tensor, size):
  """Pads (or clips) the first dimension of tensor to size with zeros."""
  tensor = tf.convert_to_tensor(tensor)
  n = tf.shape(tensor)[0]
  tensor = tensor[:size]
  pad = tf.maximum(size - n, 0)
  paddings = [[0, pad]] + [[0, 0]] * (tensor.shape.rank - 1)
  padded = tf.pad(tensor, paddings)
  padded.set_shape([size] + tensor.shape.as_list()[1:])
  return padded


class DetectionModel(tf_keras.layers.Layer, metaclass=abc.ABCMeta):
  """Abstract detection model (OD API core/model.py names and meanings)."""

  def __init__(self, num_classes, is_training, max_num_groundtruth_boxes=100,
               name='DetectionModel', **kwargs):
    super().__init__(name=name, **kwargs)
    if num_classes < 1:
      raise ValueError('model num_classes must be >= 1, got %d' % num_classes)
    self._num_classes = int(num_classes)
    self._is_training = bool(is_training)
    self._max_num_groundtruth_boxes = int(max_num_groundtruth_boxes)
    # per-step values (ground truth and what is derived from it) live in a
    # plain namespace: Keras attribute tracking would wrap dicts of tensors
    self._state = types.SimpleNamespace(groundtruth=None)
    # name -> weight of every detector loss; filled by subclasses from config
    self.loss_weights = {}

  @property
  def num_classes(self):
    return self._num_classes

  @property
  def is_training(self):
    return self._is_training

  # ------------------------------------------------------------ ground truth
  @tf.autograph.experimental.do_not_convert
  def provide_groundtruth(self, groundtruth_boxes_list, groundtruth_classes_list,
                          groundtruth_weights_list=None,
                          groundtruth_mtl_windows_list=None,
                          groundtruth_mtl_window_labels_list=None,
                          groundtruth_mtl_closeness_labels_list=None,
                          groundtruth_mtl_foreground_mask_list=None,
                          groundtruth_mtl_foreground_weights_list=None):
    """Stores per-image ground truth, padded to one static number of rows.

    boxes [n_i, 4] normalized w.r.t. the true image; classes [n_i, num_classes]
    one-hot (or k-hot) WITHOUT background; weights [n_i] (default ones).
    MTL labels as in docs/architecture.md section 2 (per image, no batch dim).
    """
    boxes_list = [tf.convert_to_tensor(b, tf.float32) for b in groundtruth_boxes_list]
    classes_list = [tf.convert_to_tensor(c, tf.float32) for c in groundtruth_classes_list]
    if len(boxes_list) != len(classes_list):
      raise ValueError('provide_groundtruth: %d box lists but %d class lists' %
                       (len(boxes_list), len(classes_list)))
    if not boxes_list:
      raise ValueError('provide_groundtruth: empty ground-truth lists')
    for c in classes_list:
      if c.shape.rank != 2 or c.shape[-1] != self._num_classes:
        raise ValueError('provide_groundtruth: classes must be [n, %d] one-hot '
                         'without background, got shape %s' %
                         (self._num_classes, c.shape))
    static_rows = [b.shape[0] for b in boxes_list]
    if all(r is not None for r in static_rows):
      size = max(max(static_rows), 1)
    else:
      size = self._max_num_groundtruth_boxes
    num_boxes = tf.stack([tf.minimum(tf.shape(b)[0], size) for b in boxes_list])
    if groundtruth_weights_list is None:
      weights_list = [tf.ones(tf.shape(b)[:1], tf.float32) for b in boxes_list]
    else:
      weights_list = [tf.convert_to_tensor(w, tf.float32)
                      for w in groundtruth_weights_list]
    gt = {
        'boxes': tf.stack([_pad_rows(b, size) for b in boxes_list]),
        'classes': tf.stack([_pad_rows(c, size) for c in classes_list]),
        'weights': tf.stack([_pad_rows(w, size) for w in weights_list]),
        'num_boxes': num_boxes,
    }
    gt['valid'] = tf.sequence_mask(num_boxes, size)
    given = {
        'groundtruth_mtl_windows_list': groundtruth_mtl_windows_list,
        'groundtruth_mtl_window_labels_list': groundtruth_mtl_window_labels_list,
        'groundtruth_mtl_closeness_labels_list':
            groundtruth_mtl_closeness_labels_list,
        'groundtruth_mtl_foreground_mask_list':
            groundtruth_mtl_foreground_mask_list,
        'groundtruth_mtl_foreground_weights_list':
            groundtruth_mtl_foreground_weights_list,
    }
    for arg, key in MTL_GROUNDTRUTH_KEYS.items():
      values = given[arg]
      if values is None:
        continue
      values = [tf.convert_to_tensor(v, tf.float32) for v in values]
      if len(values) != len(boxes_list):
        raise ValueError('provide_groundtruth: %s has %d entries for %d images'
                         % (arg, len(values), len(boxes_list)))
      if key in _PER_BOX_KEYS:
        values = [_pad_rows(v, size) for v in values]
      gt[key] = tf.stack(values)
    self._state.groundtruth = gt
    self._groundtruth_changed()

  def clear_groundtruth(self):
    """Forgets the ground truth. Training and eval steps call it once their losses are built,
    so that tensors of a traced step never leak into a later predict or export."""
    self._state.groundtruth = None
    self._groundtruth_changed()

  def groundtruth_has_field(self, key):
    gt = self._state.groundtruth
    return gt is not None and key in gt

  def _require_groundtruth(self, what):
    if self._state.groundtruth is None:
      raise ValueError('%s needs ground truth: call provide_groundtruth() first'
                       % what)
    return self._state.groundtruth

  def groundtruth_class_ids(self):
    """int32 [B, N] class ids 1..num_classes (0 on padded rows)."""
    gt = self._require_groundtruth('groundtruth_class_ids')
    ids = tf.argmax(gt['classes'], axis=-1, output_type=tf.int32) + 1
    return tf.where(gt['valid'], ids, 0)

  # --------------------------------------------------------------- interface
  @abc.abstractmethod
  def preprocess(self, inputs):
    """float32 [B, H, W, 3] in 0..255 -> (images, true_image_shapes [B, 3])."""

  @abc.abstractmethod
  def predict(self, preprocessed_inputs, true_image_shapes, training=None):
    """-> dict of prediction tensors."""

  @abc.abstractmethod
  def loss(self, prediction_dict, true_image_shapes):
    """-> dict of weighted scalar losses (their sum is the total loss)."""

  @abc.abstractmethod
  def postprocess(self, prediction_dict, true_image_shapes):
    """-> dict of detections (OD API DetectionResultFields)."""

  @abc.abstractmethod
  def regularization_losses(self):
    """-> list of scalar regularization losses."""

  @abc.abstractmethod
  def restore_from_objects(self, fine_tune_checkpoint_type='detection'):
    """-> dict of trackables for tf.train.Checkpoint(**dict).restore(path)."""

  def call(self, inputs, training=None):
    """images 0..255 -> detections (a Keras-style forward for export/build)."""
    images, true_image_shapes = self.preprocess(inputs)
    prediction_dict = self.predict(images, true_image_shapes, training=training)
    return self.postprocess(prediction_dict, true_image_shapes)

  @tf.autograph.experimental.do_not_convert
  def build_for_shapes(self, height, width, batch_size=1):
    """Creates every variable with one inference pass on a dummy batch of the
    given preprocessed size (before a checkpoint restore or export)."""
    images = tf.zeros([batch_size, height, width, 3], tf.float32)
    shapes = tf.tile(tf.constant([[height, width, 3]], tf.int32),
                     [batch_size, 1])
    saved = self._state.groundtruth
    if saved is None:
      # heads that only run with ground truth (e.g. MTL windows) get built too
      self.provide_groundtruth(
          [tf.constant([[0.25, 0.25, 0.75, 0.75]])] * batch_size,
          [tf.one_hot([0], self._num_classes)] * batch_size)
    try:
      prediction_dict = self.predict(images, shapes, training=False)
      self.postprocess(prediction_dict, shapes)
    finally:
      if saved is None:
        self._state.groundtruth = None
        self._groundtruth_changed()
    return prediction_dict

  def _groundtruth_changed(self):
    """Hook for subclasses caching values derived from the ground truth."""
