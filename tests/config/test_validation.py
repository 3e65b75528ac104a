"""validate(): consistency checks and the table of unsupported settings (support.RULES)."""
import pathlib
import warnings

import pytest

from mtl_ssl.config import config_util, support
from mtl_ssl.config.errors import ConfigError, UnsupportedConfigWarning
from mtl_ssl.config.validation import validate

import odapi_sample_configs as samples

REPO = pathlib.Path(__file__).resolve().parents[2]


def _pipeline(tmp_path, override=None, mtl_block=samples.ORIGINAL_MODEL12_MTL_BLOCK):
    pipeline = config_util.parse_pipeline_text(samples.mtl_config_text(tmp_path, mtl_block))
    if override:
        config_util.merge_text(override, pipeline, "--config_override")
    return pipeline


def _problems(pipeline, mode="train"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupportedConfigWarning)
        with pytest.raises(ConfigError) as info:
            validate(pipeline, mode=mode)
    return info.value.problems


def _ignored(pipeline, mode="train"):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        returned = validate(pipeline, mode=mode)
    messages = [str(w.message) for w in record if issubclass(w.category, UnsupportedConfigWarning)]
    assert messages == returned
    return messages


def test_reference_config_is_valid_and_only_warns_about_tpu_switches(tmp_path):
    ignored = _ignored(_pipeline(tmp_path))
    # sync_replicas, matmul crop, matmul gather, static shapes, static sampler (use_bfloat16
    # is implemented: mixed precision, docs/performance.md)
    assert len(ignored) == 5
    assert "use_bfloat16" not in "\n".join(ignored)
    joined = "\n".join(ignored)
    assert "use_static_shapes: true" in joined and "use_static_balanced_label_sampler: true" in joined


@pytest.mark.parametrize("override, field", [
    ("model { faster_rcnn { num_classes: 0 } }", "model.faster_rcnn.num_classes"),
    ("model { faster_rcnn { second_stage_batch_size: 301 } }", "second_stage_batch_size (301)"),
    ("model { faster_rcnn { initial_crop_size: 0 } }", "model.faster_rcnn.initial_crop_size"),
    ("model { mtl { refine_dropout_rate: 0 } }", "model.mtl.refine_dropout_rate"),
    ("model { mtl { shared_feature: 'everything' } }", "model.mtl.shared_feature"),
    ("model { mtl { aux_stage_input: 'crops' } }", "model.mtl.aux_stage_input"),
    ("model { mtl { num_context_levels: 1 } }", "model.mtl.num_context_levels"),
    ("model { mtl { num_windows: 0 } }", "model.mtl.num_windows"),
    ("model { mtl { refine_top_k: -1 } }", "model.mtl.refine_top_k: must be >= 0"),
    ("model { mtl { refine: true refine_top_k_in_training: true } }",
     "model.mtl.refine_top_k_in_training: needs refine_top_k >= 1"),
    ("model { mtl { window_crop_size: -1 } }", "model.mtl.window_crop_size: must be >= 0"),
    ("model { mtl { aux_stage_input: 'whole_feature_map' window_crop_size: 4 } }",
     "model.mtl.window_crop_size: aux_stage_input 'whole_feature_map' has no such crops"),
    ("model { faster_rcnn { maxpool_kernel_size: 2 } mtl { window_crop_size: 1 } }",
     "model.mtl.window_crop_size: 1 is smaller than model.faster_rcnn.maxpool_kernel_size (2)"),
    ("model { faster_rcnn { second_stage_box_predictor { rfcn_box_predictor { } } } "
     "mtl { window_crop_size: 4 } }", "model.mtl.window_crop_size: R-FCN has no such crops"),
    ("model { mtl { shared_feature: 'classifier_feature_maps' closeness_crop_size: 4 } }",
     "model.mtl.closeness_crop_size: with shared_feature 'classifier_feature_maps'"),
    ("model { mtl { closeness_crop_size: -2 } }", "model.mtl.closeness_crop_size: must be >= 0"),
    ("model { mtl { window_class_loss_weight: 0 } }", "window_class_loss_weight is 0"),
    ("model { mtl { closeness_loss_weight: -1 } }", "model.mtl.closeness_loss_weight: must be >= 0"),
    ("train_config { batch_size: 0 }", "train_config.batch_size"),
    ("train_config { fine_tune_checkpoint_type: '' }", "fine_tune_checkpoint_type is not"),
])
def test_inconsistent_values_are_errors_naming_the_field(tmp_path, override, field):
    problems = _problems(_pipeline(tmp_path, override))
    assert any(field in p for p in problems), problems


def test_missing_required_parts(tmp_path):
    pipeline = _pipeline(tmp_path)
    pipeline.model.faster_rcnn.ClearField("image_resizer")
    pipeline.model.faster_rcnn.feature_extractor.ClearField("type")
    pipeline.train_input_reader.tf_record_input_reader.ClearField("input_path")
    problems = _problems(pipeline)
    assert any(p.startswith("model.faster_rcnn.image_resizer: not set") for p in problems)
    assert any(p.startswith("model.faster_rcnn.feature_extractor.type: not set") for p in problems)
    assert any(p.startswith("train_input_reader.tf_record_input_reader.input_path") for p in problems)
    empty = config_util.parse_pipeline_text("")
    assert any(p.startswith("model: no model set") for p in _problems(empty, mode="export"))
    no_eval_input = _pipeline(tmp_path)
    no_eval_input.ClearField("eval_input_reader")
    assert _problems(no_eval_input, mode="eval") == ["eval_input_reader: missing"]


def test_mtl_task_needs_its_head_and_refine_needs_an_aux_task(tmp_path):
    block = """  mtl {
    window: true
    window_class_loss_weight: 1.0
    refine: true
    refined_classification_loss_weight: 1.0
  }
"""
    problems = _problems(_pipeline(tmp_path, mtl_block=block))
    assert problems == ["model.mtl.window is on but model.mtl.window_box_predictor is not set"]
    refine_only = "  mtl {\n    refine: true\n    refined_classification_loss_weight: 1.0\n  }\n"
    problems = _problems(_pipeline(tmp_path, mtl_block=refine_only))
    assert len(problems) == 1 and problems[0].startswith("model.mtl.refine needs window and/or closeness")
    # all tasks off: nothing to check
    _ignored(_pipeline(tmp_path, mtl_block="  mtl { }\n"))


@pytest.mark.parametrize("override, named", [
    ("train_config { data_augmentation_options { random_vertical_flip { } } }",
     "train_config.data_augmentation_options[1].random_vertical_flip"),
    ("model { faster_rcnn { hard_example_miner { } } }", "model.faster_rcnn.hard_example_miner"),
    ("model { faster_rcnn { feature_extractor { type: 'faster_rcnn_resnet101' } } }",
     "model.faster_rcnn.feature_extractor.type: 'faster_rcnn_resnet101'"),
    ("model { faster_rcnn { feature_extractor { fpn { } } } }", "model.faster_rcnn.feature_extractor.fpn"),
    ("model { faster_rcnn { first_stage_anchor_generator { ssd_anchor_generator { } } } }",
     "first_stage_anchor_generator.ssd_anchor_generator"),
    ("model { faster_rcnn { feature_extractor { override_base_feature_extractor_hyperparams: true } } }",
     "model.faster_rcnn.feature_extractor.override_base_feature_extractor_hyperparams: true"),
    ("model { faster_rcnn { feature_extractor { type: 'faster_rcnn_resnet50_fpn_keras' } "
     "second_stage_box_predictor { rfcn_box_predictor { } } } }",
     "rfcn_box_predictor with feature_extractor.type 'faster_rcnn_resnet50_fpn_keras'"),
    ("model { faster_rcnn { image_resizer { identity_resizer { } } } }", "image_resizer.identity_resizer"),
    ("model { faster_rcnn { second_stage_box_predictor { convolutional_box_predictor { } } } }",
     "second_stage_box_predictor.convolutional_box_predictor"),
    ("model { faster_rcnn { second_stage_box_predictor { mask_rcnn_box_predictor { predict_instance_masks: true } } } }",
     "predict_instance_masks: true"),
    ("model { mtl { window_box_predictor { trainable: false } } }", "model.mtl.window_box_predictor.trainable: false"),
    ("model { mtl { closeness_box_predictor { mask_rcnn_box_predictor { spatial_average: false } } } }",
     "model.mtl.closeness_box_predictor.mask_rcnn_box_predictor.spatial_average: false"),
    ("model { faster_rcnn { context_config { } } }", "model.faster_rcnn.context_config"),
    ("model { faster_rcnn { number_of_stages: 1 } }", "model.faster_rcnn.number_of_stages: 1"),
    ("model { faster_rcnn { second_stage_classification_loss { weighted_sigmoid { } } } }",
     "second_stage_classification_loss.weighted_sigmoid"),
    ("model { faster_rcnn { second_stage_post_processing { batch_non_max_suppression { soft_nms_sigma: 0.5 } } } }",
     "soft_nms_sigma: 0.5"),
    ("train_config { fine_tune_checkpoint_version: V1 }", "fine_tune_checkpoint_version: V1"),
    ("train_config { fine_tune_checkpoint_type: 'fine_tune' }", "fine_tune_checkpoint_type: 'fine_tune'"),
    ("train_config { load_all_detection_checkpoint_vars: true }", "load_all_detection_checkpoint_vars: true"),
    ("eval_config { metrics_set: 'oid_V2_detection_metrics' }", "eval_config.metrics_set: 'oid_V2_detection_metrics'"),
    ("eval_config { use_moving_averages: true }", "eval_config.use_moving_averages: true"),
    ("train_input_reader { load_instance_masks: true }", "train_input_reader.load_instance_masks: true"),
    ("graph_rewriter { quantization { } }", "graph_rewriter"),
])
def test_unsupported_settings_are_errors_naming_them(tmp_path, override, named):
    problems = _problems(_pipeline(tmp_path, override))
    hits = [p for p in problems if named in p]
    assert hits and all(p.startswith("unsupported setting ") for p in hits), problems


def test_unsupported_augmentation_error_lists_the_supported_ones(tmp_path):
    override = "train_config { data_augmentation_options { ssd_random_crop { } } }"
    (problem,) = _problems(_pipeline(tmp_path, override))
    for name in support.SUPPORTED_AUGMENTATIONS:
        assert name in problem
    ok = "".join(f"train_config {{ data_augmentation_options {{ {n} {{ }} }} }}\n"
                 for n in support.SUPPORTED_AUGMENTATIONS)
    _ignored(_pipeline(tmp_path, ok))


@pytest.mark.parametrize("override, named", [
    ("train_config { optimizer { use_moving_average: true } }", "use_moving_average"),
    ("train_config { from_detection_checkpoint: true }", "from_detection_checkpoint"),
    ("model { faster_rcnn { inplace_batchnorm_update: true } }", "inplace_batchnorm_update"),
    ("model { faster_rcnn { second_stage_post_processing { batch_non_max_suppression { use_combined_nms: true } } } }",
     "use_combined_nms"),
])
def test_ignored_settings_warn_naming_them(tmp_path, override, named):
    base = _ignored(_pipeline(tmp_path))
    ignored = _ignored(_pipeline(tmp_path, override))
    new = [m for m in ignored if m not in base]
    assert len(new) == 1 and named in new[0]


def test_eval_mode_ignores_the_training_part(tmp_path):
    pipeline = _pipeline(tmp_path, "train_config { data_augmentation_options { random_vertical_flip { } } }")
    pipeline.train_input_reader.tf_record_input_reader.input_path[0] = "PATH_TO_BE_CONFIGURED/x"
    assert len(_problems(pipeline, mode="train")) == 2
    _ignored(pipeline, mode="eval")
    with pytest.raises(ValueError, match="mode"):
        validate(pipeline, mode="serve")


def test_docs_table_matches_support_rules():
    doc = (REPO / "docs" / "config_support.md").read_text()
    for row in support.markdown_rows():
        assert row in doc, f"docs/config_support.md lacks the row: {row}"
    for name in support.SUPPORTED_AUGMENTATIONS + support.SUPPORTED_FEATURE_EXTRACTORS:
        assert f"`{name}`" in doc
