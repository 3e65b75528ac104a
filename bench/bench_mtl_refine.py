"""Inference cost of the MTL context refinement vs the baseline box-classifier pass.

One 320 x 320 image, 300 proposals, initial_crop_size 14 + 2x2 max-pool, random weights, traced
(tf.function) passes on fixed inputs, run round robin --repeats times after a warm-up; the
median (ratios use it) and the minimum are printed:
  baseline        crop_and_pool of the 300 proposals + the main box-classifier stage + FC heads
  T2 closeness    its own stage copy on the 300 proposal crops (the refiner's closeness input)
  T1 context      window head at the 5 context boxes of each proposal: levels 0-3 per proposal
                  + the whole image ONCE per image, in one crop and one stage pass (1201 crops)
  T1 naive        the same without the whole-image dedupe (1500 crops), for comparison
  refine total    MTLHeads.predict at inference (T2 + T1 context + refiner + T3 conv)
  ... whole map   the same with model.mtl.aux_stage_input 'whole_feature_map' (one stage pass
                  per image for all context boxes / proposals; not the paper's formulation)
Each backbone runs in its own subprocess.

  PYTHONPATH=. python bench/bench_mtl_refine.py [--repeats 3] [--only mobilenet|resnet50]
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

NUM_CLASSES = 20
NUM_PROPOSALS = 300
SIZE = 320
_HEAD = ('mask_rcnn_box_predictor { fc_hyperparams { op: FC initializer { '
         'truncated_normal_initializer { stddev: 0.01 } } } }')
_MTL = f"""
window: true closeness: true edgemask: true refine: true refine_residue: true
window_class_loss_weight: 1.0 closeness_loss_weight: 0.3 edgemask_loss_weight: 1.0
refined_classification_loss_weight: 1.0
window_box_predictor {{ {_HEAD} }}
closeness_box_predictor {{ {_HEAD} }}
edgemask_predictor {{ kernel_size: 1 }}
"""


def run(extractor_type, repeats):
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tf_keras  # pylint: disable=g-import-not-at-top
    from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
    from mtl_ssl import backbones  # pylint: disable=g-import-not-at-top
    from mtl_ssl.core import crop_ops  # pylint: disable=g-import-not-at-top
    from mtl_ssl.mtl import heads as mtl_heads  # pylint: disable=g-import-not-at-top
    from mtl_ssl.mtl import labels  # pylint: disable=g-import-not-at-top
    from mtl_ssl.protos import faster_rcnn_pb2, mtl_pb2  # pylint: disable=g-import-not-at-top

    extractor_config = faster_rcnn_pb2.FasterRcnnFeatureExtractor(type=extractor_type)
    extractor = backbones.build(extractor_config, False)
    proposal_model = extractor.get_proposal_feature_extractor_model()
    main = extractor.get_box_classifier_feature_extractor_model()
    fc_class = tf_keras.layers.Dense(NUM_CLASSES + 1)
    fc_box = tf_keras.layers.Dense(NUM_CLASSES * 4)

    def crop_fn(features, boxes):
        return crop_ops.crop_and_pool(features, boxes, 14, 2, 2)

    cfg = text_format.Parse(_MTL, mtl_pb2.MTL())
    heads = mtl_heads.MTLHeads(cfg, NUM_CLASSES, extractor, main, crop_fn, is_training=False)
    fast_cfg = text_format.Parse(_MTL + " aux_stage_input: 'whole_feature_map'", mtl_pb2.MTL())
    fast = mtl_heads.MTLHeads(fast_cfg, NUM_CLASSES, extractor, main, crop_fn, is_training=False)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (1, SIZE, SIZE, 3)), tf.float32)
    feature_map = proposal_model(extractor.preprocess(images), training=False)
    low = rng.uniform(0.0, 0.7, (1, NUM_PROPOSALS, 2))
    proposals = tf.constant(np.concatenate([low, low + rng.uniform(0.05, 0.3, low.shape)], -1),
                            tf.float32)

    @tf.function
    def baseline(features, boxes):
        stage = main(crop_fn(features, boxes), training=False)
        pooled = tf.reduce_mean(stage, [1, 2])
        return fc_class(pooled), fc_box(pooled), stage

    logits, _, classifier_features = baseline(feature_map, proposals)
    ctx = {'feature_map': feature_map, 'true_image_shapes': tf.constant([[SIZE, SIZE, 3]]),
           'image_shape': [1, SIZE, SIZE, 3], 'proposal_boxes_normalized': proposals,
           'num_proposals': tf.constant([NUM_PROPOSALS]),
           'proposal_crops': crop_fn(feature_map, proposals),
           'box_classifier_features': classifier_features,
           'class_logits': tf.reshape(logits, [1, NUM_PROPOSALS, NUM_CLASSES + 1]),
           'windows': None, 'training': False}
    window, closeness = heads.window_head, heads.closeness_head
    all_levels = tf.reshape(labels.context_boxes(proposals, 5), [1, 5 * NUM_PROPOSALS, 4])

    passes = {
        'baseline box classifier': (lambda: baseline(feature_map, proposals), NUM_PROPOSALS),
        'T2 closeness head': (tf.function(lambda: closeness(ctx['proposal_crops'])),
                              NUM_PROPOSALS),
        'T1 context (dedupe)': (tf.function(lambda: heads.context_logits(ctx)),
                                4 * NUM_PROPOSALS + 1),
        'T1 context (naive)': (tf.function(lambda: window(crop_fn(feature_map, all_levels))),
                               5 * NUM_PROPOSALS),
        'refine total (predict)': (tf.function(lambda: heads.predict(ctx)), None),
        'T1 context (whole map)': (tf.function(lambda: fast.context_logits(ctx)), 0),
        'refine total (whole map)': (tf.function(lambda: fast.predict(ctx)), 0),
    }
    for fn, _ in passes.values():  # trace + warm up
        tf.nest.map_structure(lambda t: t.numpy(), fn())
    times = {name: [] for name in passes}
    for _ in range(repeats):  # round robin: load drift on a shared machine hits every pass
        for name, (fn, _) in passes.items():
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), fn())
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: {'ms': float(np.min(times[name])), 'median': float(np.median(times[name])),
                   'crops': passes[name][1]} for name in passes}


def _child(args):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', json.dumps(args)]
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f'{args} failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--only', choices=('mobilenet', 'resnet50'))
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child = json.loads(args.child)
        print(json.dumps(run(child['type'], child['repeats'])))
        return
    backbone_types = {'mobilenet': 'faster_rcnn_mobilenet_v1_keras',
                      'resnet50': 'faster_rcnn_resnet50_keras'}
    print(f'{"backbone":<10} {"pass":<26} {"crops":>6} {"median ms":>10} {"min ms":>9} '
          f'{"x baseline (median)":>20}')
    for name, extractor_type in backbone_types.items():
        if args.only not in (None, name):
            continue
        results = _child({'type': extractor_type, 'repeats': args.repeats})
        base = results['baseline box classifier']['median']
        for label, row in results.items():
            crops = '-' if row['crops'] is None else str(row['crops'])
            print(f'{name:<10} {label:<26} {crops:>6} {row["median"]:>10.0f} {row["ms"]:>9.0f} '
                  f'{row["median"] / base:>20.2f}')
        sys.stdout.flush()


if __name__ == '__main__':
    main()
