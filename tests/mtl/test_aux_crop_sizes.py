"""mtl.window_crop_size / closeness_crop_size: those heads' crops (windows and the refiner's
context boxes; the closeness head's proposals) are made at their own size; the detector's crops
keep initial_crop_size."""
import numpy as np
import pytest
import tensorflow as tf

import test_heads as th  # the tiny detector stand-in of test_heads.py (same folder)
from mtl_ssl.core import crop_ops
from test_whole_map import CountingStage  # records the input shape of every stage call

SMALL = 2  # the stand-in detector crops at th.CROP = 4
K = 3


def _setup(window_crop=SMALL, closeness_crop=None, factory=th.make_stage, **overrides):
    return th.Setup(th.make_config(**th.ALL_ON, **overrides), factory=factory,
                    window_crop=window_crop, closeness_crop=closeness_crop)


def _reference_logits(head, feature_map, boxes, size):
    """The head on crop_and_resize of F at boxes [B, N, 4] (padded frame) to size x size."""
    batch, num = boxes.shape[:2]
    crops = tf.image.crop_and_resize(feature_map, boxes.reshape(-1, 4),
                                     np.repeat(np.arange(batch), num), (size, size))
    return head.logits_from_features(head.features(crops, True), True).numpy().reshape(
        batch, num, -1)


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
    boxes = setup.windows.numpy() * setup.scale()  # true -> padded frame
    head = setup.heads.window_head
    expected = _reference_logits(head, ctx['feature_map'], boxes, SMALL)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    # the detector's crop size would give other logits (so the size is really used)
    other = _reference_logits(head, ctx['feature_map'], boxes, th.CROP)
    assert not np.allclose(logits, other, atol=1e-4)


def test_closeness_crops_use_the_closeness_crop_size():
    setup = _setup(window_crop=None, closeness_crop=SMALL, factory=CountingStage)
    ctx = setup.context(training=True, with_windows=True)
    out = setup.heads.predict(ctx)
    # the closeness copy ran on its own crops of the proposals, not on ctx['proposal_crops']
    assert [tuple(b.shape) for b in setup.closeness_crop.calls] == [(2, 5, 4)]
    seen = setup.heads.closeness_head.stage.inputs_seen
    assert seen[-1] == (2 * 5, SMALL, SMALL, th.DEPTH)
    assert setup.heads.window_head.stage.inputs_seen[-1][1:3] == (th.CROP, th.CROP)
    head = setup.heads.closeness_head
    expected = _reference_logits(head, ctx['feature_map'], setup.proposals.numpy() *
                                 setup.scale(), SMALL)
    np.testing.assert_allclose(out['mtl_closeness_logits'].numpy(), expected, rtol=1e-5,
                               atol=1e-6)


def test_closeness_crops_of_the_top_k_rois_only_in_training():
    setup = _setup(window_crop=None, closeness_crop=SMALL, refine_top_k=K,
                   refine_top_k_in_training=True)
    setup.heads.predict(setup.context(training=True, with_windows=True))
    assert [tuple(b.shape) for b in setup.closeness_crop.calls] == [(2, K, 4)]


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


@pytest.mark.parametrize('crops, overrides', [
    ({'window_crop': SMALL}, {'aux_stage_input': 'whole_feature_map'}),
    ({'window_crop': None, 'closeness_crop': SMALL}, {'aux_stage_input': 'whole_feature_map'}),
    ({'window_crop': None, 'closeness_crop': SMALL},
     {'shared_feature': 'classifier_feature_maps'}),
])
def test_forms_without_those_crops_reject_them(crops, overrides):
    with pytest.raises(ValueError, match='_crop_size'):
        _setup(**crops, **overrides)


def test_real_detector_trains_with_small_aux_crops():
    """The C4 detector built from a config (crop 8, max-pool 2: 4 x 4 stage inputs) with window
    and closeness crops of 4 (2 x 2 stage inputs): its window and closeness logits are the heads
    on crop_and_pool at 4, a traced train step gives finite losses and a gradient to every MTL
    variable."""
    import test_mtl_integration as ti
    tasks = ti.ALL_TASKS + ' window_crop_size: 4 closeness_crop_size: 4'
    model, predictions, losses, variables, gradients, (_, boxes, classes) = (
        ti.traced_train_step(tasks))
    assert all(np.isfinite(value.numpy()) for value in losses.values())
    missing = [v.name for v, g in zip(variables, gradients)
               if g is None or not np.any(g.numpy())]
    assert not missing, missing

    # the windows provided above (ti.provide makes image i's labels with seed i)
    config = ti.model_config(tasks).mtl
    windows = tf.stack([ti.mtl_labels.make_mtl_labels(
        b, c, len(b), ti.SIZE, ti.SIZE, ti.NUM_CLASSES, config, seed=i)['mtl_windows']
        for i, (b, c) in enumerate(zip(boxes, classes))])
    feature_map = predictions['rpn_features_to_crop']  # images are not padded: frames agree
    heads = model.mtl_heads
    for head, key, where in ((heads.window_head, 'mtl_window_logits', windows),
                             (heads.closeness_head, 'mtl_closeness_logits',
                              predictions['proposal_boxes_normalized'])):
        crops = crop_ops.crop_and_pool(feature_map, where, 4, 2, 2)
        assert tuple(crops.shape[1:3]) == (2, 2)
        expected = head.logits_from_features(head.features(crops, True), True).numpy()
        np.testing.assert_allclose(predictions[key].numpy().reshape(expected.shape), expected,
                                   rtol=1e-4, atol=1e-5)
