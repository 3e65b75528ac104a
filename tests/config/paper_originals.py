"""The original TF1 mtl-ssl training settings (test data, not a test module).

Transcribed from wonheeML/mtl-ssl, object_detection/configs/test/model{11..92}.config (commit
b2aeaf0e) and the code they ran (faster_rcnn_meta_arch.py, trainer.py, the TF1 OD API of that
time). tests/config/test_paper_configs.py pins every shipped paper config to these values; the
few deliberate deviations are listed in DEVIATIONS with their reason (docs/reproducing.md says
the same).
"""

# Shared by all 18 originals.
COMMON = {
    'resizer': (600, 1024),  # keep_aspect_ratio_resizer, no padding (batch 1: none at all)
    'anchor_scales': [0.25, 0.5, 1.0, 2.0],
    'anchor_ratios': [0.5, 1.0, 2.0],
    'anchor_stride': (16, 16),
    'rpn_minibatch': 256, 'rpn_positive_fraction': 0.5,
    'rpn_nms_iou': 0.7, 'max_proposals': 300,
    'rpn_loss_weights': (2.0, 1.0),     # localization, objectness
    'rpn_smooth_l1_sigma': 3.0,         # faster_rcnn_meta_arch.py __init__
    'rois_per_image': 256, 'roi_positive_fraction': 0.25,
    'box_loss_weights': (2.0, 1.0),     # localization, classification
    'score_threshold': 0.0, 'max_per_class': 100, 'max_total': 300,
    'momentum': 0.9,
    'clip_norm': 10.0, 'clip_per_variable': True,   # slim.learning.clip_gradient_norms
    'augmentation': ['random_horizontal_flip'],
    'batch_norm_trainable': False,
}

# Shared by the nine MTL originals (x2 configs).
MTL_COMMON = {
    'tasks': (True, True, True, True),  # window, closeness, edgemask, refine
    'window_weight': 1.0, 'closeness_weight': 0.3, 'refined_weight': 1.0,
    'refine_residue': True, 'refine_dropout_rate': 0.5, 'refine_num_fc_layers': 0,
    'shared_feature': 'proposal_feature_maps', 'share_second_stage_init': True,
    'global_closeness': True, 'edgemask_weighted': True,
    'stop_gradient_for_prediction_org': False,
    'edgemask_kernel_size': 1,
    'labels_in_original_pixels': True,  # labels made offline on the original images
}

_R101 = 'faster_rcnn_resnet101_keras'
_MOBILENET = 'faster_rcnn_mobilenet_v1_keras'
_IRV2 = 'faster_rcnn_inception_resnet_v2_keras'  # 'faster_rcnn_inception_v2' in the originals
_VOC = {'num_classes': 20, 'box_nms_iou': 0.4, 'batch': 1}
_COCO = {'num_classes': 90, 'box_nms_iou': 0.6, 'batch': 3}
_CROP_VOC = {'crop': (7, 1, 1), 'box_init': 'truncated_normal_initializer'}
_CROP_COCO = {'crop': (14, 2, 2), 'box_init': 'variance_scaling_initializer'}
_RFCN = {'crop': None, 'box_init': 'truncated_normal_initializer',
         'rfcn_crop': (18, 18), 'rfcn_bins': (3, 3)}
_L2 = {'backbone_l2': 1e-4, 'box_l2': 1e-4, 'rpn_l2': 1e-4}
_MTL_L2 = {'aux_l2': 1e-3}


def _lr(initial, *steps):
  return {'lr': (initial, list(steps))}


# model id -> settings (num_steps None: the original had none and trained until stopped).
ORIGINAL = {
    'model11': {'arch': 'faster_rcnn', 'backbone': _R101, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (100000, 1e-4), (130000, 1e-5), (2000000, 1e-6)),
                'num_steps': 300000, 'mtl': None},
    'model12': {'arch': 'faster_rcnn', 'backbone': _R101, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (90000, 1e-4), (120000, 1e-5)), 'num_steps': None,
                'mtl': {'edgemask_weight': 1.0, 'stop_gradient_for_aux_tasks': False, **_MTL_L2}},
    'model21': {'arch': 'faster_rcnn', 'backbone': _R101, **_COCO, **_CROP_COCO, **_L2,
                **_lr(1e-3, (820000, 1e-4), (900000, 1e-5), (15000000, 1e-6)),
                'num_steps': None, 'mtl': None},
    'model22': {'arch': 'faster_rcnn', 'backbone': _R101, **_COCO, **_CROP_COCO,
                'backbone_l2': 0.0, 'box_l2': 0.0, 'rpn_l2': 0.0,
                **_lr(1e-5, (820000, 1e-5), (950000, 1e-5)), 'num_steps': None,
                'mtl': {'edgemask_weight': 1.0, 'stop_gradient_for_aux_tasks': True,
                        'aux_l2': 0.0,
                        # its flag never cut the foreground head (faster_rcnn_meta_arch.py)
                        'stop_gradient_covers_foreground': False}},
    'model31': {'arch': 'faster_rcnn', 'backbone': _R101, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (170000, 1e-4), (280000, 1e-5), (310000, 1e-6)),
                'num_steps': None, 'mtl': None},
    'model32': {'arch': 'faster_rcnn', 'backbone': _R101, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (165000, 1e-4), (275000, 1e-5), (305000, 1e-5)),
                'num_steps': None,
                'mtl': {'edgemask_weight': 1.0, 'stop_gradient_for_aux_tasks': False, **_MTL_L2}},
    'model41': {'arch': 'rfcn', 'backbone': _R101, **_VOC, **_RFCN, **_L2,
                **_lr(1e-3, (100000, 1e-4), (120000, 1e-5), (130000, 1e-6)),
                'num_steps': 400000, 'mtl': None},
    'model42': {'arch': 'rfcn', 'backbone': _R101, **_VOC, **_RFCN, **_L2,
                **_lr(1e-3, (125000, 1e-4), (160000, 1e-5), (177720, 1e-6)),
                'num_steps': None,
                'mtl': {'edgemask_weight': 0.2, 'stop_gradient_for_aux_tasks': False, **_MTL_L2}},
    'model51': {'arch': 'faster_rcnn', 'backbone': _MOBILENET, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (250000, 1e-4), (300000, 1e-5)), 'num_steps': 600000, 'mtl': None},
    'model52': {'arch': 'faster_rcnn', 'backbone': _MOBILENET, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (260000, 1e-4), (280000, 1e-5)), 'num_steps': None,
                'mtl': {'edgemask_weight': 1.0, 'stop_gradient_for_aux_tasks': False, **_MTL_L2}},
    'model61': {'arch': 'faster_rcnn', 'backbone': _IRV2, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (120000, 1e-4), (135000, 1e-5)), 'num_steps': None, 'mtl': None},
    'model62': {'arch': 'faster_rcnn', 'backbone': _IRV2, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (115000, 1e-4), (135000, 1e-5)), 'num_steps': None,
                'mtl': {'edgemask_weight': 1.0, 'stop_gradient_for_aux_tasks': False, **_MTL_L2}},
    'model71': {'arch': 'rfcn', 'backbone': _R101, **_VOC, **_RFCN, **_L2,
                **_lr(1e-3, (160000, 1e-4), (280000, 1e-5), (350000, 1e-6)),
                'num_steps': None, 'mtl': None},
    'model72': {'arch': 'rfcn', 'backbone': _R101, **_VOC, **_RFCN, **_L2,
                **_lr(1e-3, (170000, 1e-4), (280000, 1e-5), (320000, 1e-6)),
                'num_steps': None,
                'mtl': {'edgemask_weight': 1.0, 'stop_gradient_for_aux_tasks': False, **_MTL_L2}},
    'model81': {'arch': 'faster_rcnn', 'backbone': _MOBILENET, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (500000, 1e-4), (550000, 1e-5)), 'num_steps': None, 'mtl': None},
    'model82': {'arch': 'faster_rcnn', 'backbone': _MOBILENET, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (420000, 1e-4), (560000, 1e-5), (700000, 1e-6)),
                'num_steps': None,
                'mtl': {'edgemask_weight': 1.0, 'stop_gradient_for_aux_tasks': False, **_MTL_L2}},
    'model91': {'arch': 'faster_rcnn', 'backbone': _IRV2, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-3, (150000, 1e-4), (190000, 1e-5), (280000, 1e-6)),
                'num_steps': None, 'mtl': None},
    'model92': {'arch': 'faster_rcnn', 'backbone': _IRV2, **_VOC, **_CROP_VOC, **_L2,
                **_lr(1e-5, (160000, 1e-5), (205000, 1e-5)), 'num_steps': None,
                'mtl': {'edgemask_weight': 0.3, 'stop_gradient_for_aux_tasks': False, **_MTL_L2}},
}

# Shipped config (pipeline_configs/paper/<name>.config) -> (original, train data, eval data).
# The 07++12 setup (the paper's VOC2012 test numbers) has no original config: it trains the
# 07+12 models (model31 / model32) on VOC07 trainval+test + VOC12 trainval.
_V07, _V0712, _V07PP12 = ['voc07_trainval'], ['voc0712_trainval'], [
    'voc07_trainval', 'voc07_test', 'voc12_trainval']
SHIPPED = {
    'faster_rcnn_resnet101_voc07_baseline': ('model11', _V07, 'voc07_test'),
    'faster_rcnn_resnet101_voc07_mtl': ('model12', _V07, 'voc07_test'),
    'faster_rcnn_resnet101_coco17_baseline': ('model21', ['coco17_train'], 'coco17_val'),
    'faster_rcnn_resnet101_coco17_mtl': ('model22', ['coco17_train'], 'coco17_val'),
    'faster_rcnn_resnet101_voc0712_baseline': ('model31', _V0712, 'voc07_test'),
    'faster_rcnn_resnet101_voc0712_mtl': ('model32', _V0712, 'voc07_test'),
    'rfcn_resnet101_voc07_baseline': ('model41', _V07, 'voc07_test'),
    'rfcn_resnet101_voc07_mtl': ('model42', _V07, 'voc07_test'),
    'faster_rcnn_mobilenet_v1_voc07_baseline': ('model51', _V07, 'voc07_test'),
    'faster_rcnn_mobilenet_v1_voc07_mtl': ('model52', _V07, 'voc07_test'),
    'faster_rcnn_inception_resnet_v2_voc07_baseline': ('model61', _V07, 'voc07_test'),
    'faster_rcnn_inception_resnet_v2_voc07_mtl': ('model62', _V07, 'voc07_test'),
    'rfcn_resnet101_voc0712_baseline': ('model71', _V0712, 'voc07_test'),
    'rfcn_resnet101_voc0712_mtl': ('model72', _V0712, 'voc07_test'),
    'faster_rcnn_mobilenet_v1_voc0712_baseline': ('model81', _V0712, 'voc07_test'),
    'faster_rcnn_mobilenet_v1_voc0712_mtl': ('model82', _V0712, 'voc07_test'),
    'faster_rcnn_inception_resnet_v2_voc0712_baseline': ('model91', _V0712, 'voc07_test'),
    'faster_rcnn_inception_resnet_v2_voc0712_mtl': ('model92', _V0712, 'voc07_test'),
    'faster_rcnn_resnet101_voc07pp12_baseline': ('model31', _V07PP12, 'voc12_test'),
    'faster_rcnn_resnet101_voc07pp12_mtl': ('model32', _V07PP12, 'voc12_test'),
}

# Deliberate deviations: (original, setting) -> (value here, reason).
DEVIATIONS = {
    ('model22', 'lr'): ((1e-3, [(820000, 1e-4), (900000, 1e-5)]),
                        'the original file holds a constant 1e-5 (the last stage of a resumed '
                        'run); from ImageNet weights the baseline schedule of model21 is used'),
    ('model92', 'lr'): ((1e-3, [(160000, 1e-4), (205000, 1e-5)]),
                        'the original file holds a constant 1e-5 (the last stage of a resumed '
                        'run); its boundaries are kept with the usual 1e-3 start'),
}

# num_steps where the original had none (trained until stopped): a step after the last
# learning-rate drop that is reached; the boundaries themselves are kept as the original's.
NUM_STEPS = {
    'model12': 150000, 'model21': 950000, 'model22': 950000, 'model31': 310000,
    'model32': 305000, 'model42': 180000, 'model52': 300000, 'model61': 150000,
    'model62': 150000, 'model71': 350000, 'model72': 320000, 'model81': 600000,
    'model82': 700000, 'model91': 280000, 'model92': 280000,
}
