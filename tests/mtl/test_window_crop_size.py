"""mtl.window_crop_size: the window head's crops (windows, the refiner's context boxes) are made
at their own size; the detector's and the closeness head's crops keep initial_crop_size."""
import numpy as np
import pytest
import tensorflow as tf

import test_heads as th  # the tiny detector stand-in of test_heads.py (same folder)
from mtl_ssl.core import crop_ops
from test_whole_map import CountingStage  # records the input shape of every stage call

SMALL = 2  # the stand-in detector crops at th.CROP = 4


def _setup(window_crop=SMALL, factory=th.make_stage, **overrides):
    return th.Setup(th.make_config(**th.ALL_ON, **overrides), factory=factory,
                    window_crop=window_crop)


@pytest.mark.parametrize('training', [True, False])
def test_window_and_context_crops_use_the_window_crop_size(training):
    setup = _setup(factory=CountingStage)
    ctx = setup.context(training=training, with_windows=training)
    detector_crops = len(setup.crop.calls)
    setup.heads.predict(ctx)
    # every crop of the heads went through the window crop op: windows (training), then the
    # context boxes (4 inner levels of each of the 5 proposals + the whole image)
    assert len(setup.crop.calls) == detector_crops
    expected = [tuple(setup.windows.shape)] if training else []
    assert [tuple(b.shape) for b in setup.window_crop.calls] == expected + [(2, 5 * 4 + 1, 4)]
    # each window crop went through the window stage; (a copy's first call can be its build
    # on whichever crops come first, so the other calls are not counted)
    seen = setup.heads.window_head.stage.inputs_seen
    assert {s[1:3] for s in seen[1:]} == {(SMALL, SMALL)}
    assert seen[-1] == (2 * (5 * 4 + 1), SMALL, SMALL, th.DEPTH)
    assert setup.heads.closeness_head.stage.inputs_seen[-1][1:3] == (th.CROP, th.CROP)


def test_window_logits_are_the_head_on_crops_of_that_size():
    setup = _setup()
    ctx = setup.context(training=True, with_windows=True)
    logits = setup.heads.predict(ctx)['mtl_window_logits'].numpy()
    # reference: crop_and_resize of F at the windows (true -> padded frame) to SMALL x SMALL
    boxes = (setup.windows.numpy() * setup.scale()).reshape(-1, 4)
    crops = tf.image.crop_and_resize(ctx['feature_map'], boxes, np.repeat([0, 1], 3),
                                     (SMALL, SMALL))
    head = setup.heads.window_head
    expected = head.logits_from_features(head.features(crops, True), True).numpy()
    np.testing.assert_allclose(logits.reshape(-1, th.OUT), expected, rtol=1e-5, atol=1e-6)
    # the detector's crop size would give other logits (so the size is really used)
    crops = tf.image.crop_and_resize(ctx['feature_map'], boxes, np.repeat([0, 1], 3),
                                     (th.CROP, th.CROP))
    other = head.logits_from_features(head.features(crops, True), True).numpy()
    assert not np.allclose(logits.reshape(-1, th.OUT), other, atol=1e-4)


def test_shared_stage_does_not_reuse_main_features_of_another_crop_size():
    # with the main stage shared, level 0 (the proposal itself) reuses the box classifier's
    # features only when the window head crops at the detector's size
    same = th.Setup(th.make_config(**th.ALL_ON, shared_feature='classifier_feature_maps'))
    ctx = same.context(training=False, with_windows=False)
    before = len(same.crop.calls)
    same.heads.predict(ctx)
    assert [tuple(b.shape) for b in same.crop.calls[before:]] == [(2, 5 * 3 + 1, 4)]
    small = _setup(shared_feature='classifier_feature_maps')
    small.heads.predict(small.context(training=False, with_windows=False))
    assert [tuple(b.shape) for b in small.window_crop.calls] == [(2, 5 * 4 + 1, 4)]


@pytest.mark.parametrize('overrides', [{'aux_stage_input': 'whole_feature_map'}])
def test_forms_without_window_crops_reject_it(overrides):
    with pytest.raises(ValueError, match='window_crop_size'):
        _setup(**overrides)


def test_real_detector_trains_with_small_window_crops():
    """The C4 detector built from a config (crop 8, max-pool 2: 4 x 4 stage inputs) with
    window_crop_size 4 (2 x 2 window-head inputs): its window logits are the head on crop_and_pool
    at 4, a traced train step gives finite losses and a gradient to every MTL variable."""
    import test_mtl_integration as ti
    tasks = ti.ALL_TASKS + ' window_crop_size: 4'
    model = ti.build(tasks)
    images, boxes, classes = ti.synthetic_images(2)
    ti.provide(model, boxes, classes, ti.model_config(tasks).mtl)

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            preprocessed, shapes = model.preprocess(images)
            predictions = model.predict(preprocessed, shapes, training=True)
            losses = model.loss(predictions, shapes)
            total = tf.add_n(list(losses.values()))
        variables = model.mtl_heads.trainable_variables
        return predictions, losses, variables, tape.gradient(total, variables)

    predictions, losses, variables, gradients = step(tf.constant(images))
    assert all(np.isfinite(value.numpy()) for value in losses.values())
    missing = [v.name for v, g in zip(variables, gradients)
               if g is None or not np.any(g.numpy())]
    assert not missing, missing

    # the windows provided above (ti.provide makes image i's labels with seed i)
    config = ti.model_config(tasks).mtl
    window_boxes = tf.stack([ti.mtl_labels.make_mtl_labels(
        b, c, len(b), ti.SIZE, ti.SIZE, ti.NUM_CLASSES, config, seed=i)['mtl_windows']
        for i, (b, c) in enumerate(zip(boxes, classes))])
    feature_map = predictions['rpn_features_to_crop']
    crops = crop_ops.crop_and_pool(feature_map, window_boxes, 4, 2, 2)  # images are not padded
    assert tuple(crops.shape[1:3]) == (2, 2)
    head = model.mtl_heads.window_head
    expected = head.logits_from_features(head.features(crops, True), True).numpy()
    np.testing.assert_allclose(predictions['mtl_window_logits'].numpy().reshape(expected.shape),
                               expected, rtol=1e-4, atol=1e-5)
