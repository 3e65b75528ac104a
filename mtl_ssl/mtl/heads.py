"""`MTLHeads`: the MTL-SSL add-on as the detectors see it (docs/architecture.md section 6).

The detector builds one MTLHeads (None when every task is off), calls `predict(ctx)` after its
box classifier and `loss(...)` next to its own losses; in postprocess it uses
'mtl_refined_class_logits' in place of its class logits when refine is on.

Box frames: ctx boxes (proposals, windows) are normalized w.r.t. the TRUE image (like the
labels); crop_fn / rfcn_ps_pool_fn take boxes normalized w.r.t. the feature map, i.e. the padded
image, so they are rescaled by true/padded size here.

Gradient flow (original faster_rcnn_meta_arch.py, rfcn_meta_arch.py):
- stop_gradient_for_aux_tasks: no auxiliary loss reaches F. With own stage copies
  ('proposal_feature_maps') the copies' inputs are cut; when reusing the main stage
  ('classifier_feature_maps') its outputs are cut, so the main stage is not trained by them
  either. The foreground conv's input F is cut too (the original forgot Task 3 here; set
  stop_gradient_covers_foreground false to reproduce that).
- The refiner's inputs are always cut (stop_gradient), so the context crops never train anything.

aux_stage_input (Faster R-CNN): "roi_crops" runs the window / closeness stage on a crop per box
(the paper); "whole_feature_map" runs it once on the whole F per image and averages the head's
per-cell class scores inside each box (class_head.CropClassHead.score_map / pool_scores), so
windows, proposals and every context box share one stage pass (docs/performance.md).

Feature pyramids (FPN): ctx['feature_map'] is then the list of levels (`feature_levels`, finest
first) and crop_fn the detector's multi-level crop, which puts every window / context box on its
level by the same rule as the proposals; the foreground head runs on the one level
`foreground_feature_level` (default 4: stride 16, the C4 detectors' F).
"""
import tensorflow as tf
import tf_keras

from mtl_ssl.mtl import class_head
from mtl_ssl.mtl import foreground_head
from mtl_ssl.mtl import labels as mtl_labels
from mtl_ssl.mtl import losses as mtl_losses
from mtl_ssl.mtl import refine_top_k
from mtl_ssl.mtl import refiner as mtl_refiner

WINDOW_LOSS = 'Loss/MTL/window_loss'
CLOSENESS_LOSS = 'Loss/MTL/closeness_loss'
FOREGROUND_LOSS = 'Loss/MTL/foreground_loss'
REFINED_LOSS = 'Loss/MTL/refined_classification_loss'

_SHARED_FEATURES = ('proposal_feature_maps', 'classifier_feature_maps')
_AUX_STAGE_INPUTS = ('roi_crops', 'whole_feature_map')
_META_ARCHS = ('faster_rcnn', 'rfcn')


def any_task_on(mtl_config):
    """True when the MTL block turns on at least one task (else the detector makes no heads)."""
    return mtl_config is not None and any(
        bool(getattr(mtl_config, name)) for name in ('window', 'closeness', 'edgemask', 'refine'))


def _optional_message(config, field):
    if hasattr(config, 'HasField'):
        return getattr(config, field) if config.HasField(field) else None
    return getattr(config, field, None)


def _loss_weights(cfg):
    """One dict of the configured weights of the tasks that are on."""
    weights = {}
    if cfg.window:
        weights[WINDOW_LOSS] = float(cfg.window_class_loss_weight)
    if cfg.closeness:
        weights[CLOSENESS_LOSS] = float(cfg.closeness_loss_weight)
    if cfg.edgemask:
        weights[FOREGROUND_LOSS] = float(cfg.edgemask_loss_weight)
    if cfg.refine:
        weights[REFINED_LOSS] = float(cfg.refined_classification_loss_weight)
    return weights


def _foreground_level_index(cfg, feature_levels):
    """Index of the foreground head's map in ctx['feature_map'] (None: a single map)."""
    level = int(getattr(cfg, 'foreground_feature_level', 4))
    if not feature_levels:
        if level != 4:
            raise ValueError(f'model.mtl.foreground_feature_level: {level} needs a feature '
                             f'pyramid (FPN); this detector has one stride-16 map (level 4)')
        return None
    levels = [int(value) for value in feature_levels]
    if level not in levels:
        raise ValueError(f'model.mtl.foreground_feature_level: {level} is not one of the '
                         f'feature pyramid levels {levels}')
    return levels.index(level)


class MTLHeads(tf_keras.layers.Layer):
    """Auxiliary heads (Tasks 1-3) and the context refiner of one detector."""

    def __init__(self, mtl_config, num_classes, feature_extractor, main_box_classifier, crop_fn,
                 is_training, meta_arch='faster_rcnn', rfcn_ps_pool_fn=None,
                 feature_levels=None, window_crop_fn=None, closeness_crop_fn=None,
                 name='MTLHeads', **kwargs):
        super().__init__(name=name, **kwargs)
        cfg = mtl_config
        if meta_arch not in _META_ARCHS:
            raise ValueError(f'MTLHeads: meta_arch must be one of {_META_ARCHS}, got {meta_arch!r}')
        if cfg.shared_feature not in _SHARED_FEATURES:
            raise ValueError(f'model.mtl.shared_feature must be one of {_SHARED_FEATURES}, '
                             f'got {cfg.shared_feature!r}')
        aux_stage_input = getattr(cfg, 'aux_stage_input', 'roi_crops')
        if aux_stage_input not in _AUX_STAGE_INPUTS:
            raise ValueError(f'model.mtl.aux_stage_input must be one of {_AUX_STAGE_INPUTS}, '
                             f'got {aux_stage_input!r}')
        if meta_arch == 'faster_rcnn' and crop_fn is None and (cfg.window or cfg.refine):
            raise ValueError('MTLHeads: Faster R-CNN window/refine heads need the crop_fn')
        self._cfg = cfg
        self._foreground_index = _foreground_level_index(cfg, feature_levels)
        self._num_classes = int(num_classes)
        self._meta_arch = meta_arch
        self._is_training = bool(is_training)
        self._own_stages = cfg.shared_feature == 'proposal_feature_maps'
        # R-FCN runs its auxiliary stages on the whole F anyway (position-sensitive pooling)
        self._on_map = meta_arch == 'faster_rcnn' and aux_stage_input == 'whole_feature_map'
        if self._on_map and feature_levels and len(feature_levels) > 1:
            raise ValueError("model.mtl.aux_stage_input 'whole_feature_map' needs one feature map "
                             "(a C4 detector); on a feature pyramid use 'roi_crops'")
        self._stop_aux = bool(cfg.stop_gradient_for_aux_tasks)
        # the original's flag did not reach the foreground head (reproducible, off by default)
        self._foreground_uncut = not bool(getattr(cfg, 'stop_gradient_covers_foreground', True))
        self._num_levels = int(cfg.num_context_levels)
        self._refine_top_k = int(getattr(cfg, 'refine_top_k', 0))
        if self._refine_top_k < 0:
            raise ValueError(f'model.mtl.refine_top_k must be >= 0, got {self._refine_top_k}')
        self._top_k_in_training = bool(getattr(cfg, 'refine_top_k_in_training', False))
        if self._top_k_in_training and cfg.refine and self._refine_top_k < 1:
            raise ValueError('model.mtl.refine_top_k_in_training needs refine_top_k >= 1')
        if cfg.refine and cfg.window and self._num_levels < 2:
            raise ValueError(f'model.mtl.num_context_levels must be >= 2, got {self._num_levels}')
        # Plain functions/closures are not tracked: the detector owns its stage and crop op.
        self._crop_fn = crop_fn
        # mtl.window_crop_size / closeness_crop_size: those heads' crops at their own size
        for field, fn in (('window', window_crop_fn), ('closeness', closeness_crop_fn)):
            if fn is not None and (meta_arch == 'rfcn' or self._on_map or (
                    field == 'closeness' and not self._own_stages)):
                raise ValueError(f'model.mtl.{field}_crop_size: needs Faster R-CNN with '
                                 "aux_stage_input 'roi_crops' (and for closeness own stage "
                                 'copies): the other forms crop nothing for that head')
        self._window_crop_fn = window_crop_fn or crop_fn
        self._closeness_crop_fn = closeness_crop_fn
        self._main_stage = lambda: main_box_classifier
        self._share_init = bool(cfg.share_second_stage_init)
        # The backbones' own copier matches layers by blueprint position (robust); any other
        # extractor falls back to get_weights / set_weights of the whole model.
        self._copy_stage_weights = getattr(feature_extractor, 'copy_box_classifier_weights', None)
        self.loss_weights = _loss_weights(cfg)
        self._pending_share_init = self._share_init and self._own_stages

        outputs = self._num_classes + 1
        self.window_head = self._class_head('WindowBoxPredictor', cfg.window, outputs,
                                            _optional_message(cfg, 'window_box_predictor'),
                                            feature_extractor, main_box_classifier,
                                            rfcn_ps_pool_fn)
        self.closeness_head = self._class_head('ClosenessBoxPredictor', cfg.closeness, outputs,
                                               _optional_message(cfg, 'closeness_box_predictor'),
                                               feature_extractor, main_box_classifier,
                                               rfcn_ps_pool_fn)
        self.foreground_head = None
        if cfg.edgemask:
            self.foreground_head = foreground_head.ForegroundHead(
                _optional_message(cfg, 'edgemask_predictor'), int(cfg.foreground_grid_size),
                bool(cfg.foreground_tanh), name='EdgeMaskPredictor')
        self.refiner = None
        if cfg.refine:
            width = outputs * (1 + (self._num_levels if cfg.window else 0) +
                               (1 if cfg.closeness else 0))
            self.refiner = mtl_refiner.ContextRefiner(self._num_classes, width, cfg,
                                                      name='MTLClassRefiner')
        if self._pending_share_init:
            self.copy_main_stage_weights(only_if_built=True)

    def _class_head(self, name, enabled, outputs, predictor_config, feature_extractor,
                    main_box_classifier, ps_pool_fn):
        if not enabled:
            return None
        if self._own_stages:
            # share_second_stage_init false: the copy keeps its own initialization even when
            # the detector fine-tunes from a classification checkpoint (as the original).
            kwargs = {} if self._share_init else {'classification_init': False}
            stage = feature_extractor.get_box_classifier_feature_extractor_model(
                name=f'{name}FeatureExtractor', **kwargs)
        else:
            stage = main_box_classifier
        if self._meta_arch == 'rfcn':
            return class_head.PositionSensitiveClassHead(outputs, stage, self._own_stages,
                                                         ps_pool_fn, predictor_config, name=name)
        return class_head.CropClassHead(outputs, stage, self._own_stages, predictor_config,
                                        name=name)

    # ----------------------------------------------------------------------------- init sharing
    def _stage_copies(self):
        return [head.stage for head in (self.window_head, self.closeness_head)
                if head is not None and head.owns_stage]

    def copy_main_stage_weights(self, only_if_built=False):
        """Set every own stage copy to the main stage's weights, if share_second_stage_init.

        Done at construction (or at the first predict for stages built lazily); the training
        code calls it again right after a fine-tune restore (not when resuming its own
        checkpoint). A no-op returning 0 when share_second_stage_init is false or there is no
        own copy; else returns the number of copies set. only_if_built: skip unbuilt models.
        """
        main = self._main_stage()
        copies = self._stage_copies()
        if not copies or not self._share_init:
            return 0
        if not main.built or not main.weights:
            if only_if_built:
                return 0
            raise ValueError('MTLHeads.copy_main_stage_weights: the main box-classifier stage '
                             'has no weights yet (call the detector once first)')
        done = 0
        for copy in copies:
            if not copy.built or not copy.weights:
                if only_if_built:
                    continue
                raise ValueError(f'MTLHeads.copy_main_stage_weights: {copy.name} is not built')
            if self._copy_stage_weights is not None:
                self._copy_stage_weights(main, copy)
            else:
                main_weights = main.get_weights()
                if [w.shape for w in copy.get_weights()] != [w.shape for w in main_weights]:
                    raise ValueError(f'MTLHeads: {copy.name} and the main stage {main.name} '
                                     f'have different weights; get_box_classifier_feature_'
                                     f'extractor_model must return copies of the same model')
                copy.set_weights(main_weights)
            done += 1
        if done == len(copies):
            self._pending_share_init = False
        return done

    def _finish_share_init(self, stage_input, training):
        """First call: build unbuilt copies, then copy the main stage into them (eagerly)."""
        if not self._pending_share_init:
            return
        for copy in self._stage_copies():
            if not copy.built or not copy.weights:
                copy(stage_input, training=training)
        with tf.init_scope():
            self.copy_main_stage_weights()

    # ---------------------------------------------------------------------------------- predict
    @staticmethod
    def _true_over_padded(ctx):
        """[B, 2]: true image size / padded image size, per image."""
        image_shape = ctx['image_shape']
        if not isinstance(image_shape, tf.Tensor):
            image_shape = tf.TensorShape(image_shape).as_list()
        padded_hw = tf.cast(tf.stack([image_shape[1], image_shape[2]]), tf.float32)
        return tf.cast(ctx['true_image_shapes'], tf.float32)[:, :2] / padded_hw[None, :]

    def _padded_scale(self, ctx):
        """[B, 1, 4]: multiplies boxes normalized w.r.t. the true image into the padded frame."""
        return tf.tile(self._true_over_padded(ctx), [1, 2])[:, None, :]

    def _true_extent_cells(self, ctx, feature_map):
        """[B, 2]: the true image's extent on the feature map, in cells."""
        map_hw = tf.cast(tf.shape(feature_map)[1:3], tf.float32)
        return self._true_over_padded(ctx) * map_hw[None, :]

    def _cut(self, tensor):
        if not self._stop_aux:
            return tensor
        return tf.nest.map_structure(tf.stop_gradient, tensor)  # F or a list of levels

    def _head_features(self, head, stage_input, training, shared_features=None):
        """Stage features of an aux head; reused main features are cut when the flag is on."""
        if head.owns_stage:
            self._finish_share_init(stage_input, training)
            return head.features(self._cut(stage_input), training)
        if shared_features is None:
            shared_features = head.features(stage_input, training)
        return self._cut(shared_features)

    def predict(self, ctx):
        training = ctx.get('training')
        training = self._is_training if training is None else bool(training)
        feature_map = ctx['feature_map']
        scale = self._padded_scale(ctx)
        outputs = {}
        score_maps = {}  # R-FCN: per-head score maps, computed once per call

        windows = ctx.get('windows')
        if self.window_head is not None and windows is not None:
            boxes = tf.cast(windows, tf.float32) * scale
            if self._meta_arch == 'rfcn' or self._on_map:
                maps = score_maps['window'] = self._whole_map_scores(self.window_head, ctx,
                                                                     training)
                outputs['mtl_window_logits'] = self._logits_at(self.window_head, maps, boxes)
            else:
                crops = self._window_crop_fn(self._cut(feature_map), boxes)
                features = self._head_features(self.window_head, crops, training)
                logits = self.window_head.logits_from_features(features, training)
                outputs['mtl_window_logits'] = self._per_image(logits, boxes)

        with_groundtruth = bool(training or ctx.get('groundtruth_provided'))
        top_k = self.refiner is not None and refine_top_k.active(
            self._refine_top_k, ctx['class_logits'].shape[1], training, self._top_k_in_training)
        # refine_top_k_in_training: the closeness head runs on the top-K RoIs only (below)
        closeness_on_top_k = top_k and training
        if self.closeness_head is not None and not closeness_on_top_k and (
                with_groundtruth or (self.refiner is not None and not top_k)):
            outputs['mtl_closeness_logits'] = self._closeness_logits(ctx, scale, training,
                                                                     score_maps)

        # The foreground head serves training and eval quality metrics only: at inference
        # without ground truth nothing reads it, so it stays out of exported graphs.
        if self.foreground_head is not None and with_groundtruth:
            level_map = (feature_map if self._foreground_index is None
                         else feature_map[self._foreground_index])
            foreground_input = level_map if self._foreground_uncut else self._cut(level_map)
            outputs['mtl_foreground_logits'] = self.foreground_head(
                foreground_input, self._true_extent_cells(ctx, level_map), training=training)

        if top_k:
            outputs['mtl_refined_class_logits'], indices, closeness = (
                self._refine_top_k_proposals(ctx, outputs, scale, training, score_maps))
            if training:  # the closeness loss covers these rows only
                outputs['mtl_refined_rows'] = refine_top_k.refined_rows(
                    indices, ctx['num_proposals'], tf.shape(ctx['class_logits'])[1])
                if closeness is not None:  # 0 at the other rows (left out by the loss)
                    outputs['mtl_closeness_logits'] = refine_top_k.scatter(
                        tf.zeros_like(ctx['class_logits'], closeness.dtype), closeness, indices)
        elif self.refiner is not None:
            outputs['mtl_refined_class_logits'] = self._refine(ctx, outputs, scale, training,
                                                               score_maps)
        return outputs

    def _refine_top_k_proposals(self, ctx, outputs, scale, training, score_maps):
        """_refine on the refine_top_k best proposals; the others keep the main logits as the
        refiner's residual path passes them (so in training the refined loss still reaches the
        main classifier at every RoI, as in the paper). Returns the logits, the indices [B, K]
        and the closeness logits of those K [B, K, C+1] (None without the closeness head)."""
        sub, indices = refine_top_k.select(
            ctx, self._refine_top_k,
            () if self._meta_arch == 'rfcn' else refine_top_k.PER_PROPOSAL_ROWS)
        sub_outputs = {}
        if self.closeness_head is not None:
            full = outputs.get('mtl_closeness_logits')
            sub_outputs['mtl_closeness_logits'] = (
                tf.gather(full, indices, batch_dims=1) if full is not None
                else self._closeness_logits(sub, scale, training, score_maps))
        refined = self._refine(sub, sub_outputs, scale, training, score_maps)
        return (refine_top_k.scatter(self.refiner.passthrough(ctx['class_logits']), refined,
                                     indices),
                indices, sub_outputs.get('mtl_closeness_logits'))

    @staticmethod
    def _per_image(logits, boxes):
        shape = tf.shape(boxes)
        return tf.reshape(logits, [shape[0], shape[1], logits.shape[-1]])

    def _whole_map_scores(self, head, ctx, training):
        """The head's class score maps from its stage run once on the whole F: R-FCN's
        position-sensitive maps (reusing the main stage's features when shared), or with
        aux_stage_input "whole_feature_map" the FC at every cell."""
        feature_map = ctx['feature_map']
        if self._meta_arch == 'rfcn':
            features = self._head_features(head, feature_map, training,
                                           ctx.get('box_classifier_features'))
            return head.score_maps(features, training)
        return head.score_map(self._head_features(head, feature_map, training), training)

    def _logits_at(self, head, maps, boxes):
        """[B, K, C+1] logits at boxes [B, K, 4] (padded frame) from _whole_map_scores."""
        if self._meta_arch == 'rfcn':
            return head.logits_at(maps, boxes)
        return head.pool_scores(maps, boxes)

    def _closeness_logits(self, ctx, scale, training, score_maps):
        proposals = tf.cast(ctx['proposal_boxes_normalized'], tf.float32)
        if self._meta_arch == 'rfcn' or (self._on_map and self._own_stages):
            maps = score_maps['closeness'] = self._whole_map_scores(self.closeness_head, ctx,
                                                                    training)
            return self._logits_at(self.closeness_head, maps, proposals * scale)
        stage_input = ctx['proposal_crops'] if self._own_stages else None
        if self._closeness_crop_fn is not None:  # mtl.closeness_crop_size
            stage_input = self._closeness_crop_fn(self._cut(ctx['feature_map']),
                                                  proposals * scale)
        features = self._head_features(self.closeness_head, stage_input, training,
                                       ctx.get('box_classifier_features'))
        logits = self.closeness_head.logits_from_features(features, training)
        return self._per_image(logits, proposals)

    # ----------------------------------------------------------------------------------- refine
    def context_logits(self, ctx):
        """Window-head logits at the context boxes of ctx's proposals, [B, P, L*(C+1)] (what
        the refiner gets; for analysis and benchmarks). Needs the window head."""
        if self.window_head is None:
            raise ValueError('MTLHeads.context_logits needs model.mtl.window on')
        training = ctx.get('training')
        training = self._is_training if training is None else bool(training)
        return self._context_logits(ctx, self._padded_scale(ctx), training, {})

    def _context_logits(self, ctx, scale, training, score_maps):
        """Window-head logits at the L context boxes of every proposal: [B, P, L*(C+1)]."""
        proposals = tf.cast(ctx['proposal_boxes_normalized'], tf.float32)
        levels = mtl_labels.context_boxes(proposals, self._num_levels) * scale[:, :, None, :]
        shape = tf.shape(proposals)
        batch, num = shape[0], shape[1]
        outputs = self._num_classes + 1
        head = self.window_head
        if self._meta_arch == 'rfcn' or self._on_map:
            # the score maps exist once per image: pooling them at L * P boxes is cheap
            maps = score_maps.get('window')
            if maps is None:
                maps = self._whole_map_scores(head, ctx, training)
            logits = self._logits_at(head, tf.stop_gradient(maps),
                                     tf.reshape(levels, [batch, num * self._num_levels, 4]))
            return tf.reshape(logits, [batch, num, self._num_levels * outputs])

        # Faster R-CNN. The last level is the whole image for every proposal: crop it once per
        # image. Level 0 is the proposal itself: with the shared main stage (and the same crop
        # size) its features are the box classifier's own, reused. All other crops go through
        # ONE crop op and ONE stage pass.
        per_level = []
        first = 0
        if (not self._own_stages and ctx.get('box_classifier_features') is not None
                and self._window_crop_fn is self._crop_fn):
            main_features = tf.stop_gradient(ctx['box_classifier_features'])
            level0 = head.logits_from_features(main_features, training)
            per_level.append(tf.reshape(level0, [batch, num, 1, outputs]))
            first = 1
        inner = self._num_levels - 1 - first
        inner_boxes = tf.reshape(levels[:, :, first:self._num_levels - 1], [batch, num * inner, 4])
        whole_image = levels[:, :1, self._num_levels - 1]  # [B, 1, 4]
        crop_boxes = tf.stop_gradient(tf.concat([inner_boxes, whole_image], 1))
        crops = self._window_crop_fn(
            tf.nest.map_structure(tf.stop_gradient, ctx['feature_map']), crop_boxes)
        if head.owns_stage:
            self._finish_share_init(crops, training)
        features = tf.stop_gradient(head.features(crops, training))
        logits = tf.reshape(head.logits_from_features(features, training),
                            [batch, num * inner + 1, outputs])
        per_level.append(tf.reshape(logits[:, :num * inner], [batch, num, inner, outputs]))
        per_level.append(tf.tile(logits[:, num * inner:, None], [1, num, 1, 1]))
        return tf.reshape(tf.concat(per_level, 2), [batch, num, self._num_levels * outputs])

    def _refine(self, ctx, outputs, scale, training, score_maps):
        sources = [ctx['class_logits']]
        if self.window_head is not None:
            sources.append(self._context_logits(ctx, scale, training, score_maps))
        if self.closeness_head is not None:
            closeness = tf.stop_gradient(outputs['mtl_closeness_logits'])
            if self._cfg.global_closeness:  # mean over THIS image's valid proposals
                num = tf.shape(closeness)[1]
                valid = tf.cast(tf.range(num)[None, :] <
                                tf.cast(ctx['num_proposals'], tf.int32)[:, None], tf.float32)
                total = tf.reduce_sum(closeness * valid[..., None], 1, keepdims=True)
                count = tf.maximum(tf.reduce_sum(valid, 1), 1.0)[:, None, None]
                closeness = tf.broadcast_to(total / count, tf.shape(closeness))
            sources.append(closeness)
        return self.refiner(sources, training=training)

    # ------------------------------------------------------------------------------------- loss
    def loss(self, prediction_dict, groundtruth, proposal_targets, classification_loss_fn):
        """Weighted MTL losses {'Loss/MTL/...': scalar} of the tasks that are on."""

        def need(source, key, what):
            if source is None or source.get(key) is None:
                raise ValueError(f'MTLHeads.loss: {what} lacks {key!r} (needed because its MTL '
                                 f'task is on in model.mtl)')
            return source[key]

        raw = {}
        if self.window_head is not None:
            raw[WINDOW_LOSS] = mtl_losses.window_loss(
                need(prediction_dict, 'mtl_window_logits', 'prediction_dict'),
                need(groundtruth, 'mtl_window_labels', 'groundtruth'))
        rows = prediction_dict.get('mtl_refined_rows')  # refine_top_k_in_training
        if self.closeness_head is not None:
            positives = need(proposal_targets, 'positive_mask', 'proposal_targets')
            if rows is not None:  # the closeness head ran on those rows only
                positives = tf.cast(positives, tf.float32) * rows
            raw[CLOSENESS_LOSS] = mtl_losses.closeness_loss(
                need(prediction_dict, 'mtl_closeness_logits', 'prediction_dict'),
                need(groundtruth, 'mtl_closeness_labels', 'groundtruth'),
                need(proposal_targets, 'matched_gt_indices', 'proposal_targets'),
                positives,
                sum_over_images=bool(getattr(self._cfg, 'closeness_loss_sum_over_images', False)))
        if self.foreground_head is not None:
            weights = None
            if self._cfg.edgemask_weighted:
                weights = need(groundtruth, 'mtl_foreground_weights', 'groundtruth')
            raw[FOREGROUND_LOSS] = mtl_losses.foreground_loss(
                need(prediction_dict, 'mtl_foreground_logits', 'prediction_dict'),
                need(groundtruth, 'mtl_foreground_mask', 'groundtruth'), weights)
        if self.refiner is not None:
            raw[REFINED_LOSS] = classification_loss_fn(
                need(prediction_dict, 'mtl_refined_class_logits', 'prediction_dict'))
        return {key: self.loss_weights[key] * tf.cast(value, tf.float32)
                for key, value in raw.items()}
