"""refine_top_k: at inference only the K best proposals (main class probability) are refined,
exactly as if the detector had proposed only those K; the others keep the main logits."""
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

import test_heads as th  # the tiny detector stand-in of test_heads.py (same folder)
from mtl_ssl.builders import model_builder
from mtl_ssl.mtl import losses as mtl_losses
from mtl_ssl.mtl import refine_top_k
from mtl_ssl.protos import model_pb2
from test_whole_map import CountingStage  # records the input shape of every stage call

K = 3


def _numpy_top_k(logits, num_proposals, k):
    """Independent reference: best non-background softmax probability, padding last."""
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    scores = (exp / exp.sum(-1, keepdims=True))[..., 1:].max(-1)
    scores[np.arange(logits.shape[1])[None, :] >= np.asarray(num_proposals)[:, None]] = -1.0
    return np.argsort(-scores, axis=1, kind='stable')[:, :k]


def _setup(meta_arch='faster_rcnn', **overrides):
    make = th.make_config if meta_arch == 'faster_rcnn' else th.make_rfcn_config
    return th.Setup(make(**th.ALL_ON, **overrides), meta_arch=meta_arch)


def _sub_context(setup, ctx, indices):
    """The context a detector proposing only `indices` would give (built without select)."""
    sub = dict(ctx)
    proposals = np.take_along_axis(setup.proposals.numpy(), indices[..., None], 1)
    sub['proposal_boxes_normalized'] = tf.constant(proposals)
    sub['class_logits'] = tf.constant(np.take_along_axis(setup.main_logits.numpy(),
                                                         indices[..., None], 1))
    sub['num_proposals'] = tf.minimum(setup.num_proposals, indices.shape[1])
    if setup.meta_arch == 'faster_rcnn':
        sub['proposal_crops'] = setup.crop(ctx['feature_map'],
                                           (proposals * setup.scale()).astype(np.float32))
        sub['box_classifier_features'] = setup.main(sub['proposal_crops'])
    return sub


def test_select_ranks_by_best_class_probability_and_puts_padding_last():
    # hand-made: image 0 has 4 valid proposals, best class probabilities 0.79, 0.0025, 0.58,
    # 0.42: proposal 1 ranks last although its largest logit is the biggest (background);
    # image 1 has 2 valid of 4: its padded proposals come after them whatever their logits
    logits = np.array([[[0., 2., 0.], [9., 3., 0.], [0., 0., 1.], [0., 1., 1.]],
                       [[0., 5., 0.], [0., 0., 0.], [0., 9., 0.], [0., 0., 7.]]], np.float32)
    rows = np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    ctx = {'class_logits': tf.constant(logits), 'num_proposals': tf.constant([4, 2]),
           'proposal_boxes_normalized': tf.constant(np.random.rand(2, 4, 4), tf.float32),
           'box_classifier_features': tf.constant(rows), 'proposal_crops': None}
    sub, indices = refine_top_k.select(ctx, 3)
    np.testing.assert_array_equal(indices.numpy(), [[0, 2, 3], [0, 1, 2]])
    np.testing.assert_array_equal(indices.numpy(), _numpy_top_k(logits, [4, 2], 3))
    np.testing.assert_array_equal(sub['num_proposals'].numpy(), [3, 2])
    # flat [B * P, ...] entries follow their proposals (image 1 starts at row 4)
    np.testing.assert_array_equal(sub['box_classifier_features'].numpy()[:, 0],
                                  [0, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(sub['class_logits'].numpy()[1, 0], logits[1, 0])
    assert sub['proposal_crops'] is None


@pytest.mark.parametrize('meta_arch, shared, global_closeness', [
    ('faster_rcnn', 'proposal_feature_maps', True),
    ('faster_rcnn', 'classifier_feature_maps', True),
    ('faster_rcnn', 'proposal_feature_maps', False),
    ('rfcn', 'proposal_feature_maps', True),
])
def test_refined_rows_equal_a_detector_with_only_those_proposals(meta_arch, shared,
                                                                  global_closeness):
    setup = _setup(meta_arch, shared_feature=shared, global_closeness=global_closeness)
    ctx = setup.context(training=False, with_windows=False)
    full = setup.heads.predict(ctx)['mtl_refined_class_logits'].numpy()
    setup.heads._refine_top_k = K
    fast = setup.heads.predict(ctx)['mtl_refined_class_logits'].numpy()
    indices = _numpy_top_k(setup.main_logits.numpy(), setup.num_proposals.numpy(), K)

    setup.heads._refine_top_k = 0
    expected = setup.heads.predict(_sub_context(setup, ctx, indices))['mtl_refined_class_logits']
    np.testing.assert_allclose(np.take_along_axis(fast, indices[..., None], 1), expected.numpy(),
                               rtol=1e-5, atol=1e-6)
    rest = np.ones(fast.shape[:2], bool)
    np.put_along_axis(rest, indices, False, 1)
    np.testing.assert_array_equal(fast[rest], setup.main_logits.numpy()[rest])
    if not global_closeness:  # each row depends only on its own proposal: as full refinement
        np.testing.assert_allclose(np.take_along_axis(fast, indices[..., None], 1),
                                   np.take_along_axis(full, indices[..., None], 1),
                                   rtol=1e-5, atol=1e-6)


def test_context_crops_and_closeness_stage_run_on_k_proposals_only():
    setup = th.Setup(th.make_config(**th.ALL_ON, refine_top_k=K), factory=CountingStage)
    ctx = setup.context(training=False, with_windows=False)
    before = len(setup.crop.calls)
    setup.heads.predict(ctx)
    # levels 0..3 cropped per proposal (the window head's own stage copy cannot reuse the main
    # stage's level-0 features), level 4 (the whole image) once per image
    inner = 5 - 1
    # one crop call for all context boxes of the K proposals; the closeness copy gets the K
    # proposals' own crops (gathered, not cropped again)
    assert [tuple(b.shape) for b in setup.crop.calls[before:]] == [(2, K * inner + 1, 4)]
    assert [s[0] for s in setup.heads.closeness_head.stage.inputs_seen][-1] == 2 * K
    assert [s[0] for s in setup.heads.window_head.stage.inputs_seen][-1] == 2 * (K * inner + 1)


@pytest.mark.parametrize('training, groundtruth', [(True, True), (False, True)])
def test_training_is_unchanged_and_eval_keeps_full_closeness(training, groundtruth):
    setup = _setup()
    ctx = setup.context(training=training, with_windows=groundtruth)
    full = setup.heads.predict(ctx)
    setup.heads._refine_top_k = K
    fast = setup.heads.predict(ctx)
    # closeness logits of every proposal stay available for the eval losses
    np.testing.assert_allclose(fast['mtl_closeness_logits'], full['mtl_closeness_logits'],
                               rtol=1e-6)
    same = np.allclose(fast['mtl_refined_class_logits'], full['mtl_refined_class_logits'],
                       rtol=1e-6)
    assert same == training


def test_k_at_or_above_the_proposal_count_is_full_refinement():
    assert not refine_top_k.active(5, 5, training=False)
    assert not refine_top_k.active(0, 300, training=False)
    assert not refine_top_k.active(8, 300, training=True)
    assert refine_top_k.active(8, 300, training=False)
    assert refine_top_k.active(8, None, training=False)  # proposals known at run time only
    with pytest.raises(ValueError, match='refine_top_k'):
        _setup(refine_top_k=-2)


@pytest.mark.parametrize('arch', ['c4', 'fpn'])
def test_real_detector_in_a_traced_step(arch):
    """The detector built from a config (C4 MobileNet; ResNet-50 FPN, whose per-proposal rows
    come from several levels), batch 2: the top-K rows are the full refinement's (without
    global_closeness each row depends only on its own proposal), the others the main logits."""
    if arch == 'c4':
        import test_mtl_integration as ti
        cfg = ti.model_config(ti.ALL_TASKS + ' global_closeness: false')
        images, kwargs = tf.constant(ti.synthetic_images(2)[0]), {'depth_multiplier': 0.25}
    else:
        import test_mtl_fpn as tfpn
        cfg = text_format.Parse(tfpn._MTL % {'extra': 'global_closeness: false'},
                                model_pb2.DetectionModel())
        images = tf.random.stateless_uniform([2, tfpn.SIZE, tfpn.SIZE, 3], [5, 6], 0.0, 255.0)
        kwargs = {}
    tf.keras.utils.set_random_seed(0)
    model = model_builder.build(cfg, is_training=False, **kwargs)

    def infer(images):
        preprocessed, shapes = model.preprocess(images)
        predictions = model.predict(preprocessed, shapes, training=False)
        detections = model.postprocess(predictions, shapes)
        return (predictions['class_predictions_with_background'],
                predictions['num_proposals'], predictions['mtl_refined_class_logits'],
                detections['num_detections'])

    main, num_proposals, full, _ = tf.function(infer)(images)
    model.mtl_heads._refine_top_k = 4
    main_again, _, fast, num_detections = tf.function(infer)(images)
    # relative tolerances only: the untrained tiny C4 model's logits are ~1e-16
    np.testing.assert_allclose(main_again, main, rtol=1e-4, atol=0)
    assert main.shape[1] > 4 and np.all(num_detections.numpy() > 0)
    indices = _numpy_top_k(main.numpy(), num_proposals.numpy(), 4)
    take = lambda x: np.take_along_axis(x.numpy(), indices[..., None], 1)  # noqa: E731
    np.testing.assert_allclose(take(fast), take(full), rtol=1e-4, atol=0)
    rest = np.ones(main.shape[:2], bool)
    np.put_along_axis(rest, indices, False, 1)
    np.testing.assert_array_equal(fast.numpy()[rest], main_again.numpy()[rest])
    assert not np.allclose(take(fast), take(main), rtol=1e-3, atol=0)  # refinement changed them


def test_select_with_a_run_time_proposal_count_below_k():
    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def run(logits, num_proposals):
        sub, indices = refine_top_k.select(
            {'class_logits': logits, 'num_proposals': num_proposals,
             'proposal_boxes_normalized': tf.zeros(tf.concat([tf.shape(logits)[:2], [4]], 0))},
            5, per_proposal_rows=())
        return indices, sub['num_proposals']

    logits = np.array([[[0., 1., 0.], [0., 3., 0.]]], np.float32)
    indices, num = run(logits, tf.constant([2]))
    np.testing.assert_array_equal(indices.numpy(), [[1, 0]])
    np.testing.assert_array_equal(num.numpy(), [2])


# ------------------------------------------------------------------ refine_top_k_in_training
def test_refined_rows_marks_the_selected_valid_proposals():
    # image 0: rows 0 and 2 of 4 valid; image 1: rows 1 and 3 selected but only 3 proposals
    rows = refine_top_k.refined_rows(tf.constant([[0, 2], [1, 3]]), tf.constant([4, 3]), 4)
    np.testing.assert_array_equal(rows.numpy(), [[1, 0, 1, 0], [0, 1, 0, 0]])


def test_in_training_the_top_k_rows_are_refined_as_a_detector_with_only_them():
    setup = _setup(refine_top_k=K, refine_top_k_in_training=True)
    ctx = setup.context(training=True, with_windows=True)
    with tf.GradientTape() as tape:
        tape.watch(setup.main_logits)
        out = setup.heads.predict(ctx)
        logits = out['mtl_refined_class_logits']
        rest_sum = tf.reduce_sum(logits * (1.0 - out['mtl_refined_rows'])[..., None])
    indices = _numpy_top_k(setup.main_logits.numpy(), setup.num_proposals.numpy(), K)
    expected_rows = np.zeros(logits.shape[:2], np.float32)
    np.put_along_axis(expected_rows, indices, 1.0, 1)
    expected_rows *= np.arange(logits.shape[1])[None, :] < setup.num_proposals.numpy()[:, None]
    np.testing.assert_array_equal(out['mtl_refined_rows'].numpy(), expected_rows)
    # the selected rows: what training refinement on only those proposals gives, and so are
    # their closeness logits (the closeness head ran on them only; 0 elsewhere)
    setup.heads._top_k_in_training = False
    expected = setup.heads.predict(_sub_context(setup, ctx, indices))
    take = lambda x: np.take_along_axis(np.asarray(x), indices[..., None], 1)  # noqa: E731
    np.testing.assert_allclose(take(logits), expected['mtl_refined_class_logits'].numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(take(out['mtl_closeness_logits']),
                               expected['mtl_closeness_logits'].numpy(), rtol=1e-5, atol=1e-6)
    # the others: the main logits through the refiner's residual path, gradient included (the
    # refined loss trains the main classifier at every RoI, as in the paper)
    rest = expected_rows == 0
    np.testing.assert_array_equal(logits.numpy()[rest], setup.main_logits.numpy()[rest])
    gradient = tape.gradient(rest_sum, setup.main_logits).numpy()
    np.testing.assert_array_equal(gradient[rest], 1.0)
    np.testing.assert_array_equal(gradient[~rest], 0.0)
    assert not np.any(out['mtl_closeness_logits'].numpy()[rest])


def test_in_training_the_context_crops_are_made_for_k_rois_only():
    setup = th.Setup(th.make_config(**th.ALL_ON, refine_top_k=K, refine_top_k_in_training=True),
                     factory=CountingStage)
    ctx = setup.context(training=True, with_windows=True)
    before = len(setup.crop.calls)
    setup.heads.predict(ctx)
    shapes = [tuple(b.shape) for b in setup.crop.calls[before:]]
    # the windows' crop, then one crop of the K RoIs' context boxes (4 inner levels + image)
    assert shapes == [tuple(setup.windows.shape), (2, K * 4 + 1, 4)]
    # the closeness copy saw the K RoIs' own crops only
    assert setup.heads.closeness_head.stage.inputs_seen[-1][0] == 2 * K
    setup.heads._top_k_in_training = False  # the paper: every sampled RoI (5 per image)
    before = len(setup.crop.calls)
    setup.heads.predict(ctx)
    assert [tuple(b.shape) for b in setup.crop.calls[before:]][-1] == (2, 5 * 4 + 1, 4)


def test_in_training_the_losses_cover_every_roi_but_closeness_only_the_refined_ones():
    setup = _setup(refine_top_k=K, refine_top_k_in_training=True)
    out = setup.heads.predict(setup.context(training=True, with_windows=True))
    gt, targets = setup.groundtruth(), setup.proposal_targets()
    losses = setup.heads.loss(out, gt, targets, th.refined_ce)
    # refined: the detector's loss over every RoI (refined rows and passed-through main logits)
    np.testing.assert_allclose(losses['Loss/MTL/refined_classification_loss'].numpy(),
                               2.0 * th.refined_ce(out['mtl_refined_class_logits']).numpy(),
                               rtol=1e-6)
    # closeness: the positives among the refined rows only
    rows = out['mtl_refined_rows'].numpy()
    positives = targets['positive_mask'].numpy() * rows
    assert 0 < positives.sum() < targets['positive_mask'].numpy().sum()
    expected = mtl_losses.closeness_loss(out['mtl_closeness_logits'], gt['mtl_closeness_labels'],
                                         targets['matched_gt_indices'], positives)
    np.testing.assert_allclose(losses['Loss/MTL/closeness_loss'].numpy(),
                               0.3 * expected.numpy(), rtol=1e-6)


@pytest.mark.parametrize('residue, stop_org, flows', [
    (True, False, True), (True, True, False), (False, False, False)])
def test_passthrough_follows_the_refiners_residual_path(residue, stop_org, flows):
    setup = _setup(refine_residue=residue, stop_gradient_for_prediction_org=stop_org)
    logits = tf.constant([[[1.0, 2.0, 3.0, 4.0]]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        passed = setup.heads.refiner.passthrough(logits)
    np.testing.assert_array_equal(passed.numpy(), logits.numpy())
    gradient = tape.gradient(passed, logits)
    assert (gradient is not None and np.all(gradient.numpy() == 1.0)) == flows


def test_real_detector_trains_with_top_k_in_training():
    """A traced train step of the C4 detector (batch 2): K refined rows per image, finite
    losses, and every MTL variable (closeness and window stage copies, refiner) gets a gradient."""
    import test_mtl_integration as ti
    _, predictions, losses, variables, gradients, _ = ti.traced_train_step(
        ti.ALL_TASKS + ' refine_top_k: 3 refine_top_k_in_training: true')
    rows = predictions['mtl_refined_rows'].numpy()
    np.testing.assert_array_equal(rows.sum(1), [3, 3])
    assert all(np.isfinite(value.numpy()) for value in losses.values())
    missing = [v.name for v, g in zip(variables, gradients)
               if g is None or not np.any(g.numpy())]
    assert not missing, missing
