"""train_config.use_bfloat16: the backbone, box-classifier stages and RPN conv compute in
bfloat16 with float32 variables; everything they hand on is float32 and close to float32."""
import os
import types

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from mtl_ssl import backbones
from mtl_ssl.builders import hyperparams_builder
from mtl_ssl.builders import model_builder
from mtl_ssl.meta_arch import rpn
from mtl_ssl.protos import model_pb2

MOBILENET = types.SimpleNamespace(type='faster_rcnn_mobilenet_v1_keras')


def _close(low, high, tolerance):
  """bfloat16 keeps ~3 significant digits: error relative to the output's scale."""
  low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
  scale = np.abs(high).max()
  assert scale > 0
  assert np.abs(low - high).max() / scale < tolerance, np.abs(low - high).max() / scale
  assert np.corrcoef(low.ravel(), high.ravel())[0, 1] > 0.999


def test_bfloat16_extractor_computes_in_bfloat16_and_hands_on_float32():
  full = backbones.build(MOBILENET, True, depth_multiplier=0.25)
  mixed = backbones.build(MOBILENET, True, depth_multiplier=0.25, compute_dtype='bfloat16')
  assert full.compute_dtype == 'float32' and mixed.compute_dtype == 'bfloat16'
  pairs = [(full.get_proposal_feature_extractor_model(),
            mixed.get_proposal_feature_extractor_model()),
           (full.get_box_classifier_feature_extractor_model(),
            mixed.get_box_classifier_feature_extractor_model())]
  images = tf.random.stateless_uniform([2, 64, 64, 3], [1, 2], -1.0, 1.0)
  crops = tf.random.stateless_uniform([3, 7, 7, 128], [3, 4], 0.0, 1.0)
  for (reference, model), inputs in zip(pairs, (images, crops)):
    convs = [layer for layer in model.layers if hasattr(layer, 'kernel') or
             hasattr(layer, 'depthwise_kernel')]
    assert convs and all(layer.compute_dtype == 'bfloat16' for layer in convs)
    assert all(v.dtype == tf.float32 for v in model.variables)  # weights stay float32
    model.set_weights(reference.get_weights())
    out = model(inputs, training=True)
    assert out.dtype == tf.float32
    _close(out.numpy(), reference(inputs, training=True).numpy(), 0.05)


def test_unknown_compute_dtype_is_an_error():
  with pytest.raises(ValueError, match='compute_dtype'):
    backbones.build(MOBILENET, True, compute_dtype='float16')


def test_rpn_conv_in_bfloat16_outputs_float32():
  hyperparams = hyperparams_builder.KerasLayerHyperparams(None, 'rpn')
  features = tf.random.stateless_uniform([1, 5, 6, 8], [5, 6])
  heads = [rpn.RPNHead(3, 16, 3, hyperparams, compute_dtype=dtype)
           for dtype in ('float32', 'bfloat16')]
  reference = heads[0](features)
  heads[1](features)
  heads[1].set_weights(heads[0].get_weights())
  assert heads[1].rpn_conv.compute_dtype == 'bfloat16'
  assert heads[1].box_encoder.compute_dtype == 'float32'
  for low, high in zip(heads[1](features), reference):
    assert low.dtype == tf.float32
    _close(low.numpy(), high.numpy(), 0.05)


_MODEL = """
mtl { window: true window_class_loss_weight: 1.0 refine: true refine_residue: true
      refined_classification_loss_weight: 1.0
      window_box_predictor { mask_rcnn_box_predictor { } } }
faster_rcnn {
  num_classes: 3
  image_resizer { fixed_shape_resizer { height: 96 width: 96 } }
  feature_extractor { type: 'faster_rcnn_mobilenet_v1_keras' depth_multiplier: 0.25 }
  first_stage_anchor_generator { grid_anchor_generator {
    scales: [0.5, 1.0] aspect_ratios: [1.0] height_stride: 16 width_stride: 16 } }
  first_stage_max_proposals: 12
  initial_crop_size: 6 maxpool_kernel_size: 1 maxpool_stride: 1
  second_stage_box_predictor { mask_rcnn_box_predictor { } }
  second_stage_batch_size: 8
  second_stage_post_processing { batch_non_max_suppression {
    score_threshold: 0.0 iou_threshold: 0.6 max_detections_per_class: 5
    max_total_detections: 5 } score_converter: SOFTMAX }
}
"""


@pytest.mark.skipif(os.environ.get('MTL_SSL_FAST_TESTS') == '1', reason='builds two detectors')
def test_detector_with_use_bfloat16_matches_float32_on_the_same_weights():
  tf.keras.utils.set_random_seed(0)  # fixed weights: the same NMS choices every run
  config = text_format.Parse(_MODEL, model_pb2.DetectionModel())
  images = tf.random.stateless_uniform([1, 96, 96, 3], [7, 8], 0.0, 255.0)
  outputs = []
  for use_bfloat16 in (False, True):
    model = model_builder.build(config, is_training=False, use_bfloat16=use_bfloat16)
    assert model.feature_extractor.compute_dtype == ('bfloat16' if use_bfloat16 else 'float32')
    preprocessed, shapes = model.preprocess(images)
    if outputs:
      model.predict(preprocessed, shapes)  # build, then take the float32 model's weights
      model.set_weights(outputs[0][0].get_weights())
    predictions = model.predict(preprocessed, shapes)
    outputs.append((model, predictions))
  (_, full), (_, mixed) = outputs
  # same proposals: the RPN scores are close enough to keep the NMS choices here
  np.testing.assert_allclose(mixed['proposal_boxes'].numpy(), full['proposal_boxes'].numpy(),
                             atol=1.0)
  for key in ('class_predictions_with_background', 'refined_box_encodings',
              'mtl_refined_class_logits', 'rpn_features_to_crop'):
    assert mixed[key].dtype == tf.float32, key
    _close(mixed[key].numpy(), full[key].numpy(), 0.08)


def test_float32_and_bfloat16_checkpoints_are_interchangeable(tmp_path):
  """The output cast is the models' last layer: variables keep their checkpoint paths, so a
  float32-trained checkpoint exports / evaluates with use_bfloat16 and vice versa."""
  models = []
  for dtype in ('float32', 'bfloat16'):
    extractor = backbones.build(MOBILENET, True, depth_multiplier=0.25, compute_dtype=dtype)
    models.append((extractor.get_proposal_feature_extractor_model(),
                   extractor.get_box_classifier_feature_extractor_model()))
  (full_proposal, full_box), (mixed_proposal, mixed_box) = models
  path = tf.train.Checkpoint(proposal=full_proposal, box=full_box).save(str(tmp_path / 'ckpt'))
  tf.train.Checkpoint(proposal=mixed_proposal, box=mixed_box).read(
      path).assert_existing_objects_matched()
  for full, mixed in ((full_proposal, mixed_proposal), (full_box, mixed_box)):
    for a, b in zip(full.variables, mixed.variables):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
