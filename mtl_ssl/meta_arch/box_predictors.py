"""Second-stage box predictors (OD API Keras MaskRCNNBoxPredictor heads and
RfcnKerasBoxPredictor), without the mask branch.

MaskRCNNBoxPredictor: box-classifier features [N, k, k, c] -> global average
pool (or flatten when spatial_average is off) -> optional dropout -> FC to
num_classes + 1 class logits and FC to box encodings per class (one shared
box with share_box_across_classes).
RfcnBoxPredictor: whole-image features [B, h, w, c] -> 1x1 conv to `depth`
-> 1x1 convs to k*k*(C+1) class maps and k*k*num_classes*4 box maps ->
position-sensitive RoI pooling at the proposals, averaged over the bins.
"""
import tensorflow as tf
import tf_keras

from mtl_ssl.core import crop_ops


class MaskRCNNBoxPredictor(tf_keras.layers.Layer):
  """-> (box_encodings [N, q, code], class_logits [N, num_classes + 1])."""

  def __init__(self, num_classes, fc_hyperparams, use_dropout=False,
               dropout_keep_probability=0.5, box_code_size=4,
               share_box_across_classes=False, spatial_average=True,
               trainable=True, name='SecondStageBoxPredictor', **kwargs):
    super().__init__(name=name, **kwargs)
    if use_dropout and not 0.0 < dropout_keep_probability <= 1.0:
      raise ValueError('mask_rcnn_box_predictor.dropout_keep_probability must '
                       'be in (0, 1], got %s' % dropout_keep_probability)
    self._num_classes = int(num_classes)
    self._code_size = int(box_code_size)
    self._num_boxes = 1 if share_box_across_classes else self._num_classes
    self._spatial_average = bool(spatial_average)
    self.box_dropout = self.class_dropout = None
    if use_dropout:
      self.box_dropout = tf_keras.layers.Dropout(1.0 - dropout_keep_probability)
      self.class_dropout = tf_keras.layers.Dropout(1.0 - dropout_keep_probability)
    self.box_encoder = tf_keras.layers.Dense(
        self._num_boxes * self._code_size, name='BoxEncodingPredictor',
        **fc_hyperparams.params(use_bias=True))
    self.class_predictor = tf_keras.layers.Dense(
        self._num_classes + 1, name='ClassPredictor',
        **fc_hyperparams.params(use_bias=True))
    for layer in (self.box_encoder, self.class_predictor):
      layer.trainable = bool(trainable)

  def trunk_layers(self):
    """{attribute: layer} restored from a 'detection' checkpoint: none, the
    FC layers depend on the number of classes."""
    return {}

  def call(self, features, training=None):
    if self._spatial_average:
      net = tf.reduce_mean(features, axis=[1, 2])
    else:
      net = tf.reshape(features, [tf.shape(features)[0], -1])
    box_net, class_net = net, net
    if self.box_dropout is not None:
      box_net = self.box_dropout(net, training=training)
      class_net = self.class_dropout(net, training=training)
    encodings = tf.reshape(self.box_encoder(box_net),
                           [-1, self._num_boxes, self._code_size])
    return encodings, self.class_predictor(class_net)


class RfcnBoxPredictor(tf_keras.layers.Layer):
  """-> (box_encodings [B, P, num_classes, code], class_logits [B, P, C+1])."""

  def __init__(self, num_classes, conv_hyperparams, num_spatial_bins=(3, 3),
               depth=1024, crop_size=(12, 12), box_code_size=4, trainable=True,
               name='SecondStageBoxPredictor', **kwargs):
    super().__init__(name=name, **kwargs)
    self._num_classes = int(num_classes)
    self._code_size = int(box_code_size)
    self._bins = tuple(int(b) for b in num_spatial_bins)
    self._crop_size = tuple(int(c) for c in crop_size)
    if self._crop_size[0] % self._bins[0] or self._crop_size[1] % self._bins[1]:
      raise ValueError('rfcn_box_predictor crop_height/crop_width %s must be '
                       'multiples of num_spatial_bins %s' %
                       (self._crop_size, self._bins))
    total_bins = self._bins[0] * self._bins[1]
    self.reduce_depth = tf_keras.layers.Conv2D(
        depth, 1, name='reduce_depth_conv', **conv_hyperparams.params())
    self.reduce_depth_bn = conv_hyperparams.build_batch_norm(
        'reduce_depth_batchnorm')
    self.reduce_depth_act = conv_hyperparams.build_activation_layer(
        'reduce_depth_activation')
    self.box_encoder = tf_keras.layers.Conv2D(
        total_bins * self._num_classes * self._code_size, 1,
        name='refined_locations_conv', **conv_hyperparams.params())
    self.box_bn = conv_hyperparams.build_batch_norm('refined_locations_batchnorm')
    self.class_predictor = tf_keras.layers.Conv2D(
        total_bins * (self._num_classes + 1), 1, name='class_predictions_conv',
        **conv_hyperparams.params())
    self.class_bn = conv_hyperparams.build_batch_norm(
        'class_predictions_batchnorm')
    for layer in (self.reduce_depth, self.box_encoder, self.class_predictor):
      layer.trainable = bool(trainable)

  def trunk_layers(self):
    """{attribute: layer} restored from a 'detection' checkpoint: the 1x1
    depth reduction (the score-map convs depend on the number of classes)."""
    layers = {'reduce_depth': self.reduce_depth}
    if self.reduce_depth_bn is not None:
      layers['reduce_depth_bn'] = self.reduce_depth_bn
    return layers

  def ps_pool(self, score_maps, boxes_normalized):
    """The PS-RoI pooling of this predictor (also given to the MTL heads)."""
    return crop_ops.position_sensitive_crop_regions(
        score_maps, boxes_normalized, self._crop_size, self._bins)

  def call(self, features, proposal_boxes_normalized, training=None):
    net = self.reduce_depth(features)
    if self.reduce_depth_bn is not None:
      net = self.reduce_depth_bn(net, training=training)
    if self.reduce_depth_act is not None:
      net = self.reduce_depth_act(net)
    box_maps = self.box_encoder(net)
    if self.box_bn is not None:
      box_maps = self.box_bn(box_maps, training=training)
    class_maps = self.class_predictor(net)
    if self.class_bn is not None:
      class_maps = self.class_bn(class_maps, training=training)
    encodings = self.ps_pool(box_maps, proposal_boxes_normalized)
    shape = tf.shape(proposal_boxes_normalized)
    encodings = tf.reshape(encodings, [shape[0], shape[1], self._num_classes,
                                       self._code_size])
    logits = self.ps_pool(class_maps, proposal_boxes_normalized)
    return encodings, logits
