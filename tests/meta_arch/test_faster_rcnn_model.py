"""Faster R-CNN end to end at a tiny size: traced train step, static shapes,
postprocess outputs, sampling, batch sizes, padding, restore, config errors."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from google.protobuf import text_format

from mtl_ssl.builders import model_builder
from mtl_ssl.core import box_ops
from mtl_ssl.protos import model_pb2

NUM_CLASSES = 3


def config_text(resizer='fixed_shape_resizer { height: 64 width: 64 }',
                extra='', predictor='mask_rcnn_box_predictor { }',
                extractor='faster_rcnn_mobilenet_v1_keras'):
  return """
  faster_rcnn {
    num_classes: 3
    image_resizer { %s }
    feature_extractor { type: '%s' }
    first_stage_anchor_generator { grid_anchor_generator {
      scales: [0.125, 0.25] aspect_ratios: [0.5, 1.0, 2.0] } }
    first_stage_box_predictor_depth: 16
    first_stage_minibatch_size: 32
    first_stage_max_proposals: 12
    initial_crop_size: 6 maxpool_kernel_size: 2 maxpool_stride: 2
    second_stage_box_predictor { %s }
    second_stage_batch_size: 8
    second_stage_post_processing { score_converter: SOFTMAX
      batch_non_max_suppression { score_threshold: 0.0 iou_threshold: 0.6
        max_detections_per_class: 4 max_total_detections: 6 } }
    %s
  }""" % (resizer, extractor, predictor, extra)


def build(text=None, is_training=True, **overrides):
  cfg = text_format.Parse(text or config_text(), model_pb2.DetectionModel())
  if 'mobilenet' in cfg.faster_rcnn.feature_extractor.type:
    overrides.setdefault('depth_multiplier', 0.25)
  return model_builder.build(cfg, is_training=is_training, **overrides)


def groundtruth(batch):
  rng = np.random.RandomState(batch)
  boxes, classes = [], []
  for i in range(batch):
    n = 1 + i % 3
    yx = rng.uniform(0.0, 0.5, (n, 2))
    boxes.append(tf.constant(np.concatenate([yx, yx + rng.uniform(0.3, 0.5, (n, 2))],
                                            1).clip(0, 1), tf.float32))
    classes.append(tf.one_hot(rng.randint(0, NUM_CLASSES, n), NUM_CLASSES))
  return boxes, classes


@pytest.fixture(scope='module')
def train_model():
  # batch norm in training mode: a random MobileNet's features do not vanish
  return build(batch_norm_trainable=True)


def test_traced_train_step_static_shapes_finite_losses_and_gradients(train_model):
  model = train_model
  images = tf.random.uniform([2, 80, 70, 3], 0, 255, seed=1)
  boxes, classes = groundtruth(2)
  optimizer = tf_keras.optimizers.SGD(0.01)
  shapes_seen = {}

  @tf.function
  def step(images):
    preprocessed, true_shapes = model.preprocess(images)
    model.provide_groundtruth(boxes, classes)
    with tf.GradientTape() as tape:
      pred = model.predict(preprocessed, true_shapes, training=True)
      losses = model.loss(pred, true_shapes)
      total = tf.add_n(list(losses.values()) + model.regularization_losses())
    shapes_seen.update({k: v.shape for k, v in pred.items()})
    grads = tape.gradient(total, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return losses, [tf.norm(g) if g is not None else tf.constant(-1.0)
                    for g in grads]

  losses, norms = step(images)
  assert set(losses) == {'Loss/RPNLoss/localization_loss',
                         'Loss/RPNLoss/objectness_loss',
                         'Loss/BoxClassifierLoss/localization_loss',
                         'Loss/BoxClassifierLoss/classification_loss'}
  assert all(np.isfinite(float(v)) and float(v) >= 0 for v in losses.values())
  for key in ('proposal_boxes', 'refined_box_encodings',
              'class_predictions_with_background', 'rpn_box_encodings'):
    assert shapes_seen[key].is_fully_defined(), key
  assert shapes_seen['proposal_boxes'].as_list() == [2, 8, 4]
  assert shapes_seen['refined_box_encodings'].as_list() == [2, 8, NUM_CLASSES, 4]
  names = [v.name for v in model.trainable_variables]
  norms = [float(n) for n in norms]
  # (the box encoder's loss needs a positive proposal: not guaranteed here)
  for part in ('FirstStageBoxPredictor/ClassPredictor/kernel',
               'FirstStageBoxPredictor/BoxEncodingPredictor/kernel',
               'SecondStageBoxPredictor/ClassPredictor/kernel'):
    idx = [i for i, n in enumerate(names) if part in n]
    assert idx and norms[idx[0]] > 0, part
  position = {id(v): i for i, v in enumerate(model.trainable_variables)}
  for stage in (model._proposal_model, model._box_classifier_model):
    assert stage.trainable_variables
    assert max(norms[position[id(v)]] for v in stage.trainable_variables) > 0
  assert all(n >= 0 for n in norms), 'a trainable variable got no gradient'
  losses2, _ = step(images)  # second call: no retrace problems
  assert all(np.isfinite(float(v)) for v in losses2.values())


def test_sampled_proposals_respect_batch_size_and_positive_fraction(train_model):
  model = train_model
  boxes, classes = groundtruth(2)
  images, shapes = model.preprocess(tf.random.uniform([2, 64, 64, 3], 0, 255))
  model.provide_groundtruth(boxes, classes)
  pred = model.predict(images, shapes, training=True)
  num = pred['num_proposals'].numpy()
  assert np.all(num <= 8) and np.all(num >= 1)
  gt_abs = [b.numpy() * 64 for b in boxes]
  for b in range(2):
    props = pred['proposal_boxes'][b].numpy()
    assert np.all(props[num[b]:] == 0)
    iou = box_ops.pairwise_iou(tf.constant(gt_abs[b][None]),
                               tf.constant(props[None, :num[b]])).numpy()[0]
    assert int(np.sum(iou.max(0) >= 0.5)) <= 2  # floor(8 * 0.25)


def test_postprocess_shapes_and_ranges_with_padded_images():
  model = build(config_text(
      resizer='keep_aspect_ratio_resizer { min_dimension: 48 max_dimension: 64 '
              'pad_to_max_dimension: true }'), is_training=False)
  images, shapes = model.preprocess(tf.random.uniform([3, 40, 80, 3], 0, 255))
  assert images.shape.as_list() == [3, 64, 64, 3]
  np.testing.assert_array_equal(shapes.numpy(), [[32, 64, 3]] * 3)
  pred = model.predict(images, shapes)
  assert pred['proposal_boxes'].shape.as_list() == [3, 12, 4]
  proposals = pred['proposal_boxes'].numpy()
  assert proposals[..., 2].max() <= 32.0 + 1e-4  # clipped to the true image
  det = model.postprocess(pred, shapes)
  assert det['detection_boxes'].shape.as_list() == [3, 6, 4]
  assert det['detection_scores'].shape.as_list() == [3, 6]
  assert det['detection_multiclass_scores'].shape.as_list() == [3, 6, NUM_CLASSES + 1]
  assert det['raw_detection_boxes'].shape.as_list() == [3, 12, 4]
  assert det['raw_detection_scores'].shape.as_list() == [3, 12, NUM_CLASSES + 1]
  assert det['num_detections'].dtype == tf.float32
  boxes = det['detection_boxes'].numpy()
  assert boxes.min() >= 0.0 and boxes.max() <= 1.0 + 1e-6
  raw = det['raw_detection_boxes'].numpy()
  assert raw.min() >= 0.0 and raw.max() <= 1.0 + 1e-6
  for b in range(3):
    n = int(det['num_detections'][b])
    assert n >= 1
    classes = det['detection_classes'][b, :n].numpy()
    assert np.all((classes >= 0) & (classes < NUM_CLASSES))
    scores = det['detection_scores'][b, :n].numpy()
    assert np.all(np.diff(scores) <= 1e-7)
    multi = det['detection_multiclass_scores'][b, :n].numpy()
    np.testing.assert_allclose(multi.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(multi[np.arange(n), classes.astype(int) + 1], scores,
                               rtol=1e-6)
    assert np.all(det['detection_boxes'][b, n:].numpy() == 0)


def test_inference_with_unknown_batch_and_image_size():
  model = build(config_text(
      resizer='keep_aspect_ratio_resizer { min_dimension: 48 max_dimension: 64 }'),
      is_training=False)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def detect(images):
    preprocessed, shapes = model.preprocess(images)
    return model.postprocess(model.predict(preprocessed, shapes), shapes)

  for shape in ([2, 40, 80, 3], [1, 70, 50, 3]):
    det = detect(tf.random.uniform(shape, 0, 255))
    assert det['detection_boxes'].shape.as_list() == [shape[0], 6, 4]
    assert np.all(np.isfinite(det['detection_boxes'].numpy()))


@pytest.mark.parametrize('batch', [1, 3])
def test_any_batch_size_trains(batch, train_model):
  model = train_model
  boxes, classes = groundtruth(batch)
  images, shapes = model.preprocess(tf.random.uniform([batch, 64, 64, 3], 0, 255))
  model.provide_groundtruth(boxes, classes)
  pred = model.predict(images, shapes, training=True)
  assert pred['class_predictions_with_background'].shape.as_list() == [
      batch, 8, NUM_CLASSES + 1]
  losses = model.loss(pred, shapes)
  assert all(np.isfinite(float(v)) for v in losses.values())


def test_image_without_groundtruth_boxes_trains(train_model):
  model = train_model
  images, shapes = model.preprocess(tf.random.uniform([2, 64, 64, 3], 0, 255))
  model.provide_groundtruth([tf.zeros([0, 4]), tf.constant([[0.1, 0.1, 0.6, 0.6]])],
                            [tf.zeros([0, NUM_CLASSES]), tf.one_hot([1], NUM_CLASSES)])
  pred = model.predict(images, shapes, training=True)
  losses = model.loss(pred, shapes)
  assert all(np.isfinite(float(v)) for v in losses.values())


def test_unpadded_groundtruth_of_unknown_length_is_padded_statically():
  model = build(max_num_groundtruth_boxes=5)
  padded = tf.constant([[[0.1, 0.1, 0.6, 0.6], [0.5, 0.5, 0.9, 0.9], [0, 0, 0, 0]],
                        [[0.2, 0.3, 0.7, 0.8], [0, 0, 0, 0], [0, 0, 0, 0]]])
  classes = tf.one_hot([[0, 2, 0], [1, 0, 0]], NUM_CLASSES)
  seen = {}

  @tf.function
  def step(images, num_boxes):
    preprocessed, shapes = model.preprocess(images)
    model.provide_groundtruth([padded[i, :num_boxes[i]] for i in range(2)],
                              [classes[i, :num_boxes[i]] for i in range(2)])
    seen['boxes'] = model._state.groundtruth['boxes'].shape
    seen['ids'] = model.groundtruth_class_ids().shape
    assert model.groundtruth_has_field('boxes')
    return model.loss(model.predict(preprocessed, shapes, training=True), shapes)

  losses = step(tf.random.uniform([2, 64, 64, 3], 0, 255), tf.constant([2, 1]))
  assert seen['boxes'].as_list() == [2, 5, 4]
  assert all(np.isfinite(float(v)) for v in losses.values())
  assert seen['ids'].as_list() == [2, 5]


def test_predict_in_training_needs_groundtruth():
  model = build()
  images, shapes = model.preprocess(tf.zeros([1, 64, 64, 3]))
  with pytest.raises(ValueError, match='provide_groundtruth'):
    model.predict(images, shapes, training=True)


def test_restore_full_and_detection_checkpoints(tmp_path):
  source = build(is_training=False)
  source.build_for_shapes(64, 64)
  path = tf.train.Checkpoint(model=source).save(str(tmp_path / 'ckpt'))
  full = build(is_training=False)
  full.build_for_shapes(64, 64)
  tf.train.Checkpoint(**full.restore_from_objects('full')).restore(
      path).assert_existing_objects_matched()
  for a, b in zip(source.weights, full.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  partial = build(is_training=False)
  partial.build_for_shapes(64, 64)
  before = partial._box_predictor.class_predictor.kernel.numpy()
  tf.train.Checkpoint(**partial.restore_from_objects('detection')).restore(
      path).assert_existing_objects_matched()
  np.testing.assert_array_equal(partial._rpn.rpn_conv.kernel.numpy(),
                                source._rpn.rpn_conv.kernel.numpy())
  np.testing.assert_array_equal(partial._proposal_model.weights[0].numpy(),
                                source._proposal_model.weights[0].numpy())
  np.testing.assert_array_equal(partial._box_predictor.class_predictor.kernel.numpy(),
                                before)
  with pytest.raises(ValueError, match='fine_tune_checkpoint_type'):
    partial.restore_from_objects('everything')


def test_classification_restore_objects_are_the_backbone(train_model):
  objects = train_model.restore_from_objects('classification')
  backbone = objects['feature_extractor']
  model_vars = {id(v) for v in train_model.variables}
  backbone_vars = {id(v) for v in backbone.variables}
  assert backbone_vars and backbone_vars <= model_vars
  assert {id(v) for v in train_model._proposal_model.variables} <= backbone_vars


def test_l2_regularization_from_hyperparams():
  text = config_text(extra='''
      first_stage_box_predictor_conv_hyperparams { op: CONV
        regularizer { l2_regularizer { weight: 0.02 } }
        initializer { truncated_normal_initializer { stddev: 0.1 } } }''')
  model = build(text, is_training=False)
  model.build_for_shapes(64, 64)
  rpn = model._rpn
  kernels = [rpn.rpn_conv.kernel, rpn.box_encoder.kernel, rpn.class_predictor.kernel]
  want = sum(0.5 * 0.02 * float(tf.reduce_sum(tf.square(k))) for k in kernels)
  got = sum(float(v) for v in model.regularization_losses())
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert want > 0


@pytest.mark.parametrize('extra, predictor, message', [
    ('number_of_stages: 1', 'mask_rcnn_box_predictor { }', 'number_of_stages'),
    ('second_stage_batch_size: 64', 'mask_rcnn_box_predictor { }',
     'second_stage_batch_size'),
    ('', 'convolutional_box_predictor { }', 'second_stage_box_predictor'),
    ('hard_example_miner { }', 'mask_rcnn_box_predictor { }', 'hard_example_miner'),
    ('first_stage_positive_balance_fraction: 1.5', 'mask_rcnn_box_predictor { }',
     'first_stage_positive_balance_fraction'),
])
def test_config_errors_name_the_field(extra, predictor, message):
  text = config_text(extra=extra, predictor=predictor)
  text = text.replace('second_stage_batch_size: 8', '') if 'batch_size' in extra else text
  with pytest.raises(ValueError, match=message):
    build(text)
