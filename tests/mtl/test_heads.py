"""MTLHeads: shapes, variables per switch, gradient flow, init sharing, foreground resize, R-FCN."""
import itertools

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from mtl_ssl.mtl import foreground_head
from mtl_ssl.mtl import heads as mtl_heads
from mtl_ssl.mtl import losses as mtl_losses
from mtl_ssl.protos import mtl_pb2

NUM_CLASSES = 3
OUT = NUM_CLASSES + 1
CROP = 4
DEPTH = 4
TRUE_SHAPES = [[96, 128, 3], [64, 96, 3]]  # padded image 96 x 128, stride 16 -> F is 6 x 8


def make_stage(name=None):
    inputs = tf_keras.Input((None, None, DEPTH))
    net = tf_keras.layers.Conv2D(6, 3, strides=2, padding='same', activation='relu')(inputs)
    return tf_keras.Model(inputs, net, name=name)


class SubclassedStage(tf_keras.Model):
    """A stage whose variables only exist after its first call (tests deferred init sharing)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = tf_keras.layers.Conv2D(6, 3, padding='same')

    def call(self, x, training=None):
        return self.conv(x)


class TinyExtractor:
    """Stands in for a backbone: every call returns a NEW stage copy."""

    def __init__(self, factory=make_stage):
        self.factory = factory
        self.made = []

    def get_box_classifier_feature_extractor_model(self, name=None, classification_init=True):
        del classification_init  # no classification weights here
        self.made.append(self.factory(name=name))
        return self.made[-1]


class CropSpy:
    """crop_and_resize to size x size (CROP); records the boxes of every call."""

    def __init__(self, size=CROP):
        self.calls = []
        self.size = size

    def __call__(self, feature_map, boxes):
        self.calls.append(boxes)
        batch, num = tf.shape(boxes)[0], tf.shape(boxes)[1]
        indices = tf.repeat(tf.range(batch), num)
        return tf.image.crop_and_resize(feature_map, tf.reshape(boxes, [-1, 4]), indices,
                                        (self.size, self.size))


def ps_pool(score_maps, boxes, bins=3):
    """Reference position-sensitive RoI pooling, global pooled: [B, K, D]."""
    batch, num = tf.shape(boxes)[0], tf.shape(boxes)[1]
    depth = score_maps.shape[-1] // (bins * bins)
    flat = tf.reshape(boxes, [-1, 4])
    indices = tf.repeat(tf.range(batch), num)
    ymin, xmin, ymax, xmax = tf.unstack(flat, axis=1)
    outs = []
    for i, j in itertools.product(range(bins), range(bins)):
        cell = tf.stack([ymin + (ymax - ymin) * i / bins, xmin + (xmax - xmin) * j / bins,
                         ymin + (ymax - ymin) * (i + 1) / bins,
                         xmin + (xmax - xmin) * (j + 1) / bins], 1)
        channels = score_maps[..., (i * bins + j) * depth:(i * bins + j + 1) * depth]
        crop = tf.image.crop_and_resize(channels, cell, indices, (2, 2))
        outs.append(tf.reduce_mean(crop, [1, 2]))
    return tf.reshape(tf.add_n(outs) / float(bins * bins), [batch, num, depth])


def make_config(**overrides):
    cfg = mtl_pb2.MTL(window_class_loss_weight=1.0, closeness_loss_weight=0.3,
                      edgemask_loss_weight=0.5, refined_classification_loss_weight=2.0,
                      refine_residue=True, foreground_grid_size=8)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def make_rfcn_config(**overrides):
    cfg = make_config(**overrides)
    for predictor in (cfg.window_box_predictor, cfg.closeness_box_predictor):
        predictor.rfcn_box_predictor.depth = 5
    return cfg


class Setup:
    """A detector stand-in: F from a producer conv, main stage, proposals, main logits."""

    def __init__(self, cfg, batch=2, num_props=5, num_windows=3, seed=0, meta_arch='faster_rcnn',
                 factory=make_stage, true_shapes=TRUE_SHAPES, window_crop=None,
                 closeness_crop=None):
        rng = np.random.default_rng(seed)
        tf.keras.utils.set_random_seed(seed)
        self.images = tf.constant(rng.normal(size=(batch, 6, 8, 3)).astype(np.float32))
        self.producer = tf_keras.layers.Conv2D(DEPTH, 1, name='producer')
        self.extractor = TinyExtractor(factory)
        self.main = self.extractor.get_box_classifier_feature_extractor_model('main')
        self.crop = CropSpy()
        # mtl.window_crop_size: the window head's own crop op (None: the detector's)
        self.window_crop = CropSpy(window_crop) if window_crop else None
        self.closeness_crop = CropSpy(closeness_crop) if closeness_crop else None
        self.true_shapes = tf.constant(true_shapes[:batch], tf.int32)
        low = rng.uniform(0.0, 0.5, size=(batch, num_props, 2))
        self.proposals = tf.constant(np.concatenate(
            [low, low + rng.uniform(0.1, 0.5, size=(batch, num_props, 2))], -1), tf.float32)
        low = rng.uniform(0.0, 0.6, size=(batch, num_windows, 2))
        self.windows = tf.constant(np.concatenate([low, low + 0.4], -1), tf.float32)
        self.num_proposals = tf.constant([num_props, max(num_props - 2, 1)][:batch], tf.int32)
        self.main_logits = tf.constant(rng.normal(size=(batch, num_props, OUT)), tf.float32)
        self.meta_arch = meta_arch
        self.heads = mtl_heads.MTLHeads(
            cfg, NUM_CLASSES, self.extractor, self.main,
            self.crop if meta_arch == 'faster_rcnn' else None, is_training=True,
            meta_arch=meta_arch, rfcn_ps_pool_fn=ps_pool if meta_arch == 'rfcn' else None,
            window_crop_fn=self.window_crop, closeness_crop_fn=self.closeness_crop)

    def scale(self):
        ratio = self.true_shapes[:, :2].numpy() / np.array([96.0, 128.0])
        return np.tile(ratio, [1, 2])[:, None, :]

    def context(self, training=True, with_windows=True):
        feature_map = self.producer(self.images)
        ctx = {'feature_map': feature_map, 'true_image_shapes': self.true_shapes,
               'image_shape': [int(feature_map.shape[0]), 96, 128, 3],
               'proposal_boxes_normalized': self.proposals, 'num_proposals': self.num_proposals,
               'class_logits': self.main_logits, 'training': training,
               'windows': self.windows if with_windows else None,
               # the detector sets this when ground truth was provided (training or eval)
               'groundtruth_provided': with_windows}
        if self.meta_arch == 'rfcn':
            ctx['proposal_crops'] = None
            ctx['box_classifier_features'] = self.main(feature_map)
        else:
            ctx['proposal_crops'] = self.crop(feature_map, self.proposals * self.scale())
            ctx['box_classifier_features'] = self.main(ctx['proposal_crops'])
        return ctx

    def groundtruth(self, num_gt=4, seed=1):
        rng = np.random.default_rng(seed)
        batch, num_windows = self.windows.shape[:2]
        raw = rng.random((batch, num_windows, OUT))
        mask = (rng.random((batch, 8, 8)) < 0.4).astype(np.float32)
        closeness = rng.random((batch, num_gt, OUT))
        return {'mtl_window_labels': tf.constant(raw / raw.sum(-1, keepdims=True), tf.float32),
                'mtl_closeness_labels': tf.constant(closeness / closeness.sum(-1, keepdims=True),
                                                    tf.float32),
                'mtl_foreground_mask': tf.constant(mask),
                'mtl_foreground_weights': tf.constant(rng.random((batch, 8, 8)), tf.float32)}

    def proposal_targets(self):
        batch, num = self.proposals.shape[:2]
        matched = np.arange(batch * num).reshape(batch, num) % 4
        return {'matched_gt_indices': tf.constant(matched, tf.int32),
                'positive_mask': tf.constant(np.arange(num)[None, :] % 2 == 0) & tf.ones(
                    [batch, num], tf.bool)}


def refined_ce(logits):
    return tf.reduce_mean(tf.reduce_logsumexp(logits, -1) - logits[..., 0])


ALL_ON = dict(window=True, closeness=True, edgemask=True, refine=True)


@pytest.mark.parametrize('meta_arch', ['faster_rcnn', 'rfcn'])
def test_output_shapes_training_and_inference(meta_arch):
    cfg = (make_rfcn_config if meta_arch == 'rfcn' else make_config)(**ALL_ON)
    setup = Setup(cfg, meta_arch=meta_arch)
    out = setup.heads.predict(setup.context())
    assert out['mtl_window_logits'].shape == (2, 3, OUT)
    assert out['mtl_closeness_logits'].shape == (2, 5, OUT)
    assert out['mtl_foreground_logits'].shape == (2, 8, 8, 2)
    assert out['mtl_refined_class_logits'].shape == (2, 5, OUT)
    inference = setup.heads.predict(setup.context(training=False, with_windows=False))
    assert 'mtl_window_logits' not in inference
    assert 'mtl_foreground_logits' not in inference  # no ground truth: nothing reads it
    assert inference['mtl_refined_class_logits'].shape == (2, 5, OUT)
    for value in list(out.values()) + list(inference.values()):
        assert np.isfinite(value.numpy()).all()


def test_all_off_is_detected():
    assert not mtl_heads.any_task_on(mtl_pb2.MTL())
    assert not mtl_heads.any_task_on(None)
    assert mtl_heads.any_task_on(mtl_pb2.MTL(edgemask=True))


# Expected variables of each switch with the tiny stage (2 variables per stage copy).
SWITCH_VARIABLES = {
    ('window', 'proposal_feature_maps'): 4, ('window', 'classifier_feature_maps'): 2,
    ('closeness', 'proposal_feature_maps'): 4, ('closeness', 'classifier_feature_maps'): 2,
    ('edgemask', 'proposal_feature_maps'): 2, ('edgemask', 'classifier_feature_maps'): 2,
}
LOSS_OF = {'window': mtl_heads.WINDOW_LOSS, 'closeness': mtl_heads.CLOSENESS_LOSS,
           'edgemask': mtl_heads.FOREGROUND_LOSS, 'refine': mtl_heads.REFINED_LOSS}


@pytest.mark.parametrize('shared', ['proposal_feature_maps', 'classifier_feature_maps'])
@pytest.mark.parametrize('switch', ['window', 'closeness', 'edgemask', 'refine'])
def test_each_switch_adds_exactly_its_loss_and_variables(switch, shared):
    setup = Setup(make_config(shared_feature=shared, **{switch: True}))
    out = setup.heads.predict(setup.context())
    losses = setup.heads.loss(out, setup.groundtruth(), setup.proposal_targets(), refined_ce)
    assert set(losses) == {LOSS_OF[switch]}
    variables = setup.heads.trainable_variables
    main_ids = {id(v) for v in setup.main.variables}
    assert not main_ids & {id(v) for v in variables}, 'the main stage must stay the detector\'s'
    if switch == 'refine':  # refiner alone: input = main logits only, one FC (C+1 -> C+1)
        assert [tuple(v.shape) for v in variables] == [(OUT, OUT), (OUT,)]
        assert set(out) == {'mtl_refined_class_logits'}
    else:
        assert len(variables) == SWITCH_VARIABLES[(switch, shared)]
    # Off means no cost: no crop of windows unless the window head is on.
    crop_calls = len(setup.crop.calls) - 1  # the context's own proposal crop
    assert crop_calls == (1 if switch == 'window' else 0)


def test_all_off_builds_nothing():
    setup = Setup(make_config())
    assert setup.heads.predict(setup.context()) == {}
    assert setup.heads.trainable_variables == []
    assert setup.heads.loss({}, {}, {}, refined_ce) == {}
    assert len(setup.extractor.made) == 1  # only the main stage


def test_losses_are_weighted_from_config():
    setup = Setup(make_config(**ALL_ON))
    out = setup.heads.predict(setup.context())
    gt, targets = setup.groundtruth(), setup.proposal_targets()
    losses = setup.heads.loss(out, gt, targets, refined_ce)
    assert dict(setup.heads.loss_weights) == pytest.approx({
        mtl_heads.WINDOW_LOSS: 1.0, mtl_heads.CLOSENESS_LOSS: 0.3, mtl_heads.FOREGROUND_LOSS: 0.5,
        mtl_heads.REFINED_LOSS: 2.0})
    raw = {mtl_heads.WINDOW_LOSS: mtl_losses.window_loss(out['mtl_window_logits'],
                                                         gt['mtl_window_labels']),
           mtl_heads.CLOSENESS_LOSS: mtl_losses.closeness_loss(
               out['mtl_closeness_logits'], gt['mtl_closeness_labels'],
               targets['matched_gt_indices'], targets['positive_mask']),
           mtl_heads.FOREGROUND_LOSS: mtl_losses.foreground_loss(
               out['mtl_foreground_logits'], gt['mtl_foreground_mask'],
               gt['mtl_foreground_weights']),
           mtl_heads.REFINED_LOSS: refined_ce(out['mtl_refined_class_logits'])}
    for key, value in raw.items():
        np.testing.assert_allclose(losses[key].numpy(),
                                   setup.heads.loss_weights[key] * value.numpy(), rtol=1e-6)
        assert losses[key].numpy() > 0
    unweighted = make_config(edgemask=True, edgemask_weighted=False, edgemask_loss_weight=1.0)
    setup = Setup(unweighted)
    out = setup.heads.predict(setup.context())
    value = setup.heads.loss(out, {'mtl_foreground_mask': gt['mtl_foreground_mask']}, {}, None)
    np.testing.assert_allclose(value[mtl_heads.FOREGROUND_LOSS].numpy(), mtl_losses.foreground_loss(
        out['mtl_foreground_logits'], gt['mtl_foreground_mask']).numpy(), rtol=1e-6)


def test_missing_groundtruth_is_a_clear_error():
    setup = Setup(make_config(window=True))
    out = setup.heads.predict(setup.context())
    with pytest.raises(ValueError, match='mtl_window_labels'):
        setup.heads.loss(out, {}, {}, refined_ce)


def _aux_loss_gradients(setup, task):
    """Gradients of one task's loss w.r.t. the producer of F and the main stage."""
    gt, targets = setup.groundtruth(), setup.proposal_targets()
    with tf.GradientTape(persistent=True) as tape:
        out = setup.heads.predict(setup.context())
        losses = setup.heads.loss(out, gt, targets, refined_ce)
        value = losses[LOSS_OF[task]]
    producer = tape.gradient(value, setup.producer.trainable_variables)
    main = tape.gradient(value, setup.main.trainable_variables)
    heads = tape.gradient(value, setup.heads.trainable_variables)
    return producer, main, heads


def _is_zero(grads):
    return all(g is None or not np.any(tf.convert_to_tensor(g).numpy()) for g in grads)


@pytest.mark.parametrize('shared', ['proposal_feature_maps', 'classifier_feature_maps'])
@pytest.mark.parametrize('task', ['window', 'closeness', 'edgemask'])
def test_stop_gradient_for_aux_tasks(task, shared):
    for stop in (True, False):
        setup = Setup(make_config(shared_feature=shared, stop_gradient_for_aux_tasks=stop,
                                  **{task: True}))
        producer, main, heads = _aux_loss_gradients(setup, task)
        assert not _is_zero(heads), 'the aux head itself always trains'
        assert _is_zero(producer) == stop, (task, shared, stop)
        if shared == 'classifier_feature_maps' and task != 'edgemask':
            assert _is_zero(main) == stop  # reused main stage: trained only without the flag
        else:
            assert _is_zero(main)


def test_refined_loss_never_trains_aux_heads_or_features():
    setup = Setup(make_config(**ALL_ON))
    with tf.GradientTape(persistent=True) as tape:
        out = setup.heads.predict(setup.context())
        value = refined_ce(out['mtl_refined_class_logits'])
    assert _is_zero(tape.gradient(value, setup.producer.trainable_variables))
    for head in (setup.heads.window_head, setup.heads.closeness_head):
        assert _is_zero(tape.gradient(value, head.trainable_variables))
    assert not _is_zero(tape.gradient(value, setup.heads.refiner.trainable_variables))


@pytest.mark.parametrize('factory', [make_stage, SubclassedStage])
def test_share_second_stage_init_makes_equal_copies(factory):
    crops = tf.random.normal([3, CROP, CROP, DEPTH])
    setup = Setup(make_config(window=True, closeness=True), factory=factory)
    if factory is SubclassedStage:
        setup.main(crops)  # the detector runs its stage before the heads
    setup.heads.predict(setup.context())
    expected = setup.main(crops).numpy()
    for head in (setup.heads.window_head, setup.heads.closeness_head):
        np.testing.assert_array_equal(head.stage(crops).numpy(), expected)
        assert head.stage is not setup.main
    # After a restore the detector calls it again: copies follow the main stage.
    for var in setup.main.trainable_variables:
        var.assign_add(tf.ones_like(var))
    assert setup.heads.copy_main_stage_weights() == 2
    np.testing.assert_array_equal(setup.heads.window_head.stage(crops).numpy(),
                                  setup.main(crops).numpy())
    separate = Setup(make_config(window=True, share_second_stage_init=False), factory=factory,
                     seed=5)
    separate.heads.predict(separate.context())
    assert separate.heads.copy_main_stage_weights() == 0  # the flag is off: nothing copied
    assert not np.allclose(separate.heads.window_head.stage(crops).numpy(),
                           separate.main(crops).numpy())


def test_share_init_inside_tf_function():
    setup = Setup(make_config(window=True, closeness=True), factory=SubclassedStage)
    ctx = setup.context()
    setup.main(ctx['proposal_crops'])

    @tf.function
    def run(ctx):
        return setup.heads.predict(ctx)

    run(ctx)
    crops = tf.random.normal([2, CROP, CROP, DEPTH])
    np.testing.assert_array_equal(setup.heads.closeness_head.stage(crops).numpy(),
                                  setup.main(crops).numpy())


@pytest.mark.parametrize('meta_arch', ['faster_rcnn', 'rfcn'])
def test_any_batch_size_gives_per_image_results(meta_arch):
    """Image i alone (B=1) gives the same outputs as inside a batch of 2 (per-image averaging)."""
    make = make_rfcn_config if meta_arch == 'rfcn' else make_config
    batched = Setup(make(**ALL_ON), meta_arch=meta_arch)
    out = batched.heads.predict(batched.context(training=False))
    for i in range(2):
        single = Setup(make(**ALL_ON), batch=1, meta_arch=meta_arch, seed=7)
        single.heads.predict(single.context(training=False))  # builds everything
        for mine, theirs in ((single.heads, batched.heads), (single.producer, batched.producer),
                             (single.main, batched.main)):
            mine.set_weights(theirs.get_weights())
        single.images = batched.images[i:i + 1]
        single.true_shapes = batched.true_shapes[i:i + 1]
        single.proposals = batched.proposals[i:i + 1]
        single.windows = batched.windows[i:i + 1]
        single.num_proposals = batched.num_proposals[i:i + 1]
        single.main_logits = batched.main_logits[i:i + 1]
        single_out = single.heads.predict(single.context(training=False))
        for key, value in single_out.items():
            np.testing.assert_allclose(value.numpy()[0], out[key].numpy()[i], rtol=1e-4,
                                       atol=1e-8, err_msg=f'{key} image {i}')
    assert set(out) == set(single_out) == {'mtl_window_logits', 'mtl_closeness_logits',
                                           'mtl_foreground_logits', 'mtl_refined_class_logits'}


def test_foreground_resize_equals_tf_resize_over_the_true_region():
    rng = np.random.default_rng(0)
    values = tf.constant(rng.normal(size=(2, 6, 8, 2)), tf.float32)
    extent = tf.constant([[6.0, 8.0], [4.0, 6.0]])  # image 1 covers 4 x 6 of the 6 x 8 cells
    out = foreground_head.resize_true_region(values, extent, 16).numpy()
    np.testing.assert_allclose(out[0], tf.image.resize(values[0], [16, 16]).numpy(), atol=1e-5)
    np.testing.assert_allclose(out[1], tf.image.resize(values[1, :4, :6], [16, 16]).numpy(),
                               atol=1e-5)
    # Downsampling works too, and the padding never leaks into the true region.
    padded = values.numpy().copy()
    padded[1, 4:] = 1e6
    padded[1, :, 6:] = 1e6
    out = foreground_head.resize_true_region(tf.constant(padded), extent, 3).numpy()
    np.testing.assert_allclose(out[1], tf.image.resize(values[1, :4, :6], [3, 3]).numpy(),
                               atol=1e-4)


def test_foreground_head_uses_the_true_extent_and_optional_tanh():
    setup = Setup(make_config(edgemask=True))
    ctx = setup.context()
    out = setup.heads.predict(ctx)['mtl_foreground_logits']
    conv = setup.heads.foreground_head.conv(ctx['feature_map'])
    np.testing.assert_allclose(out[1].numpy(), tf.image.resize(conv[1, :4, :6], [8, 8]).numpy(),
                               atol=1e-5)
    squashed = Setup(make_config(edgemask=True, foreground_tanh=True))
    values = squashed.heads.predict(squashed.context())['mtl_foreground_logits'].numpy()
    assert np.abs(values).max() <= 1.0


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match='shared_feature'):
        Setup(make_config(window=True, shared_feature='nope'))
    with pytest.raises(ValueError, match='refine_dropout_rate'):
        Setup(make_config(refine=True, refine_dropout_rate=0.0))
    with pytest.raises(ValueError, match='rfcn_ps_pool_fn'):
        mtl_heads.MTLHeads(make_config(window=True), NUM_CLASSES, TinyExtractor(), make_stage(),
                           None, True, meta_arch='rfcn')
    with pytest.raises(ValueError, match='mask_rcnn_box_predictor'):
        Setup(make_rfcn_config(window=True))  # rfcn predictor on a Faster R-CNN head


def test_original_stop_gradient_left_the_foreground_head_uncut():
    # model22 ran stop_gradient_for_aux_tasks with the foreground loss still reaching F
    config = make_config(edgemask=True, stop_gradient_for_aux_tasks=True,
                         stop_gradient_covers_foreground=False)
    producer, _, _ = _aux_loss_gradients(Setup(config), 'edgemask')
    assert not _is_zero(producer)
    config = make_config(window=True, stop_gradient_for_aux_tasks=True,
                         stop_gradient_covers_foreground=False)
    producer, _, _ = _aux_loss_gradients(Setup(config), 'window')
    assert _is_zero(producer)  # the window head stays cut


def test_closeness_loss_sum_over_images_reaches_the_loss():
    setup = Setup(make_config(closeness=True))
    out = setup.heads.predict(setup.context())
    gt, targets = setup.groundtruth(), setup.proposal_targets()
    mean = setup.heads.loss(out, gt, targets, refined_ce)[mtl_heads.CLOSENESS_LOSS]
    setup.heads._cfg.closeness_loss_sum_over_images = True
    summed = setup.heads.loss(out, gt, targets, refined_ce)[mtl_heads.CLOSENESS_LOSS]
    assert float(mean) > 0
    np.testing.assert_allclose(float(summed), 2 * float(mean), rtol=1e-6)  # 2 images
