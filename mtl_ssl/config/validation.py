"""Semantic checks of a parsed pipeline config (after syntax, which config_util checks).

`validate(configs)` raises ConfigError listing every problem found (each names its field),
warns (UnsupportedConfigWarning) about settings that are ignored (see support.RULES) and
(ConfigAdviceWarning) about settings that run but cannot work as meant.
"""
import warnings

from google.protobuf import descriptor

from mtl_ssl.config import config_util, support
from mtl_ssl.config.errors import ConfigAdviceWarning, ConfigError, UnsupportedConfigWarning

PLACEHOLDER = "PATH_TO_BE_CONFIGURED"
MODES = ("train", "eval", "export")
SHARED_FEATURES = ("proposal_feature_maps", "classifier_feature_maps")
AUX_STAGE_INPUTS = ("roi_crops", "whole_feature_map")

_STRING = descriptor.FieldDescriptor.TYPE_STRING
_MESSAGE = descriptor.FieldDescriptor.TYPE_MESSAGE


def _is_repeated(field):
    # protobuf >= 5.28 has is_repeated; FieldDescriptor.label is gone in protobuf 7
    if hasattr(field, "is_repeated"):
        return field.is_repeated
    return field.label == descriptor.FieldDescriptor.LABEL_REPEATED


def _placeholder_fields(message, path=""):
    """Dotted paths of every string field (at any depth) that still holds PATH_TO_BE_CONFIGURED."""
    found = []
    for field, value in message.ListFields():
        name = f"{path}.{field.name}" if path else field.name
        repeated = _is_repeated(field)
        if field.type == _MESSAGE:
            if field.message_type.GetOptions().map_entry:
                items = [(f"{name}[{k!r}]", v) for k, v in value.items()]
                found += [n for n, v in items if isinstance(v, str) and PLACEHOLDER in v]
                found += [f for n, v in items if hasattr(v, "ListFields") for f in _placeholder_fields(v, n)]
            elif repeated:
                for i, item in enumerate(value):
                    found += _placeholder_fields(item, f"{name}[{i}]")
            else:
                found += _placeholder_fields(value, name)
        elif field.type == _STRING:
            values = list(value) if repeated else [value]
            for i, text in enumerate(values):
                if PLACEHOLDER in text:
                    found.append(f"{name}[{i}]" if repeated else name)
    return found


def _check_model(model, errors):
    kind = model.WhichOneof("model")
    if kind is None:
        errors.append("model: no model set; write model { faster_rcnn { ... } }")
        return
    if kind != "faster_rcnn":
        return  # reported by the support table
    fr = model.faster_rcnn
    path = "model.faster_rcnn"
    if fr.num_classes <= 0:
        errors.append(f"{path}.num_classes: must be > 0 (got {fr.num_classes})")
    if not fr.HasField("image_resizer") or fr.image_resizer.WhichOneof("image_resizer_oneof") is None:
        errors.append(f"{path}.image_resizer: not set (e.g. keep_aspect_ratio_resizer {{ }})")
    if not fr.feature_extractor.type:
        errors.append(f"{path}.feature_extractor.type: not set (one of "
                      + ", ".join(support.SUPPORTED_FEATURE_EXTRACTORS) + ")")
    if fr.first_stage_anchor_generator.WhichOneof("anchor_generator_oneof") is None:
        errors.append(f"{path}.first_stage_anchor_generator: not set (grid_anchor_generator {{ ... }})")
    if fr.second_stage_box_predictor.WhichOneof("box_predictor_oneof") is None:
        errors.append(f"{path}.second_stage_box_predictor: not set (mask_rcnn_box_predictor {{ ... }})")
    is_rfcn = fr.second_stage_box_predictor.WhichOneof("box_predictor_oneof") == "rfcn_box_predictor"
    if not is_rfcn:
        for name in ("initial_crop_size", "maxpool_kernel_size", "maxpool_stride"):
            if getattr(fr, name) <= 0:
                errors.append(f"{path}.{name}: must be > 0 for Faster R-CNN (got {getattr(fr, name)})")
    if fr.second_stage_batch_size > fr.first_stage_max_proposals:
        errors.append(f"{path}.second_stage_batch_size ({fr.second_stage_batch_size}) must not exceed "
                      f"first_stage_max_proposals ({fr.first_stage_max_proposals})")
    for name in ("first_stage_positive_balance_fraction", "second_stage_balance_fraction"):
        if not 0.0 < getattr(fr, name) <= 1.0:
            errors.append(f"{path}.{name}: must be in (0, 1] (got {getattr(fr, name):g})")


def _check_mtl(model, errors):
    if not model.HasField("mtl"):
        return
    mtl = model.mtl
    path = "model.mtl"
    tasks = {"window": "window_class_loss_weight", "closeness": "closeness_loss_weight",
             "edgemask": "edgemask_loss_weight", "refine": "refined_classification_loss_weight"}
    for task, weight in tasks.items():
        value = getattr(mtl, weight)
        if value < 0:
            errors.append(f"{path}.{weight}: must be >= 0 (got {value:g})")
        if getattr(mtl, task) and value == 0:
            errors.append(f"{path}.{task} is on but {path}.{weight} is 0, so that head would never be "
                          f"trained; set a weight (the paper: window 1.0, closeness 0.3, edgemask 1.0, "
                          f"refined 1.0)")
    predictors = {"window": "window_box_predictor", "closeness": "closeness_box_predictor",
                  "edgemask": "edgemask_predictor"}
    for task, predictor in predictors.items():
        if getattr(mtl, task) and not mtl.HasField(predictor):
            errors.append(f"{path}.{task} is on but {path}.{predictor} is not set")
    if mtl.refine and not (mtl.window or mtl.closeness):
        errors.append(f"{path}.refine needs window and/or closeness: the refiner's inputs are the window "
                      f"head's logits at the context boxes and the closeness logits")
    if mtl.refine_num_fc_layers < 0:
        errors.append(f"{path}.refine_num_fc_layers: must be >= 0 (got {mtl.refine_num_fc_layers})")
    if not 0.0 < mtl.refine_dropout_rate <= 1.0:
        errors.append(f"{path}.refine_dropout_rate: a keep probability in (0, 1] (got {mtl.refine_dropout_rate:g})")
    if mtl.shared_feature not in SHARED_FEATURES:
        errors.append(f"{path}.shared_feature: '{mtl.shared_feature}' is not one of " + ", ".join(SHARED_FEATURES))
    if mtl.aux_stage_input not in AUX_STAGE_INPUTS:
        errors.append(f"{path}.aux_stage_input: '{mtl.aux_stage_input}' is not one of " + ", ".join(AUX_STAGE_INPUTS))
    for name, minimum in (("num_windows", 1), ("window_min_size", 1), ("foreground_grid_size", 1),
                          ("num_context_levels", 2), ("refine_top_k", 0),
                          ("train_every_n_steps", 1)):
        if getattr(mtl, name) < minimum:
            errors.append(f"{path}.{name}: must be >= {minimum} (got {getattr(mtl, name)})")
    if mtl.refine_top_k_in_training and mtl.refine_top_k < 1:
        errors.append(f"{path}.refine_top_k_in_training: needs refine_top_k >= 1 (got {mtl.refine_top_k})")
    for field in ("window_crop_size", "closeness_crop_size"):
        _check_aux_crop_size(model, mtl, path, field, errors)
    if mtl.HasField("edgemask_predictor") and mtl.edgemask_predictor.kernel_size < 1:
        errors.append(f"{path}.edgemask_predictor.kernel_size: must be >= 1")


def _check_aux_crop_size(model, mtl, path, field, errors):
    """window / closeness_crop_size size crops: only the Faster R-CNN roi_crops path has them."""
    size = getattr(mtl, field)
    if size == 0:
        return
    name = f"{path}.{field}"
    if size < 0:
        errors.append(f"{name}: must be >= 0 (got {size}; 0 = the detector's initial_crop_size)")
        return
    if model.WhichOneof("model") != "faster_rcnn":
        return
    fr = model.faster_rcnn
    if fr.second_stage_box_predictor.WhichOneof("box_predictor_oneof") == "rfcn_box_predictor":
        errors.append(f"{name}: R-FCN has no such crops (its auxiliary heads pool score maps of "
                      f"the whole feature map); remove it")
    elif mtl.aux_stage_input != "roi_crops":
        errors.append(f"{name}: aux_stage_input '{mtl.aux_stage_input}' has no such crops; "
                      f"use it with 'roi_crops' or remove it")
    elif field == "closeness_crop_size" and mtl.shared_feature != "proposal_feature_maps":
        errors.append(f"{name}: with shared_feature '{mtl.shared_feature}' the closeness head "
                      f"reuses the box classifier's features and crops nothing; remove it")
    elif size < fr.maxpool_kernel_size:
        errors.append(f"{name}: {size} is smaller than model.faster_rcnn.maxpool_kernel_size "
                      f"({fr.maxpool_kernel_size}), which pools the crops after cropping")


def _advice(model):
    """Settings that run but cannot work as meant (ConfigAdviceWarning, not errors)."""
    advice = []
    if (model.WhichOneof("model") == "faster_rcnn" and model.faster_rcnn.num_classes == 1
            and model.HasField("mtl") and model.mtl.closeness):
        advice.append(
            "model.mtl.closeness is on but num_classes is 1: the closeness label of a box is "
            "its closeness to objects of OTHER classes, so with one class every label is the "
            "constant 'no other class' and the closeness head (and the refiner's closeness "
            "input) learns nothing. Set closeness: false (and refine: false unless window is "
            "on); see docs/getting_started.md \"Small, dense objects and one-class data\".")
    return advice


def _check_reader(reader, path, errors):
    if reader.WhichOneof("input_reader") != "tf_record_input_reader":
        if reader.WhichOneof("input_reader") is None:
            errors.append(f"{path}.tf_record_input_reader: not set (input_path: \"...tfrecord\")")
        return
    paths = reader.tf_record_input_reader.input_path
    if not paths or not all(paths):
        errors.append(f"{path}.tf_record_input_reader.input_path: not set (or empty)")


def _check_train(pipeline, errors):
    tc = pipeline.train_config
    if tc.batch_size <= 0:
        errors.append(f"train_config.batch_size: must be > 0 (got {tc.batch_size})")
    if tc.gradient_clipping_by_norm < 0:
        errors.append("train_config.gradient_clipping_by_norm: must be >= 0")
    if tc.fine_tune_checkpoint and not tc.fine_tune_checkpoint_type:
        errors.append("train_config.fine_tune_checkpoint is set but fine_tune_checkpoint_type is not "
                      "('classification', 'detection' or 'full')")
    if not pipeline.HasField("train_input_reader"):
        errors.append("train_input_reader: missing")
    else:
        _check_reader(pipeline.train_input_reader, "train_input_reader", errors)


def _relevant_part(configs, mode):
    """The part of the pipeline that `mode` uses: export -> model; eval -> + eval; train -> all."""
    if isinstance(configs, dict):
        pipeline = config_util.create_pipeline_proto_from_configs(configs)
    else:
        pipeline = type(configs)()
        pipeline.CopyFrom(configs)
    if mode in ("export", "eval"):
        for name in ("train_config", "train_input_reader", "graph_rewriter"):
            pipeline.ClearField(name)
    if mode == "export":
        pipeline.ClearField("eval_config")
        pipeline.ClearField("eval_input_reader")
    return pipeline


def validate(configs, mode="train", source=None):
    """Check a configs dict (or TrainEvalPipelineConfig) for `mode` in 'train', 'eval', 'export'.

    Only the part the mode uses is checked ('export': model; 'eval': model, eval_config and
    eval_input_reader; 'train': everything). Raises ConfigError with every error found (one
    per line, each naming its field; also as the list `error.problems`).
    Emits one UnsupportedConfigWarning per ignored setting and returns their messages.
    `source` (e.g. the file path) prefixes the error message.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    pipeline = _relevant_part(configs, mode)
    errors = []
    _check_model(pipeline.model, errors)
    _check_mtl(pipeline.model, errors)
    if mode == "train":
        _check_train(pipeline, errors)
    if mode == "eval" and not len(pipeline.eval_input_reader):
        errors.append("eval_input_reader: missing")
    for i, reader in enumerate(pipeline.eval_input_reader):
        _check_reader(reader, f"eval_input_reader[{i}]", errors)
    for field in _placeholder_fields(pipeline):
        errors.append(f"{field}: still contains {PLACEHOLDER}; replace it with a real path")
    unsupported, ignored = support.check(pipeline)
    errors += [f"unsupported setting {text}" for text in unsupported]
    if errors:
        header = f"{len(errors)} problem(s) in the pipeline config (see docs/config_support.md):\n  "
        error = ConfigError(header + "\n  ".join(errors), source=source)
        error.problems = list(errors)
        raise error
    for text in ignored:
        warnings.warn(f"{source + ': ' if source else ''}{text}", UnsupportedConfigWarning, stacklevel=2)
    for text in _advice(pipeline.model):
        warnings.warn(f"{source + ': ' if source else ''}{text}", ConfigAdviceWarning, stacklevel=2)
    return ignored


def load_and_validate(pipeline_config_path, config_override=None, mode="train"):
    """get_configs_from_pipeline_file + validate, with errors naming the file."""
    configs = config_util.get_configs_from_pipeline_file(pipeline_config_path, config_override)
    validate(configs, mode=mode, source=str(pipeline_config_path))
    return configs
