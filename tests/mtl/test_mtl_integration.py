"""MTL add-on inside the real detector built from a config (tiny MobileNet v1, 128 px).

Each switch adds exactly its loss and its variables; all tasks train with finite losses; the
refined logits are the ones postprocess scores; and the whole model with every task on overfits
a handful of synthetic images (mAP@0.5 >= 0.8).
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from google.protobuf import text_format

from mtl_ssl import backbones
from mtl_ssl.builders import model_builder
from mtl_ssl.evaluation import pascal
from mtl_ssl.mtl import heads as mtl_heads
from mtl_ssl.mtl import labels as mtl_labels
from mtl_ssl.protos import model_pb2

NUM_CLASSES = 3
SIZE = 128
_INIT = 'initializer { truncated_normal_initializer { stddev: 0.01 } }'
_HEAD = f'mask_rcnn_box_predictor {{ fc_hyperparams {{ op: FC {_INIT} }} }}'
_PREDICTORS = f"""
  num_windows: 8 foreground_grid_size: 16
  window_class_loss_weight: 1.0 closeness_loss_weight: 0.3 edgemask_loss_weight: 1.0
  refined_classification_loss_weight: 1.0 refine_residue: true
  refiner_fc_hyperparams {{ op: FC {_INIT} }}
  window_box_predictor {{ {_HEAD} }}
  closeness_box_predictor {{ {_HEAD} }}
  edgemask_predictor {{ kernel_size: 1 conv_hyperparams {{ op: CONV {_INIT} }} }}
"""
_DETECTOR = f"""
faster_rcnn {{
  num_classes: {NUM_CLASSES}
  image_resizer {{ fixed_shape_resizer {{ height: {SIZE} width: {SIZE} }} }}
  feature_extractor {{ type: 'faster_rcnn_mobilenet_v1_keras' batch_norm_trainable: true }}
  first_stage_anchor_generator {{ grid_anchor_generator {{
    scales: [0.25, 0.5, 1.0] aspect_ratios: [0.5, 1.0, 2.0] height_stride: 16 width_stride: 16 }} }}
  first_stage_box_predictor_conv_hyperparams {{ op: CONV {_INIT} }}
  first_stage_max_proposals: 32
  initial_crop_size: 8 maxpool_kernel_size: 2 maxpool_stride: 2
  second_stage_batch_size: 16
  second_stage_box_predictor {{ mask_rcnn_box_predictor {{ fc_hyperparams {{ op: FC
    initializer {{ variance_scaling_initializer {{ factor: 1.0 uniform: true mode: FAN_AVG }} }}
  }} }} }}
  second_stage_post_processing {{ batch_non_max_suppression {{ score_threshold: 0.0
    iou_threshold: 0.5 max_detections_per_class: 10 max_total_detections: 20 }}
    score_converter: SOFTMAX }}
}}
"""
ALL_TASKS = 'window: true closeness: true edgemask: true refine: true'
COLORS = np.array([[230, 40, 40], [40, 200, 40], [50, 70, 230]], np.float32)


def model_config(tasks=''):
    text = (f'mtl {{ {tasks} {_PREDICTORS} }}' if tasks else '') + _DETECTOR
    return text_format.Parse(text, model_pb2.DetectionModel())


def build(tasks='', is_training=True, seed=0):
    tf.keras.utils.set_random_seed(seed)
    return model_builder.build(model_config(tasks), is_training, depth_multiplier=0.25)


def synthetic_images(count=4, seed=0):
    """Solid red / green / blue rectangles (class = colour) on grey noise, 2 per image."""
    rng = np.random.default_rng(seed)
    images, boxes, classes = [], [], []
    for _ in range(count):
        image = rng.uniform(100, 150, (SIZE, SIZE, 3)).astype(np.float32)
        placed, ids = [], []
        while len(placed) < 2:
            h, w = rng.uniform(0.25, 0.45, 2)
            y, x = rng.uniform(0, 1 - h), rng.uniform(0, 1 - w)
            box = [y, x, y + h, x + w]
            if any(not (box[0] >= o[2] or box[2] <= o[0] or box[1] >= o[3] or box[3] <= o[1])
                   for o in placed):
                continue
            class_id = int(rng.integers(0, NUM_CLASSES))
            image[int(y * SIZE):int((y + h) * SIZE), int(x * SIZE):int((x + w) * SIZE)] = (
                COLORS[class_id])
            placed.append(box)
            ids.append(class_id + 1)
        images.append(image)
        boxes.append(np.array(placed, np.float32))
        classes.append(np.array(ids, np.int32))
    return np.stack(images), boxes, classes


def provide(model, boxes, classes, tasks_config, seed=0):
    """Ground truth with the online MTL labels made eagerly (what the input pipeline does)."""
    kwargs = {}
    if tasks_config is not None:
        made = [mtl_labels.make_mtl_labels(b, c, len(b), SIZE, SIZE, NUM_CLASSES, tasks_config,
                                           seed=seed + i) for i, (b, c) in enumerate(
                                               zip(boxes, classes))]
        for key in made[0]:
            kwargs[f'groundtruth_{key}_list'] = [m[key] for m in made]
    model.provide_groundtruth([tf.constant(b) for b in boxes],
                              [tf.one_hot(c - 1, NUM_CLASSES) for c in classes], **kwargs)


def traced_train_step(tasks):
    """One traced train step of the detector built with `tasks` on 2 synthetic images.
    Returns (model, predictions, losses, MTL variables, their gradients, (images, boxes,
    classes)); the MTL labels are provided as the input pipeline makes them (image i, seed i)."""
    model = build(tasks)
    images, boxes, classes = synthetic_images(2)
    provide(model, boxes, classes, model_config(tasks).mtl)

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
    return model, predictions, losses, variables, gradients, (images, boxes, classes)


def predict_and_loss(model, images, boxes, classes, tasks_config):
    provide(model, boxes, classes, tasks_config)
    preprocessed, shapes = model.preprocess(tf.constant(images))
    predictions = model.predict(preprocessed, shapes, training=True)
    return predictions, model.loss(predictions, shapes), shapes


def shapes_of(variables):
    return sorted(tuple(v.shape) for v in variables)


@pytest.fixture(scope='module')
def data():
    return synthetic_images()


@pytest.fixture(scope='module')
def baseline(data):
    images, boxes, classes = data
    model = build()
    assert model.mtl_heads is None
    _, losses, _ = predict_and_loss(model, images[:2], boxes[:2], classes[:2], None)
    return model, losses


EXPECTED_LOSS = {'window': mtl_heads.WINDOW_LOSS, 'closeness': mtl_heads.CLOSENESS_LOSS,
                 'edgemask': mtl_heads.FOREGROUND_LOSS, 'refine': mtl_heads.REFINED_LOSS}


@pytest.mark.parametrize('switch', ['window', 'closeness', 'edgemask', 'refine'])
def test_each_switch_adds_exactly_its_loss_and_variables(switch, data, baseline):
    images, boxes, classes = data
    base_model, base_losses = baseline
    model = build(f'{switch}: true')
    tasks_config = model_config(f'{switch}: true').mtl
    predictions, losses, _ = predict_and_loss(model, images[:2], boxes[:2], classes[:2],
                                              tasks_config)
    assert set(losses) == set(base_losses) | {EXPECTED_LOSS[switch]}
    assert all(np.isfinite(v.numpy()) for v in losses.values())
    heads = model.mtl_heads.trainable_variables
    main_stage = model.feature_extractor.box_classifier_models[0].trainable_variables
    if switch in ('window', 'closeness'):  # own stage copy + FC (C+1 logits)
        expected = shapes_of(main_stage) + [(main_stage[-1].shape[-1], NUM_CLASSES + 1),
                                            (NUM_CLASSES + 1,)]
        expected = sorted(expected)
    elif switch == 'edgemask':  # one 1x1 conv to 2 channels
        depth = predictions['rpn_features_to_crop'].shape[-1]
        expected = [(1, 1, depth, 2), (2,)]
    else:  # refiner alone: main logits -> C+1
        expected = [(NUM_CLASSES + 1,), (NUM_CLASSES + 1, NUM_CLASSES + 1)]
    assert shapes_of(heads) == sorted(expected)
    assert shapes_of(model.trainable_variables) == sorted(
        shapes_of(base_model.trainable_variables) + shapes_of(heads))


def test_all_tasks_train_and_postprocess_uses_the_refined_logits(data):
    images, boxes, classes = data
    model = build(ALL_TASKS)
    tasks_config = model_config(ALL_TASKS).mtl
    optimizer = tf_keras.optimizers.SGD(0.01, momentum=0.9)
    before = None
    for step in range(3):  # eager steps: no trace needed
        with tf.GradientTape() as tape:
            predictions, losses, shapes = predict_and_loss(
                model, images[step % 2 * 2:][:2], boxes[step % 2 * 2:][:2],
                classes[step % 2 * 2:][:2], tasks_config)
            total = tf.add_n(list(losses.values()) + model.regularization_losses())
        assert set(losses) >= set(EXPECTED_LOSS.values())
        assert all(np.isfinite(v.numpy()) for v in losses.values()), losses
        variables = model.trainable_variables
        grads = tape.gradient(total, variables)
        if before is None:
            before = [v.numpy().copy() for v in model.mtl_heads.trainable_variables]
        optimizer.apply_gradients(zip(grads, variables))
    after = model.mtl_heads.trainable_variables
    changed = [not np.array_equal(b, a.numpy()) for b, a in zip(before, after)]
    assert all(changed), [v.name for v, c in zip(after, changed) if not c]

    predictions = model.predict(*model.preprocess(tf.constant(images[:2])), training=False)
    shapes = model.preprocess(tf.constant(images[:2]))[1]
    refined = predictions['mtl_refined_class_logits']
    detections = model.postprocess(predictions, shapes)
    # The same boxes with the refined logits as the class logits give the same detections ...
    swapped = dict(predictions)
    swapped['class_predictions_with_background'] = refined
    del swapped['mtl_refined_class_logits']
    same = model.postprocess(swapped, shapes)
    for key in ('detection_scores', 'detection_classes', 'detection_boxes'):
        np.testing.assert_allclose(detections[key].numpy(), same[key].numpy(), atol=1e-6)
    # ... and a change of the refined logits alone changes the scores.
    shifted = dict(predictions)
    shifted['mtl_refined_class_logits'] = refined + tf.one_hot(2, NUM_CLASSES + 1) * 5.0
    changed = model.postprocess(shifted, shapes)
    assert not np.allclose(changed['detection_scores'].numpy(),
                           detections['detection_scores'].numpy())


def calibrate_batch_norm(model, images):
    """Sets every trainable BN's moving statistics to those of the training images.

    A randomly initialised backbone trained for a few hundred steps normalises with batch
    statistics, while its moving averages have barely moved: one training-mode pass with
    momentum 0 makes inference see what training saw (needs the ground truth provided).
    """
    layers = [layer for layer in model.submodules
              if isinstance(layer, tf_keras.layers.BatchNormalization)
              and not isinstance(layer, backbones.FrozenBatchNormalization)]
    assert layers
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model.predict(*model.preprocess(tf.constant(images)), training=True)
    for layer, momentum in zip(layers, saved):
        layer.momentum = momentum


def mean_average_precision(model, images, boxes, classes):
    evaluator = pascal.PascalDetectionEvaluator(
        [{'id': i + 1, 'name': f'class{i + 1}'} for i in range(NUM_CLASSES)])
    preprocessed, shapes = model.preprocess(tf.constant(images))
    detections = model.postprocess(model.predict(preprocessed, shapes, training=False), shapes)
    for i in range(len(images)):
        count = int(detections['num_detections'][i])
        evaluator.add_single_ground_truth_image_info(i, {'groundtruth_boxes': boxes[i],
                                                         'groundtruth_classes': classes[i]})
        evaluator.add_single_detected_image_info(i, {
            'detection_boxes': detections['detection_boxes'][i, :count].numpy(),
            'detection_scores': detections['detection_scores'][i, :count].numpy(),
            'detection_classes': detections['detection_classes'][i, :count].numpy() + 1})
    return evaluator.evaluate()['PascalBoxes_Precision/mAP@0.5IOU']


OVERFIT_STEPS = 300


def overfit_all_tasks(data, seed=1, steps=OVERFIT_STEPS, cosine=True):
    """Trains the all-tasks model on the four images; returns its mAP@0.5 on them."""
    images, boxes, classes = data
    model = build(ALL_TASKS, seed=seed)
    tasks_config = model_config(ALL_TASKS).mtl
    rate = tf_keras.optimizers.schedules.CosineDecay(1e-3, steps) if cosine else 1e-3
    optimizer = tf_keras.optimizers.Adam(rate)
    labels_per_image = [mtl_labels.make_mtl_labels(b, c, len(b), SIZE, SIZE, NUM_CLASSES,
                                                   tasks_config, seed=i)
                        for i, (b, c) in enumerate(zip(boxes, classes))]

    @tf.function
    def train_step(images, boxes, classes, mtl):
        model.provide_groundtruth(boxes, classes, **mtl)
        preprocessed, shapes = model.preprocess(images)
        with tf.GradientTape() as tape:
            losses = model.loss(model.predict(preprocessed, shapes, training=True), shapes)
            total = tf.add_n(list(losses.values()))
        variables = model.trainable_variables
        grads, _ = tf.clip_by_global_norm(tape.gradient(total, variables), 10.0)
        optimizer.apply_gradients(zip(grads, variables))
        return losses

    for step in range(steps):
        pick = [(2 * step) % 4, (2 * step + 1) % 4]
        mtl = {f'groundtruth_{key}_list': [labels_per_image[i][key] for i in pick]
               for key in labels_per_image[0]}
        losses = train_step(tf.constant(images[pick]), [tf.constant(boxes[i]) for i in pick],
                            [tf.one_hot(classes[i] - 1, NUM_CLASSES) for i in pick], mtl)
    assert all(np.isfinite(v.numpy()) for v in losses.values())
    provide(model, boxes, classes, tasks_config)  # eager ground truth again (not the traced one)
    calibrate_batch_norm(model, images)
    return mean_average_precision(model, images, boxes, classes)


def test_overfit_with_all_tasks_on(data):
    # Runs are not bit-reproducible (multi-threaded CPU): at 200 steps of a constant rate the
    # same seed gave 1.0 and 0.867 on one machine (one box ranked below a false positive;
    # classes hold 2/5/1 of the 8 boxes, so one such box costs up to 0.17). 300 steps ending
    # in a cosine decay gave 1.0 for seeds 1-4; an untrained model scores near 0.
    assert overfit_all_tasks(data) >= 0.8
