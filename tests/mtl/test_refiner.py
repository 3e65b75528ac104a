"""Context refiner: exact identity at zero weights, its inputs (context boxes, global closeness),
batched crops, gradient options, hidden layers and dropout."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from mtl_ssl.mtl import heads as mtl_heads
from mtl_ssl.mtl import refiner as mtl_refiner
from mtl_ssl.protos import mtl_pb2

NUM_CLASSES = 3
OUT = NUM_CLASSES + 1
CROP = 4
DEPTH = 4
LEVELS = 5
PADDED_HW = np.array([96.0, 128.0])


def make_stage(name=None):
    inputs = tf_keras.Input((None, None, DEPTH))
    net = tf_keras.layers.Conv2D(6, 3, strides=2, padding='same', activation='relu')(inputs)
    return tf_keras.Model(inputs, net, name=name)


class Extractor:
    def get_box_classifier_feature_extractor_model(self, name=None):
        return make_stage(name)


class CropSpy:
    def __init__(self):
        self.calls = []

    def __call__(self, feature_map, boxes):
        self.calls.append(boxes.numpy())
        batch, num = tf.shape(boxes)[0], tf.shape(boxes)[1]
        return tf.image.crop_and_resize(feature_map, tf.reshape(boxes, [-1, 4]),
                                        tf.repeat(tf.range(batch), num), (CROP, CROP))


class Recorder(tf_keras.layers.Layer):
    """Wraps the refiner and records the list of inputs it gets."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.seen = None

    def call(self, inputs, training=None):
        self.seen = [tf.convert_to_tensor(x).numpy() for x in inputs]
        return self.inner(inputs, training=training)


def make_config(**overrides):
    cfg = mtl_pb2.MTL(refine=True, window=True, closeness=True, refine_residue=True,
                      refined_classification_loss_weight=1.0)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def build(cfg, seed=0, num_proposals=(5, 3)):
    rng = np.random.default_rng(seed)
    tf.keras.utils.set_random_seed(seed)
    batch, num = 2, 5
    feature_map = tf.constant(rng.normal(size=(batch, 6, 8, DEPTH)), tf.float32)
    true_shapes = tf.constant([[96, 128, 3], [64, 96, 3]], tf.int32)
    low = rng.uniform(0.0, 0.5, size=(batch, num, 2))
    proposals = np.concatenate([low, low + rng.uniform(0.1, 0.5, size=(batch, num, 2))], -1)
    scale = np.tile(true_shapes.numpy()[:, :2] / PADDED_HW, [1, 2])[:, None, :]
    main = make_stage('main')
    crop = CropSpy()
    heads = mtl_heads.MTLHeads(cfg, NUM_CLASSES, Extractor(), main, crop, is_training=True)
    crops = crop(feature_map, tf.constant(proposals * scale, tf.float32))
    ctx = {'feature_map': feature_map, 'true_image_shapes': true_shapes,
           'image_shape': [batch, 96, 128, 3],
           'proposal_boxes_normalized': tf.constant(proposals, tf.float32),
           'num_proposals': tf.constant(num_proposals, tf.int32), 'proposal_crops': crops,
           'box_classifier_features': main(crops),
           'class_logits': tf.constant(rng.normal(size=(batch, num, OUT)), tf.float32),
           'windows': None, 'training': False}
    crop.calls.clear()
    return heads, ctx, crop, proposals, scale


def np_context_boxes(box, levels=LEVELS):
    ymin, xmin, ymax, xmax = box
    out = []
    for i in range(levels):
        t = i / (levels - 1)
        out.append([ymin * (1 - t), xmin * (1 - t), ymax + t * (1 - ymax), xmax + t * (1 - xmax)])
    return np.array(out)


def test_zero_weights_with_residual_return_the_main_logits_exactly():
    heads, ctx, _, _, _ = build(make_config())
    heads.predict(ctx)
    for var in heads.refiner.trainable_variables:
        var.assign(tf.zeros_like(var))
    refined = heads.predict(ctx)['mtl_refined_class_logits'].numpy()
    np.testing.assert_array_equal(refined, ctx['class_logits'].numpy())
    no_residual, ctx, _, _, _ = build(make_config(refine_residue=False))
    no_residual.predict(ctx)
    for var in no_residual.refiner.trainable_variables:
        var.assign(tf.zeros_like(var))
    assert not np.any(no_residual.predict(ctx)['mtl_refined_class_logits'].numpy())


@pytest.mark.parametrize('shared', ['proposal_feature_maps', 'classifier_feature_maps'])
def test_context_boxes_are_cropped_once_in_one_batch(shared):
    heads, ctx, crop, proposals, scale = build(make_config(shared_feature=shared))
    heads.predict(ctx)
    # One call for the context (closeness reuses the proposal crops, no windows at inference).
    assert len(crop.calls) == 1
    boxes = crop.calls[0]
    first = 0 if shared == 'proposal_feature_maps' else 1  # level 0 reuses the main features
    inner = LEVELS - 1 - first
    assert boxes.shape == (2, 5 * inner + 1, 4)  # + the whole image, once per image
    for b in range(2):
        for p in range(5):
            expected = np_context_boxes(proposals[b, p])[first:LEVELS - 1] * scale[b]
            np.testing.assert_allclose(boxes[b, p * inner:(p + 1) * inner], expected, atol=1e-6)
        # The whole true image in the padded frame: image 1 is 64 x 96 of 96 x 128.
        np.testing.assert_allclose(boxes[b, -1], [0, 0, scale[b, 0, 2], scale[b, 0, 3]],
                                   atol=1e-6)


@pytest.mark.parametrize('shared', ['proposal_feature_maps', 'classifier_feature_maps'])
@pytest.mark.parametrize('global_closeness', [True, False])
def test_refiner_inputs_match_a_naive_computation(shared, global_closeness):
    cfg = make_config(shared_feature=shared, global_closeness=global_closeness)
    heads, ctx, _, proposals, scale = build(cfg)
    heads.predict(ctx)
    recorder = Recorder(heads.refiner)
    heads.refiner = recorder
    out = heads.predict(ctx)
    main_logits, context, closeness = recorder.seen
    np.testing.assert_array_equal(main_logits, ctx['class_logits'].numpy())

    # Naive: crop every context box of every proposal alone, run the window head on it.
    head = heads.window_head
    for b in range(2):
        for p in range(5):
            boxes = np_context_boxes(proposals[b, p]) * scale[b]
            crops = tf.image.crop_and_resize(ctx['feature_map'], tf.constant(boxes, tf.float32),
                                             tf.fill([LEVELS], b), (CROP, CROP))
            logits = head.logits_from_features(head.features(crops)).numpy()
            np.testing.assert_allclose(context[b, p], logits.reshape(-1), rtol=1e-4, atol=1e-9)

    np.testing.assert_allclose(heads.context_logits(ctx).numpy(), context, rtol=1e-6)
    own = out['mtl_closeness_logits'].numpy()
    assert closeness.shape == own.shape
    for b, valid in enumerate([5, 3]):
        expected = own[b, :valid].mean(0) if global_closeness else None
        for p in range(5):
            want = expected if global_closeness else own[b, p]
            np.testing.assert_allclose(closeness[b, p], want, rtol=1e-5, atol=1e-9)
    if global_closeness:  # per image, never over the batch
        assert not np.allclose(closeness[0, 0], closeness[1, 0])


def test_without_aux_inputs_the_refiner_sees_only_the_main_logits():
    heads, ctx, crop, _, _ = build(make_config(window=False, closeness=False))
    heads.predict(ctx)
    recorder = Recorder(heads.refiner)
    heads.refiner = recorder
    heads.predict(ctx)
    assert len(recorder.seen) == 1
    assert crop.calls == []


@pytest.mark.parametrize('stop_org', [False, True])
def test_stop_gradient_for_prediction_org(stop_org):
    heads, ctx, _, _, _ = build(make_config(stop_gradient_for_prediction_org=stop_org))
    logits = tf.Variable(ctx['class_logits'])
    with tf.GradientTape() as tape:
        ctx['class_logits'] = logits
        refined = heads.predict(ctx)['mtl_refined_class_logits']
        value = tf.reduce_sum(refined * tf.range(OUT, dtype=tf.float32))
    grad = tape.gradient(value, logits)
    if stop_org:
        assert grad is None
    else:  # only the residual path: the concatenated inputs are always cut
        np.testing.assert_allclose(grad.numpy(),
                                   np.broadcast_to(np.arange(OUT, dtype=np.float32), (2, 5, OUT)))


def test_hidden_layers_and_keep_probability():
    width = 2 * OUT
    cfg = mtl_pb2.MTL(refine=True, refine_num_fc_layers=2, refine_dropout_rate=0.5,
                      refine_residue=True)
    layer = mtl_refiner.ContextRefiner(NUM_CLASSES, width, cfg)
    rng = np.random.default_rng(0)
    z = tf.constant(rng.normal(size=(1, 200, OUT)), tf.float32)
    extra = tf.constant(rng.normal(size=(1, 200, OUT)), tf.float32)
    first = layer([z, extra], training=False)
    assert [tuple(v.shape) for v in layer.trainable_variables] == [
        (width, width), (width,), (width, width), (width,), (width, OUT), (OUT,)]
    np.testing.assert_array_equal(first.numpy(), layer([z, extra], training=False).numpy())
    # keep probability 0.5: about half of the hidden units are dropped (kept ones scaled by 2).
    assert [dense.units for dense in layer.hidden] == [width, width]
    dropped = layer.dropouts[0](tf.ones([1000, width]), training=True).numpy()
    assert 0.4 < np.mean(dropped == 0.0) < 0.6 and set(np.unique(dropped)) <= {0.0, 2.0}
    assert not np.array_equal(layer([z, extra], training=True).numpy(), first.numpy())
    keep_all = mtl_refiner.ContextRefiner(NUM_CLASSES, width, mtl_pb2.MTL(
        refine=True, refine_num_fc_layers=1, refine_dropout_rate=1.0))
    assert keep_all.dropouts == [None]
    out = keep_all([z, extra], training=True)
    np.testing.assert_array_equal(out.numpy(), keep_all([z, extra], training=True).numpy())


def test_refiner_initializer_comes_from_the_config():
    cfg = mtl_pb2.MTL(refine=True)
    cfg.refiner_fc_hyperparams.initializer.truncated_normal_initializer.stddev = 0.5
    cfg.refiner_fc_hyperparams.regularizer.l2_regularizer.weight = 0.01
    layer = mtl_refiner.ContextRefiner(NUM_CLASSES, 50 * OUT, cfg)
    layer([tf.zeros([1, 1, OUT]), tf.zeros([1, 1, 49 * OUT])])
    kernel = layer.output_layer.kernel.numpy()
    assert 0.35 < kernel.std() < 0.6 and np.abs(kernel).max() <= 1.0 + 1e-6  # truncated at 2 sd
    # OD API convention: Keras l2 weight = proto weight / 2.
    np.testing.assert_allclose(layer.losses[0].numpy(), 0.005 * np.sum(kernel ** 2), rtol=1e-5)
