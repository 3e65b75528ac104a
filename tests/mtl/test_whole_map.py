"""aux_stage_input 'whole_feature_map': the auxiliary stages run once on the whole F and the
heads' per-cell class scores are averaged inside each box (the faster, non-paper variant)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import test_heads as th  # the tiny detector stand-in of test_heads.py (same folder)
from mtl_ssl.mtl import class_head
from mtl_ssl.mtl import labels as mtl_labels

WHOLE = 'whole_feature_map'


def _numpy_box_mean(score_map, box, samples=class_head.MAP_POOL_SIZE):
    """Independent reference: bilinear samples of one [h, w, D] map on the crop_and_resize grid
    of a normalized box (corner-aligned, samples x samples), averaged."""
    h, w, _ = score_map.shape
    ymin, xmin, ymax, xmax = box
    ys = ymin * (h - 1) + np.arange(samples) * (ymax - ymin) * (h - 1) / (samples - 1)
    xs = xmin * (w - 1) + np.arange(samples) * (xmax - xmin) * (w - 1) / (samples - 1)
    total = 0.0
    for y in ys:
        for x in xs:
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, x - x0
            total = total + ((1 - dy) * (1 - dx) * score_map[y0, x0] + (1 - dy) * dx *
                             score_map[y0, x1] + dy * (1 - dx) * score_map[y1, x0] +
                             dy * dx * score_map[y1, x1])
    return total / samples ** 2


def test_pooled_scores_equal_fc_of_box_mean_features():
    rng = np.random.default_rng(0)
    head = class_head.CropClassHead(5, th.make_stage(), True)
    stage_map = tf.constant(rng.normal(size=(2, 6, 7, 6)), tf.float32)
    boxes = tf.constant(rng.uniform(0.0, 0.5, size=(2, 3, 2)), tf.float32)
    boxes = tf.concat([boxes, boxes + 0.45], -1)
    pooled = head.pool_scores(head.score_map(stage_map), boxes).numpy()
    assert pooled.shape == (2, 3, 5)
    kernel, bias = [v.numpy() for v in head.class_predictor.weights]
    for b in range(2):
        for k in range(3):
            mean_features = _numpy_box_mean(stage_map.numpy()[b], boxes.numpy()[b, k])
            np.testing.assert_allclose(pooled[b, k], mean_features @ kernel + bias, rtol=1e-4,
                                       atol=1e-5)


def test_box_mean_of_a_linear_map_is_its_value_at_the_box_centre():
    # hand-worked: on f(y, x) = 2 y + 3 x (cell units) bilinear sampling is exact, and a
    # symmetric grid averages to the centre; box [0, 0, 0.5, 1] on a 5 x 5 map: centre (1, 2)
    cells = np.arange(5, dtype=np.float32)
    values = 2.0 * cells[:, None] + 3.0 * cells[None, :]
    score_map = tf.constant(values[None, :, :, None])
    pooled = class_head.CropClassHead.pool_scores(score_map, tf.constant([[[0.0, 0.0, 0.5,
                                                                            1.0]]]))
    np.testing.assert_allclose(pooled.numpy().ravel(), [2.0 * 1 + 3.0 * 2], rtol=1e-6)


class CountingStage(tf_keras.Model):
    """A stage that records the input shape of every call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = tf_keras.layers.Conv2D(6, 3, strides=2, padding='same', activation='relu')
        self.inputs_seen = []

    def call(self, x, training=None):
        self.inputs_seen.append(tuple(x.shape))
        return self.conv(x)


@pytest.mark.parametrize('training', [True, False])
def test_one_stage_pass_on_the_whole_map_serves_windows_and_every_context_box(training):
    setup = th.Setup(th.make_config(aux_stage_input=WHOLE, **th.ALL_ON), factory=CountingStage)
    ctx = setup.context(training=training, with_windows=training)
    crops_before = len(setup.crop.calls)
    out = setup.heads.predict(ctx)
    assert len(setup.crop.calls) == crops_before, 'no RoI crops of F in the whole-map mode'
    for head in (setup.heads.window_head, setup.heads.closeness_head):
        # one call on the whole F (the first one builds the copy for share_second_stage_init)
        assert set(head.stage.inputs_seen) == {tuple(ctx['feature_map'].shape)}
        assert len(head.stage.inputs_seen) <= 2
    assert out['mtl_refined_class_logits'].shape == (2, 5, th.OUT)
    context = setup.heads.context_logits(ctx).numpy().reshape(2, 5, 5, th.OUT)
    # the last level is the whole true image: the same logits for every proposal of an image
    np.testing.assert_allclose(context[:, :, -1], np.repeat(context[:, :1, -1], 5, 1), rtol=1e-6)
    # every level = the window head's pooled scores at that context box
    head = setup.heads.window_head
    maps = head.score_map(head.stage(ctx['feature_map']))
    levels = mtl_labels.context_boxes(setup.proposals, 5) * setup.scale()[:, :, None, :]
    expected = head.pool_scores(maps, tf.reshape(levels, [2, 25, 4])).numpy()
    np.testing.assert_allclose(context.reshape(2, 25, th.OUT), expected, rtol=1e-5, atol=1e-6)
    if training:
        np.testing.assert_allclose(
            out['mtl_window_logits'].numpy(),
            head.pool_scores(maps, setup.windows * setup.scale()).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('shared', ['proposal_feature_maps', 'classifier_feature_maps'])
def test_same_variables_as_the_paper_mode_and_losses_train_the_heads(shared):
    paper = th.Setup(th.make_config(shared_feature=shared, **th.ALL_ON))
    fast = th.Setup(th.make_config(shared_feature=shared, aux_stage_input=WHOLE, **th.ALL_ON))
    for setup in (paper, fast):
        setup.heads.predict(setup.context())
    assert ([tuple(v.shape) for v in fast.heads.trainable_variables] ==
            [tuple(v.shape) for v in paper.heads.trainable_variables])
    for task in ('window', 'closeness'):
        producer, main, heads = th._aux_loss_gradients(fast, task)
        assert not th._is_zero(heads) and not th._is_zero(producer)
        # the reused main stage is trained by the window loss (whole-map pass) and by the
        # closeness loss (its proposal features), as in the paper mode
        assert th._is_zero(main) == (shared == 'proposal_feature_maps')


def test_refined_loss_still_trains_only_the_refiner():
    setup = th.Setup(th.make_config(aux_stage_input=WHOLE, **th.ALL_ON))
    with tf.GradientTape(persistent=True) as tape:
        value = th.refined_ce(setup.heads.predict(setup.context())['mtl_refined_class_logits'])
    assert th._is_zero(tape.gradient(value, setup.producer.trainable_variables))
    for head in (setup.heads.window_head, setup.heads.closeness_head):
        assert th._is_zero(tape.gradient(value, head.trainable_variables))
    assert not th._is_zero(tape.gradient(value, setup.heads.refiner.trainable_variables))


def test_bad_value_and_flattened_features_are_clear_errors():
    with pytest.raises(ValueError, match='aux_stage_input'):
        th.Setup(th.make_config(window=True, aux_stage_input='crops please'))
    cfg = th.make_config(window=True, aux_stage_input=WHOLE)
    cfg.window_box_predictor.mask_rcnn_box_predictor.spatial_average = False
    setup = th.Setup(cfg)
    with pytest.raises(ValueError, match='spatial_average'):
        setup.heads.predict(setup.context())


def test_rfcn_ignores_the_switch():
    make = th.make_rfcn_config
    outputs = []
    for value in ('roi_crops', WHOLE):
        setup = th.Setup(make(aux_stage_input=value, **th.ALL_ON), meta_arch='rfcn', seed=3)
        outputs.append(setup.heads.predict(setup.context(training=False))
                       ['mtl_refined_class_logits'].numpy())
    # the R-FCN heads already pool whole-map (position-sensitive) score maps
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)
