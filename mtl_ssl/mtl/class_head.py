"""Class heads of Tasks 1 and 2 (window / closeness): C+1 logits per box.

Faster R-CNN (`CropClassHead`): RoI crops of F -> a box-classifier stage -> global average pool
-> [dropout] -> FC, like the original `MaskRCNNBoxPredictor.predict_class`.
R-FCN (`PositionSensitiveClassHead`): the stage runs once on the whole of F -> 1x1 conv to
`depth` -> 1x1 conv to bins_y * bins_x * (C+1) score maps -> position-sensitive RoI pooling at
the boxes, like the original `RfcnBoxPredictor.predict_class`.

`CropClassHead` also has the whole-feature-map form (mtl.aux_stage_input "whole_feature_map"):
the stage runs once on the whole F, `score_map` applies the FC at every cell and `pool_scores`
averages those class scores inside each box (bilinear samples): FC(mean(crop(G))) =
mean(crop(FC(G))) since crop, mean and FC are linear, so one stage pass serves any number of
boxes (windows, proposals, context boxes).

The stage is either the head's OWN copy (tracked, trained by the head) or the detector's main
stage (shared_feature = 'classifier_feature_maps'), which is called but never tracked here, so
the head owns exactly its own variables.
"""
import tensorflow as tf
import tf_keras

from mtl_ssl.builders import hyperparams_builder
from mtl_ssl.core import crop_ops

MAP_POOL_SIZE = 7  # bilinear samples per side when averaging a score map inside a box


def _predictor_oneof(box_predictor_config):
    if box_predictor_config is None or not hasattr(box_predictor_config, 'WhichOneof'):
        return None
    return box_predictor_config.WhichOneof('box_predictor_oneof')


def _trainable(box_predictor_config):
    return bool(getattr(box_predictor_config, 'trainable', True))


class _StageHolder(tf_keras.layers.Layer):
    """Holds an own stage copy (tracked) or calls a shared one (untracked)."""

    def __init__(self, stage, own_stage, **kwargs):
        super().__init__(**kwargs)
        if own_stage:
            self.stage = stage
            self._shared_stage_call = None
        else:
            self.stage = None
            # A closure is not tracked: the main stage's variables stay the detector's.
            self._shared_stage_call = lambda x, training: stage(x, training=training)

    @property
    def owns_stage(self):
        return self.stage is not None

    def features(self, stage_input, training=None):
        if self.stage is not None:
            return self.stage(stage_input, training=training)
        return self._shared_stage_call(stage_input, training)


class CropClassHead(_StageHolder):
    """Faster R-CNN: [N, k, k, c] crops -> stage -> pool -> FC -> [N, num_outputs] logits."""

    def __init__(self, num_outputs, stage, own_stage, box_predictor_config=None, **kwargs):
        super().__init__(stage, own_stage, **kwargs)
        which = _predictor_oneof(box_predictor_config)
        if which not in (None, 'mask_rcnn_box_predictor'):
            raise ValueError(f'{self.name}: a Faster R-CNN MTL head needs a '
                             f'mask_rcnn_box_predictor, got {which}')
        cfg = box_predictor_config.mask_rcnn_box_predictor if which else None
        self._spatial_average = bool(getattr(cfg, 'spatial_average', True))
        self._dropout = None
        if cfg is not None and cfg.use_dropout:
            keep = float(cfg.dropout_keep_probability)
            if not 0.0 < keep <= 1.0:
                raise ValueError(f'{self.name}: dropout_keep_probability must be in (0, 1], '
                                 f'got {keep}')
            self._dropout = tf_keras.layers.Dropout(1.0 - keep, name='Dropout')
        fc_hyperparams = hyperparams_builder.KerasLayerHyperparams(
            cfg.fc_hyperparams if cfg is not None and cfg.HasField('fc_hyperparams') else None,
            f'{self.name}.fc_hyperparams')
        self.class_predictor = tf_keras.layers.Dense(
            num_outputs, name='ClassPredictor', **fc_hyperparams.params(use_bias=True))
        self.class_predictor.trainable = _trainable(box_predictor_config)

    def logits_from_features(self, features, training=None):
        with tf.name_scope(self.name):
            if self._spatial_average:
                net = tf.reduce_mean(features, [1, 2])
            else:
                net = tf.reshape(features, [tf.shape(features)[0], -1])
            if self._dropout is not None:
                net = self._dropout(net, training=training)
            return self.class_predictor(net)

    def call(self, crops, training=None):
        return self.logits_from_features(self.features(crops, training), training)

    def score_map(self, stage_map, training=None):
        """Whole-map form: stage features [B, h, w, c'] -> class scores [B, h, w, C+1] (the
        FC at every cell, after the head's dropout if configured)."""
        if not self._spatial_average:
            raise ValueError(f'{self.name}: model.mtl.aux_stage_input "whole_feature_map" '
                             f'needs spatial_average (the head averages features over the box)')
        with tf.name_scope(self.name):
            net = stage_map
            if self._dropout is not None:
                net = self._dropout(net, training=training)
            return self.class_predictor(net)

    @staticmethod
    def pool_scores(score_map, boxes):
        """Mean class scores inside each box: score_map [B, h, w, D], boxes [B, K, 4]
        normalized w.r.t. the map -> [B, K, D]."""
        crops = crop_ops.crop_and_pool(score_map, boxes, MAP_POOL_SIZE, 1, 1)
        logits = tf.reduce_mean(crops, [1, 2])
        return tf.reshape(logits, [tf.shape(boxes)[0], tf.shape(boxes)[1], score_map.shape[-1]])


class PositionSensitiveClassHead(_StageHolder):
    """R-FCN: stage features [B, h, w, c'] -> score maps -> logits [B, K, num_outputs] at boxes.

    ps_pool_fn(score_maps [B, h, w, bins_y*bins_x*D], boxes [B, K, 4] normalized w.r.t. the
    feature map) -> [B, K, D] is the detector's position-sensitive RoI pooling (global pooled).
    """

    def __init__(self, num_outputs, stage, own_stage, ps_pool_fn, box_predictor_config=None,
                 **kwargs):
        super().__init__(stage, own_stage, **kwargs)
        if ps_pool_fn is None:
            raise ValueError(f'{self.name}: meta_arch rfcn needs rfcn_ps_pool_fn')
        which = _predictor_oneof(box_predictor_config)
        if which not in (None, 'rfcn_box_predictor'):
            raise ValueError(f'{self.name}: an R-FCN MTL head needs an rfcn_box_predictor, '
                             f'got {which}')
        cfg = box_predictor_config.rfcn_box_predictor if which else None
        bins_y = int(getattr(cfg, 'num_spatial_bins_height', 3))
        bins_x = int(getattr(cfg, 'num_spatial_bins_width', 3))
        depth = int(getattr(cfg, 'depth', 1024))
        conv_hyperparams = hyperparams_builder.KerasLayerHyperparams(
            cfg.conv_hyperparams if cfg is not None and cfg.HasField('conv_hyperparams') else None,
            f'{self.name}.conv_hyperparams')
        self._num_outputs = int(num_outputs)
        self._ps_pool_fn = ps_pool_fn
        # As the OD API R-FCN head: 1x1 conv [-> batch norm] -> activation, then the score maps.
        self.reduce_depth = tf_keras.layers.Conv2D(depth, 1, name='reduce_depth',
                                                   **conv_hyperparams.params())
        self.reduce_depth_norm = conv_hyperparams.build_batch_norm('reduce_depth_norm')
        self.reduce_depth_activation = conv_hyperparams.build_activation_layer(
            'reduce_depth_activation')
        self.class_predictor = tf_keras.layers.Conv2D(
            bins_y * bins_x * self._num_outputs, 1, name='class_predictions',
            **conv_hyperparams.params(use_bias=True))
        for layer in (self.reduce_depth, self.reduce_depth_norm, self.class_predictor):
            if layer is not None:
                layer.trainable = _trainable(box_predictor_config)

    def score_maps(self, features, training=None):
        with tf.name_scope(self.name):
            net = self.reduce_depth(features)
            if self.reduce_depth_norm is not None:
                net = self.reduce_depth_norm(net, training=training)
            if self.reduce_depth_activation is not None:
                net = self.reduce_depth_activation(net)
            return self.class_predictor(net)

    def logits_at(self, score_maps, boxes):
        logits = self._ps_pool_fn(score_maps, boxes)
        if logits.shape[-1] is not None and logits.shape[-1] != self._num_outputs:
            raise ValueError(f'{self.name}: rfcn_ps_pool_fn returned {logits.shape[-1]} channels '
                             f'per box, expected {self._num_outputs}: the spatial bins of the '
                             f'MTL rfcn_box_predictor must match the detector\'s')
        return tf.reshape(logits, [tf.shape(boxes)[0], tf.shape(boxes)[1], self._num_outputs])

    def call(self, feature_map, boxes, training=None):
        return self.logits_at(self.score_maps(self.features(feature_map, training), training),
                              boxes)
