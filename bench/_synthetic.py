"""Synthetic detection batches and the benches' detector config, shared by bench_cost.py,
bench_train_step.py and odapi_train_step.py.

numpy only (the OD API's own venv imports it too), so every implementation sees the same
images, boxes and config text. Labels use the input pipeline's padded layout and key names,
which are the OD API's (docs/architecture.md section 2).
"""
import numpy as np

NUM_CLASSES = 20
SIZE = 320
BATCH = 2
MAX_BOXES = 100

# The box classifier (and the MTL heads' predictors) of the benches' detector.
HEAD = ('mask_rcnn_box_predictor { use_dropout: false dropout_keep_probability: 1.0 '
        'fc_hyperparams { op: FC regularizer { l2_regularizer { weight: 0.0 } } '
        'initializer { variance_scaling_initializer { factor: 1.0 uniform: true '
        'mode: FAN_AVG } } } }')
_FASTER_RCNN_C4 = """faster_rcnn {{
  num_classes: {num_classes}
  image_resizer {{ fixed_shape_resizer {{ height: {size} width: {size} }} }}
  feature_extractor {{ type: '{extractor}' {extractor_fields}}}
  first_stage_anchor_generator {{ grid_anchor_generator {{
    scales: [0.25, 0.5, 1.0, 2.0] aspect_ratios: [0.5, 1.0, 2.0]
    height_stride: 16 width_stride: 16 }} }}
  first_stage_box_predictor_conv_hyperparams {{ op: CONV
    regularizer {{ l2_regularizer {{ weight: 0.0 }} }}
    initializer {{ truncated_normal_initializer {{ stddev: 0.01 }} }} }}
  first_stage_nms_score_threshold: 0.0
  first_stage_nms_iou_threshold: 0.7
  first_stage_max_proposals: 300
  first_stage_localization_loss_weight: 2.0
  first_stage_objectness_loss_weight: 1.0
  initial_crop_size: 14 maxpool_kernel_size: 2 maxpool_stride: 2
  second_stage_box_predictor {{ {head} }}
  second_stage_batch_size: 64
  second_stage_post_processing {{ batch_non_max_suppression {{
    score_threshold: 0.0 iou_threshold: 0.6
    max_detections_per_class: 100 max_total_detections: 300 }}
    score_converter: SOFTMAX }}
  second_stage_localization_loss_weight: 2.0
  second_stage_classification_loss_weight: 1.0
  {extra}
}}"""


def faster_rcnn_c4_text(extractor='faster_rcnn_resnet50_keras', size=SIZE,
                        num_classes=NUM_CLASSES, extractor_fields='', extra=''):
  """The `faster_rcnn { }` block of issue 11's setting (ResNet-50 C4, 300 proposals, 64 RoIs,
  crop 14 + 2x2 max-pool, no weight decay) as the OD API and mtl_ssl both parse it."""
  return _FASTER_RCNN_C4.format(num_classes=num_classes, size=size, extractor=extractor,
                                extractor_fields=extractor_fields, head=HEAD, extra=extra)


def batches(count, batch=BATCH, size=SIZE, num_classes=NUM_CLASSES, max_boxes=MAX_BOXES,
            seed=0):
  """`count` batches of (images float32 [B, S, S, 3] in 0..255, labels dict of numpy arrays):
  groundtruth_boxes [B, N, 4] normalized, groundtruth_classes [B, N, K] one-hot without
  background, num_groundtruth_boxes [B] int32, groundtruth_weights [B, N]; 2..8 boxes of
  15-45 % of the side per image, padded rows zero."""
  rng = np.random.RandomState(seed)
  result = []
  for _ in range(count):
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    boxes = np.zeros((batch, max_boxes, 4), np.float32)
    classes = np.zeros((batch, max_boxes, num_classes), np.float32)
    weights = np.zeros((batch, max_boxes), np.float32)
    counts = rng.randint(2, 9, batch).astype(np.int32)
    for i, n in enumerate(counts):
      corner = rng.uniform(0.0, 0.55, (n, 2))
      extent = rng.uniform(0.15, 0.45, (n, 2))
      boxes[i, :n] = np.concatenate([corner, np.minimum(corner + extent, 1.0)], 1)
      classes[i, np.arange(n), rng.randint(0, num_classes, n)] = 1.0
      weights[i, :n] = 1.0
    result.append((images, {'groundtruth_boxes': boxes, 'groundtruth_classes': classes,
                            'num_groundtruth_boxes': counts,
                            'groundtruth_weights': weights}))
  return result


def step_protocol(run_steps, ready_info):
  """Child side of the round-robin protocol: print ready_info as JSON, then for every stdin
  line N run N steps and print {'ms': [...]} (one time per step); 'quit' or EOF ends."""
  import json  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  print(json.dumps(ready_info), flush=True)
  for line in sys.stdin:
    line = line.strip()
    if not line or line == 'quit':
      break
    print(json.dumps({'ms': run_steps(int(line))}), flush=True)
