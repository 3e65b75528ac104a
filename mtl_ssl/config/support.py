"""THE table of config settings that parse but that mtl-ssl does not implement as written.

Every OD API pipeline.config parses (the protos keep all OD API fields), but a parsed
setting must never change behaviour silently: each row here either raises (ConfigError)
or warns (UnsupportedConfigWarning) and says what mtl-ssl does. docs/config_support.md
shows this same table (tests/config/test_config_util.py checks the two agree).

To support a setting: implement it, then delete its row (and the doc line). To support
more augmentations / backbones / metrics: edit the tuples below.
"""
import dataclasses
from typing import Callable, List

# Augmentations (PreprocessingStep oneof names) the input pipeline implements.
SUPPORTED_AUGMENTATIONS = (
    "random_horizontal_flip",
    "random_scale_crop_and_pad_to_square",
    "random_crop_image",
    "random_adjust_brightness",
    "random_adjust_contrast",
    "random_adjust_hue",
    "random_adjust_saturation",
    "random_rgb_to_gray",
)

# FasterRcnnFeatureExtractor.type values known to mtl_ssl.backbones (docs/architecture.md §5).
SUPPORTED_FEATURE_EXTRACTORS = (
    "faster_rcnn_resnet50_keras",
    "faster_rcnn_resnet101_keras",
    "faster_rcnn_resnet152_keras",
    "faster_rcnn_inception_resnet_v2_keras",
    "faster_rcnn_mobilenet_v1_keras",
    "faster_rcnn_mobilenet_v2_keras",
    "faster_rcnn_resnet50_fpn_keras",
    "faster_rcnn_resnet101_fpn_keras",
    "faster_rcnn_resnet152_fpn_keras",
    "faster_rcnn_mobilenet_v1_fpn_keras",
)
FPN_FEATURE_EXTRACTORS = SUPPORTED_FEATURE_EXTRACTORS[-4:]

# eval_config.metrics_set values mtl_ssl.evaluation implements.
SUPPORTED_METRICS_SETS = ("coco_detection_metrics", "pascal_voc_detection_metrics", "tide_error_metrics")

SUPPORTED_IMAGE_RESIZERS = ("keep_aspect_ratio_resizer", "fixed_shape_resizer")
SUPPORTED_BOX_PREDICTORS = ("mask_rcnn_box_predictor", "rfcn_box_predictor")
SUPPORTED_CHECKPOINT_TYPES = ("", "classification", "detection", "full")

# Unknown-field hints: fields of other config dialects (key: "Message.field").
_TF1_MTL_SSL = "a field of the original TF1 mtl-ssl config that the OD API TF2 format does not have"
FOREIGN_FIELD_HINTS = {
    "DetectionModel.ssd": "SSD is not supported: mtl-ssl builds only faster_rcnn models "
    "(Faster R-CNN and R-FCN); see docs/config_support.md",
    "DetectionModel.center_net": "CenterNet is not supported: mtl-ssl builds only faster_rcnn "
    "models (Faster R-CNN and R-FCN); see docs/config_support.md",
    "DetectionModel.init_file": _TF1_MTL_SSL + "; use train_config.fine_tune_checkpoint",
    "FasterRcnnFeatureExtractor.trainable": _TF1_MTL_SSL + "; use train_config.freeze_variables",
    "FasterRcnnFeatureExtractor.weight_decay": _TF1_MTL_SSL
    + "; remove it (regularizers are set in the *_hyperparams blocks)",
    "FasterRcnn.first_stage_box_predictor_trainable": _TF1_MTL_SSL + "; remove it",
    "FasterRcnn.first_stage_only": "TF1 OD API field; use number_of_stages",
    "TrainConfig.save_interval_secs": _TF1_MTL_SSL + "; use model_main_tf2 --checkpoint_every_n",
    "EvalConfig.submission_format_output": _TF1_MTL_SSL + "; remove it",
    "EvalConfig.calc_loss": _TF1_MTL_SSL + "; remove it",
    "MaskRCNNBoxPredictor.box_initializer": _TF1_MTL_SSL + "; remove it",
}


@dataclasses.dataclass(frozen=True)
class Rule:
    """One unsupported setting: `find(pipeline_config)` returns the offending 'field = value's."""

    field: str
    action: str  # "error" or "warn"
    what_happens: str
    find: Callable[[object], List[str]]


def _frcnn(p):
    return p.model.faster_rcnn


def _set_true(message, path, *names):
    return [f"{path}.{name}: true" for name in names if getattr(message, name)]


def _has(message, path, name):
    return [f"{path}.{name}"] if message.HasField(name) else []


def _mtl_box_predictors(p):
    """(path, BoxPredictor) pairs whose options must all be supported."""
    pairs = [("model.faster_rcnn.second_stage_box_predictor", _frcnn(p).second_stage_box_predictor)]
    mtl = p.model.mtl
    for name in ("window_box_predictor", "closeness_box_predictor"):
        if mtl.HasField(name):
            pairs.append((f"model.mtl.{name}", getattr(mtl, name)))
    return pairs


def _input_readers(p):
    readers = [("train_input_reader", p.train_input_reader)] if p.HasField("train_input_reader") else []
    readers += [(f"eval_input_reader[{i}]", r) for i, r in enumerate(p.eval_input_reader)]
    return readers


def _find_augmentations(p):
    found = []
    for i, step in enumerate(p.train_config.data_augmentation_options):
        name = step.WhichOneof("preprocessing_step")
        if name is not None and name not in SUPPORTED_AUGMENTATIONS:
            found.append(f"train_config.data_augmentation_options[{i}].{name}")
    return found


def _find_trainable_false(p):
    found = [f"{path}.trainable: false" for path, bp in _mtl_box_predictors(p) if not bp.trainable]
    mtl = p.model.mtl
    if mtl.HasField("edgemask_predictor") and not mtl.edgemask_predictor.trainable:
        found.append("model.mtl.edgemask_predictor.trainable: false")
    return found


def _find_no_spatial_average(p):
    return [
        f"{path}.mask_rcnn_box_predictor.spatial_average: false"
        for path, bp in _mtl_box_predictors(p)
        if bp.WhichOneof("box_predictor_oneof") == "mask_rcnn_box_predictor"
        and not bp.mask_rcnn_box_predictor.spatial_average
    ]


def _find_mask_heads(p):
    bp = _frcnn(p).second_stage_box_predictor.mask_rcnn_box_predictor
    return _set_true(
        bp, "model.faster_rcnn.second_stage_box_predictor.mask_rcnn_box_predictor",
        "predict_instance_masks", "predict_keypoints",
    )


def _find_box_predictor_type(p):
    found = []
    for path, bp in _mtl_box_predictors(p):
        kind = bp.WhichOneof("box_predictor_oneof")
        if kind is not None and kind not in SUPPORTED_BOX_PREDICTORS:
            found.append(f"{path}.{kind}")
    return found


def _find_resizer(p):
    resizer = _frcnn(p).image_resizer
    kind = resizer.WhichOneof("image_resizer_oneof")
    path = "model.faster_rcnn.image_resizer"
    if kind is None:
        return []
    if kind not in SUPPORTED_IMAGE_RESIZERS:
        return [f"{path}.{kind}"]
    sub = getattr(resizer, kind)
    found = _set_true(sub, f"{path}.{kind}", "convert_to_grayscale")
    if kind == "keep_aspect_ratio_resizer" and len(sub.per_channel_pad_value):
        found.append(f"{path}.{kind}.per_channel_pad_value")
    return found


def _find_classification_loss(p):
    fr = _frcnn(p)
    if not fr.HasField("second_stage_classification_loss"):
        return []
    loss = fr.second_stage_classification_loss
    kind = loss.WhichOneof("classification_loss")
    path = "model.faster_rcnn.second_stage_classification_loss"
    if kind not in (None, "weighted_softmax"):
        return [f"{path}.{kind}"]
    if kind == "weighted_softmax" and loss.weighted_softmax.logit_scale != 1.0:
        return [f"{path}.weighted_softmax.logit_scale: {loss.weighted_softmax.logit_scale:g}"]
    return []


def _find_post_processing(p):
    pp = _frcnn(p).second_stage_post_processing
    nms = pp.batch_non_max_suppression
    path = "model.faster_rcnn.second_stage_post_processing"
    found = _set_true(nms, f"{path}.batch_non_max_suppression", "use_class_agnostic_nms")
    if nms.soft_nms_sigma > 0:
        found.append(f"{path}.batch_non_max_suppression.soft_nms_sigma: {nms.soft_nms_sigma:g}")
    if pp.logit_scale != 1.0:
        found.append(f"{path}.logit_scale: {pp.logit_scale:g}")
    return found + _has(pp, path, "calibration_config")


def _find_nms_implementation(p):
    nms = _frcnn(p).second_stage_post_processing.batch_non_max_suppression
    return _set_true(
        nms, "model.faster_rcnn.second_stage_post_processing.batch_non_max_suppression",
        "use_static_shapes", "use_partitioned_nms", "use_combined_nms", "use_hard_nms", "use_cpu_nms",
    )


def _find_feature_extractor_type(p):
    kind = _frcnn(p).feature_extractor.type
    if kind and kind not in SUPPORTED_FEATURE_EXTRACTORS:
        return [f"model.faster_rcnn.feature_extractor.type: '{kind}'"]
    return []


def _find_fpn_fields_on_c4(p):
    fe = _frcnn(p).feature_extractor
    if fe.type in FPN_FEATURE_EXTRACTORS:
        return []
    path = "model.faster_rcnn.feature_extractor"
    return _has(fe, path, "fpn") + _set_true(fe, path, "override_base_feature_extractor_hyperparams")


def _find_bfloat16_on_fpn(p):
    if p.model.HasField("faster_rcnn") and _frcnn(p).feature_extractor.type in FPN_FEATURE_EXTRACTORS:
        return _set_true(p.train_config, "train_config", "use_bfloat16")
    return []


def _find_fpn_with_rfcn(p):
    fr = _frcnn(p)
    if (fr.feature_extractor.type in FPN_FEATURE_EXTRACTORS
            and fr.second_stage_box_predictor.WhichOneof("box_predictor_oneof") == "rfcn_box_predictor"):
        return ["model.faster_rcnn.second_stage_box_predictor.rfcn_box_predictor with "
                f"feature_extractor.type '{fr.feature_extractor.type}'"]
    return []


def _find_checkpoint_type(p):
    kind = p.train_config.fine_tune_checkpoint_type
    return [] if kind in SUPPORTED_CHECKPOINT_TYPES else [f"train_config.fine_tune_checkpoint_type: '{kind}'"]


def _find_checkpoint_v1(p):
    tc = p.train_config
    if tc.fine_tune_checkpoint and tc.fine_tune_checkpoint_version != 2:
        return ["train_config.fine_tune_checkpoint_version: V1 (the default)"]
    return []


def _find_metrics(p):
    return [
        f"eval_config.metrics_set: '{m}'" for m in p.eval_config.metrics_set if m not in SUPPORTED_METRICS_SETS
    ]


def _find_input_reader_options(p):
    found = []
    for path, reader in _input_readers(p):
        found += _has(reader, path, "external_input_reader")
        if reader.input_type == 2:
            found.append(f"{path}.input_type: TF_SEQUENCE_EXAMPLE")
        found += _set_true(reader, path, "load_instance_masks", "load_context_features", "load_dense_pose")
        if reader.num_additional_channels:
            found.append(f"{path}.num_additional_channels: {reader.num_additional_channels}")
    return found


def _find_moving_average(p):
    opt = p.train_config.optimizer
    if p.train_config.HasField("optimizer") and opt.use_moving_average:
        return ["train_config.optimizer.use_moving_average: true (the default)"]
    return []


def _frcnn_true(*names):
    return lambda p: _set_true(_frcnn(p), "model.faster_rcnn", *names)


def _frcnn_has(name):
    return lambda p: _has(_frcnn(p), "model.faster_rcnn", name)


_FRCNN_ONLY = "mtl-ssl implements faster_rcnn (Faster R-CNN and R-FCN) only."
_SAME_RESULT = "ignored: an implementation choice of the OD API (mostly for TPUs); mtl-ssl's own op gives the same result."

RULES = (
    Rule("model.experimental_model", "error", _FRCNN_ONLY, lambda p: _has(p.model, "model", "experimental_model")),
    Rule("model.faster_rcnn.number_of_stages", "error", "only 2 (RPN + box classifier) is implemented.",
         lambda p: [f"model.faster_rcnn.number_of_stages: {_frcnn(p).number_of_stages}"]
         if p.model.HasField("faster_rcnn") and _frcnn(p).number_of_stages != 2 else []),
    Rule("model.faster_rcnn.feature_extractor.type", "error",
         "supported types: " + ", ".join(SUPPORTED_FEATURE_EXTRACTORS) + ".", _find_feature_extractor_type),
    Rule("model.faster_rcnn.feature_extractor.fpn / override_base_feature_extractor_hyperparams", "error",
         "only the FPN types (" + ", ".join(FPN_FEATURE_EXTRACTORS) + ") use them; the C4 backbones "
         "keep their own hyperparameters.", _find_fpn_fields_on_c4),
    Rule("rfcn_box_predictor with an FPN feature extractor", "error",
         "R-FCN runs on one stride-16 map (as in the OD API); use mask_rcnn_box_predictor with FPN.",
         _find_fpn_with_rfcn),
    Rule("model.faster_rcnn.first_stage_anchor_generator", "error",
         "only grid_anchor_generator (C4) and multiscale_anchor_generator (FPN) are implemented.",
         lambda p: [f"model.faster_rcnn.first_stage_anchor_generator.{k}"
                    for k in [_frcnn(p).first_stage_anchor_generator.WhichOneof("anchor_generator_oneof")]
                    if k not in (None, "grid_anchor_generator", "multiscale_anchor_generator")]),
    Rule("model.faster_rcnn.image_resizer", "error",
         "only keep_aspect_ratio_resizer and fixed_shape_resizer are implemented, without "
         "convert_to_grayscale or per_channel_pad_value.", _find_resizer),
    Rule("model.faster_rcnn.second_stage_box_predictor (and model.mtl.*_box_predictor)", "error",
         "only mask_rcnn_box_predictor (Faster R-CNN) and rfcn_box_predictor (R-FCN) are implemented.",
         _find_box_predictor_type),
    Rule("mask_rcnn_box_predictor.predict_instance_masks / predict_keypoints", "error",
         "mask and keypoint heads are not implemented.", _find_mask_heads),
    Rule("BoxPredictor.trainable / MaskPredictor.trainable: false", "error",
         "freezing a head this way is not implemented; use train_config.freeze_variables.",
         _find_trainable_false),
    Rule("mask_rcnn_box_predictor.spatial_average: false", "error",
         "the box heads always average the RoI features spatially (the OD API TF2 behaviour).",
         _find_no_spatial_average),
    Rule("model.faster_rcnn.hard_example_miner", "error",
         "online hard example mining is not implemented; remove it and the box classifier samples "
         "second_stage_batch_size RoIs per image with the balanced sampler "
         "(second_stage_balance_fraction positives).", _frcnn_has("hard_example_miner")),
    Rule("model.faster_rcnn.context_config", "error", "Context R-CNN is not implemented.",
         _frcnn_has("context_config")),
    Rule("model.faster_rcnn.output_final_box_features / output_final_box_rpn_features", "error",
         "not implemented.", _frcnn_true("output_final_box_features", "output_final_box_rpn_features")),
    Rule("model.faster_rcnn.second_stage_classification_loss", "error",
         "only weighted_softmax with logit_scale 1 (the default) is implemented.", _find_classification_loss),
    Rule("model.faster_rcnn.second_stage_post_processing", "error",
         "soft NMS, class-agnostic NMS, calibration and logit_scale other than 1 are not implemented.",
         _find_post_processing),
    Rule("train_config.data_augmentation_options", "error",
         "supported augmentations: " + ", ".join(SUPPORTED_AUGMENTATIONS) + ".", _find_augmentations),
    Rule("train_config.load_all_detection_checkpoint_vars", "error",
         "TF1 option (the OD API TF2 rejects it too); use fine_tune_checkpoint_type: 'full'.",
         lambda p: _set_true(p.train_config, "train_config", "load_all_detection_checkpoint_vars")),
    Rule("train_config.fine_tune_checkpoint_type", "error",
         "must be one of 'classification', 'detection', 'full'.", _find_checkpoint_type),
    Rule("train_config.fine_tune_checkpoint_version", "error",
         "only V2 (TF2 object-based) checkpoints are loaded; set fine_tune_checkpoint_version: V2.",
         _find_checkpoint_v1),
    Rule("train_config.bias_grad_multiplier / merge_multiple_label_boxes / use_multiclass_scores", "error",
         "not implemented.",
         lambda p: ([f"train_config.bias_grad_multiplier: {p.train_config.bias_grad_multiplier:g}"]
                    if p.train_config.bias_grad_multiplier else [])
         + _set_true(p.train_config, "train_config", "merge_multiple_label_boxes", "use_multiclass_scores")),
    Rule("eval_config.metrics_set", "error",
         "supported metrics sets: " + ", ".join(SUPPORTED_METRICS_SETS) + ".", _find_metrics),
    Rule("eval_config.use_moving_averages / parameterized_metric", "error", "not implemented.",
         lambda p: _set_true(p.eval_config, "eval_config", "use_moving_averages")
         + [f"eval_config.parameterized_metric[{i}]" for i in range(len(p.eval_config.parameterized_metric))]),
    Rule("graph_rewriter", "error", "TF1 quantization rewriting is not implemented.",
         lambda p: ["graph_rewriter"] if p.HasField("graph_rewriter") else []),
    Rule("*_input_reader: external_input_reader, TF_SEQUENCE_EXAMPLE, masks, context, extra channels", "error",
         "the input pipeline reads tf.Example records with images, boxes and classes only.",
         _find_input_reader_options),
    Rule("train_config.sync_replicas", "warn",
         "ignored: tf.distribute training is synchronous anyway (replicas_to_aggregate and "
         "startup_delay_steps are ignored too).",
         lambda p: _set_true(p.train_config, "train_config", "sync_replicas")),
    Rule("train_config.optimizer.use_moving_average", "warn",
         "ignored: no moving average of the weights is kept; set use_moving_average: false.",
         _find_moving_average),
    Rule("train_config.from_detection_checkpoint", "warn",
         "deprecated and ignored: set fine_tune_checkpoint_type: 'detection' instead.",
         lambda p: _set_true(p.train_config, "train_config", "from_detection_checkpoint")),
    Rule("train_config.use_bfloat16 with an FPN feature extractor", "warn",
         "ignored: mixed precision is implemented for the C4 feature extractors; FPN trains in "
         "float32 (the OD API's FPN sample configs set it for TPUs).", _find_bfloat16_on_fpn),
    Rule("train_config.summarize_gradients", "warn", "ignored: gradient summaries are not written.",
         lambda p: _set_true(p.train_config, "train_config", "summarize_gradients")),
    Rule("model.faster_rcnn.use_matmul_crop_and_resize", "warn",
         "ignored: tf.image.crop_and_resize computes the same bilinear crops.",
         _frcnn_true("use_matmul_crop_and_resize")),
    Rule("model.faster_rcnn.use_matmul_gather_in_matcher", "warn",
         "ignored: tf.gather gives the same matched targets.", _frcnn_true("use_matmul_gather_in_matcher")),
    Rule("model.faster_rcnn.use_static_shapes / use_static_shapes_for_eval / use_static_balanced_label_sampler",
         "warn", "ignored: static shapes come from the resizer (fixed_shape_resizer, or "
         "pad_to_max_dimension: true) and one balanced sampler serves both.",
         _frcnn_true("use_static_shapes", "use_static_shapes_for_eval", "use_static_balanced_label_sampler")),
    Rule("model.faster_rcnn.inplace_batchnorm_update", "warn",
         "ignored: Keras batch normalization updates its own statistics (when trainable).",
         _frcnn_true("inplace_batchnorm_update")),
    Rule("model.faster_rcnn.use_combined_nms_in_first_stage / return_raw_detections_during_predict",
         "warn", _SAME_RESULT + " (raw detections are always returned by postprocess).",
         _frcnn_true("use_combined_nms_in_first_stage", "return_raw_detections_during_predict")),
    Rule("batch_non_max_suppression.use_static_shapes / use_partitioned_nms / use_combined_nms / "
         "use_hard_nms / use_cpu_nms", "warn", _SAME_RESULT, _find_nms_implementation),
)


def check(pipeline_config):
    """Apply RULES; returns (errors, warnings), each a list of 'field -> what happens' strings."""
    errors, warnings = [], []
    for rule in RULES:
        found = rule.find(pipeline_config) or []
        for item in found:
            text = f"{item}: {rule.what_happens}"
            (errors if rule.action == "error" else warnings).append(text)
    return errors, warnings


def markdown_rows():
    """The table rows as they appear in docs/config_support.md."""
    return [f"| `{rule.field}` | {rule.action} | {rule.what_happens} |" for rule in RULES]
