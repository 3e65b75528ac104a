"""Loading, override merging, saving and parse errors of pipeline configs."""
import pathlib
import warnings

import pytest

from mtl_ssl.config import config_util
from mtl_ssl.config.errors import ConfigError, UnsupportedConfigWarning
from mtl_ssl.config.validation import validate
from mtl_ssl.protos import pipeline_pb2, train_pb2

import odapi_sample_configs as samples

REPO = pathlib.Path(__file__).resolve().parents[2]
SHIPPED_CONFIGS = sorted((REPO / "pipeline_configs").glob("**/*.config"))


def _write(tmp_path, text, name="pipeline.config"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.skipif(not SHIPPED_CONFIGS, reason="pipeline_configs/ has no *.config files yet")
@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=[p.name for p in SHIPPED_CONFIGS])
def test_shipped_pipeline_configs_parse_and_validate(path, tmp_path):
    configs = config_util.get_configs_from_pipeline_file(path)
    assert configs["model"].WhichOneof("model") == "faster_rcnn"
    # templates keep the OD API placeholder for data/checkpoint paths: fill it in as a user would
    text = path.read_text().replace("PATH_TO_BE_CONFIGURED", str(tmp_path))
    filled = config_util.create_configs_from_pipeline_proto(config_util.parse_pipeline_text(text, str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupportedConfigWarning)
        validate(filled, source=str(path))


def test_odapi_tf2_sample_parses_unchanged(tmp_path):
    configs = config_util.get_configs_from_pipeline_file(_write(tmp_path, samples.ODAPI_FRCNN_R101_640_TPU8))
    fr = configs["model"].faster_rcnn
    assert fr.num_classes == 90
    assert fr.image_resizer.keep_aspect_ratio_resizer.pad_to_max_dimension
    assert fr.feature_extractor.type == "faster_rcnn_resnet101_keras"
    assert list(fr.first_stage_anchor_generator.grid_anchor_generator.scales) == [0.25, 0.5, 1.0, 2.0]
    assert fr.initial_crop_size == 14 and fr.maxpool_kernel_size == 2
    assert fr.second_stage_box_predictor.mask_rcnn_box_predictor.share_box_across_classes
    assert fr.use_static_shapes and fr.use_matmul_crop_and_resize and fr.clip_anchors_to_image
    assert fr.second_stage_post_processing.score_converter == fr.second_stage_post_processing.SOFTMAX
    tc = configs["train_config"]
    assert tc.batch_size == 64 and tc.sync_replicas and tc.use_bfloat16 and tc.num_steps == 25000
    cosine = tc.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate
    assert cosine.learning_rate_base == pytest.approx(0.04) and cosine.warmup_steps == 2000
    assert tc.fine_tune_checkpoint_version == train_pb2.V2
    assert tc.fine_tune_checkpoint_type == "classification"
    assert tc.data_augmentation_options[0].WhichOneof("preprocessing_step") == "random_horizontal_flip"
    assert list(configs["eval_config"].metrics_set) == ["coco_detection_metrics"]
    assert len(configs["eval_input_configs"]) == 1
    assert configs["eval_input_config"] is configs["eval_input_configs"][0]
    assert configs["eval_input_config"].num_epochs == 1


def test_odapi_sample_with_real_paths_validates_with_warnings(tmp_path):
    path = _write(tmp_path, samples.with_real_paths(samples.ODAPI_FRCNN_R101_640_TPU8, tmp_path))
    configs = config_util.get_configs_from_pipeline_file(path)
    with pytest.warns(UnsupportedConfigWarning) as record:
        ignored = validate(configs, source=str(path))
    messages = [str(w.message) for w in record]
    assert len(messages) == len(ignored)
    assert not any("use_bfloat16" in m for m in messages)  # implemented (mixed precision)
    for name in ("sync_replicas", "use_matmul_crop_and_resize", "use_static_shapes",
                 "use_matmul_gather_in_matcher", "use_static_balanced_label_sampler"):
        assert any(name in m for m in messages), name
    assert all(str(path) in m for m in messages)


def test_placeholder_paths_are_errors_naming_each_field(tmp_path):
    path = _write(tmp_path, samples.ODAPI_FRCNN_R101_640_TPU8)
    configs = config_util.get_configs_from_pipeline_file(path)
    with pytest.raises(ConfigError) as info:
        validate(configs, source=str(path))
    message = str(info.value)
    assert message.startswith(str(path))
    for field in ("train_config.fine_tune_checkpoint:", "train_input_reader.label_map_path:",
                  "train_input_reader.tf_record_input_reader.input_path[0]:",
                  "eval_input_reader[0].label_map_path:",
                  "eval_input_reader[0].tf_record_input_reader.input_path[0]:"):
        assert field in message
    assert "PATH_TO_BE_CONFIGURED" in message
    # export only needs the model, which has no paths (its TPU switches still warn)
    with pytest.warns(UnsupportedConfigWarning) as record:
        validate(configs, mode="export")
    assert any("use_matmul_crop_and_resize" in str(w.message) for w in record)


def test_original_model12_mtl_block_parses(tmp_path):
    path = _write(tmp_path, samples.mtl_config_text(tmp_path))
    configs = config_util.get_configs_from_pipeline_file(path)
    mtl = configs["model"].mtl
    assert configs["model"].HasField("mtl")
    assert (mtl.refine, mtl.window, mtl.closeness, mtl.edgemask) == (True, True, True, True)
    assert mtl.refined_classification_loss_weight == 1.0 and mtl.window_class_loss_weight == 1.0
    assert mtl.closeness_loss_weight == pytest.approx(0.3) and mtl.edgemask_loss_weight == 1.0
    assert mtl.refine_residue and mtl.refine_dropout_rate == 0.5 and mtl.refine_num_fc_layers == 0
    assert mtl.refiner_fc_hyperparams.op == mtl.refiner_fc_hyperparams.FC
    assert mtl.window_box_predictor.trainable
    assert mtl.window_box_predictor.mask_rcnn_box_predictor.spatial_average
    assert mtl.closeness_box_predictor.mask_rcnn_box_predictor.fc_hyperparams.regularizer \
        .l2_regularizer.weight == pytest.approx(0.001)
    assert mtl.edgemask_predictor.kernel_size == 1 and mtl.edgemask_predictor.trainable
    # fields the block leaves unset keep the original / new defaults
    assert mtl.shared_feature == "proposal_feature_maps" and mtl.global_closeness
    assert (mtl.num_windows, mtl.window_min_size, mtl.foreground_grid_size, mtl.num_context_levels) == (
        64, 32, 64, 5)
    assert not mtl.foreground_tanh and mtl.label_seed == 0
    with pytest.warns(UnsupportedConfigWarning):
        validate(configs)


def test_original_tf1_only_field_gives_line_and_hint(tmp_path):
    text = samples.mtl_config_text(tmp_path).replace(
        "    feature_extractor {\n      type: 'faster_rcnn_resnet101_keras'\n      batch_norm_trainable: true\n"
        "    }\n", samples.ORIGINAL_MODEL12_FEATURE_EXTRACTOR)
    path = _write(tmp_path, text)
    expected_line = [i + 1 for i, line in enumerate(text.splitlines())
                     if line == "      trainable: true"][-1]
    with pytest.raises(ConfigError) as info:
        config_util.get_configs_from_pipeline_file(path)
    error = info.value
    assert error.line == expected_line
    assert str(error).startswith(f"{path}:{expected_line}:")
    assert '"trainable"' in str(error) and "original TF1 mtl-ssl" in str(error)


@pytest.mark.parametrize("bad_line, expected", [
    ("    bogus_field: 3", 'no field named "bogus_field"'),
    ('    num_classes: "twenty"', "integer"),
    ("    num_classes: 2.5", "integer"),
    ("    use_static_shapes: maybe", "Expected \"true\" or \"false\""),
])
def test_unknown_field_or_wrong_type_names_file_and_line(tmp_path, bad_line, expected):
    lines = samples.ODAPI_FRCNN_R101_640_TPU8.splitlines()
    insert_at = lines.index("    num_classes: 90") + 1  # inside faster_rcnn { }
    lines.insert(insert_at, bad_line)
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        config_util.get_configs_from_pipeline_file(path)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.source == str(path) and error.line == insert_at + 1
    assert str(error).startswith(f"{path}:{insert_at + 1}:{error.column}:")
    assert expected in str(error)


def test_ssd_and_center_net_models_are_rejected_with_reason(tmp_path):
    for name in ("ssd", "center_net"):
        path = _write(tmp_path, f"model {{\n  {name} {{\n    num_classes: 3\n  }}\n}}\n", f"{name}.config")
        with pytest.raises(ConfigError) as info:
            config_util.get_configs_from_pipeline_file(path)
        assert info.value.line == 2
        assert "not supported" in str(info.value) and "faster_rcnn" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config_util.get_configs_from_pipeline_file(tmp_path / "nope.config")


def test_config_override_is_merged_over_the_file(tmp_path):
    path = _write(tmp_path, samples.mtl_config_text(tmp_path))
    override = """
        model { faster_rcnn { num_classes: 20 } mtl { num_windows: 16 } }
        train_config { batch_size: 2 num_steps: 10 }
        eval_config { metrics_set: "pascal_voc_detection_metrics" }
    """
    configs = config_util.get_configs_from_pipeline_file(path, config_override=override)
    assert configs["model"].faster_rcnn.num_classes == 20
    assert configs["model"].mtl.num_windows == 16
    assert configs["model"].mtl.window  # untouched fields stay
    assert configs["model"].faster_rcnn.initial_crop_size == 14
    assert configs["train_config"].batch_size == 2 and configs["train_config"].num_steps == 10
    assert configs["train_config"].sync_replicas
    # a repeated field named in the override replaces the list (the OD API would append)
    assert list(configs["eval_config"].metrics_set) == ["pascal_voc_detection_metrics"]


def test_override_replaces_the_eval_reader_and_input_paths(tmp_path):
    path = _write(tmp_path, samples.mtl_config_text(tmp_path))
    original = config_util.get_configs_from_pipeline_file(path)
    assert len(original["eval_input_configs"]) == 1
    override = """
        train_input_reader { tf_record_input_reader { input_path: "mine_train.record" } }
        eval_input_reader { label_map_path: "mine.pbtxt"
                            tf_record_input_reader { input_path: "mine_val.record" } }
        model { faster_rcnn { first_stage_anchor_generator { grid_anchor_generator {
            scales: [0.5, 1.0] } } } }
    """
    configs = config_util.get_configs_from_pipeline_file(path, config_override=override)
    (reader,) = configs["eval_input_configs"]  # replaced, not a second reader
    assert reader.label_map_path == "mine.pbtxt"
    assert list(reader.tf_record_input_reader.input_path) == ["mine_val.record"]
    assert not reader.HasField("num_epochs")  # the whole reader is the override's
    train = configs["train_input_config"]
    assert list(train.tf_record_input_reader.input_path) == ["mine_train.record"]
    assert train.label_map_path == original["train_input_config"].label_map_path  # kept
    grid = configs["model"].faster_rcnn.first_stage_anchor_generator.grid_anchor_generator
    old_grid = original["model"].faster_rcnn.first_stage_anchor_generator.grid_anchor_generator
    assert list(grid.scales) == [0.5, 1.0]
    assert list(grid.aspect_ratios) == list(old_grid.aspect_ratios)  # not named: kept
    # an empty message in the override switches a oneof, as in the file syntax
    configs = config_util.get_configs_from_pipeline_file(
        path, "model { faster_rcnn { image_resizer { fixed_shape_resizer { } } } }")
    assert configs["model"].faster_rcnn.image_resizer.WhichOneof("image_resizer_oneof") == "fixed_shape_resizer"


@pytest.mark.parametrize("text, suggestion", [
    ("train_config {\n  batch_sise: 2\n}", "did you mean 'batch_size'?"),
    ("model { faster_rcnn { num_clases: 3 } }", "did you mean 'num_classes'?"),
    ("eval_input_reader { tf_record_input_reader { input_paht: 'x' } }", "did you mean 'input_path'?"),
    ("model { faster_rcnn { second_stage_post_processing { score_converter: SOFTMX } } }",
     "did you mean 'SOFTMAX'?"),
])
def test_unknown_names_get_a_did_you_mean(tmp_path, text, suggestion):
    path = _write(tmp_path, samples.mtl_config_text(tmp_path))
    with pytest.raises(ConfigError) as info:
        config_util.get_configs_from_pipeline_file(path, text)
    assert suggestion in str(info.value)
    with pytest.raises(ConfigError) as info:
        config_util.parse_pipeline_text("model { faster_rcnn { xyzzy: 1 } }")
    assert "did you mean" not in str(info.value)  # nothing close: no guess


def test_bad_override_names_the_override_and_line(tmp_path):
    path = _write(tmp_path, samples.mtl_config_text(tmp_path))
    with pytest.raises(ConfigError) as info:
        config_util.get_configs_from_pipeline_file(path, "train_config {\n  batch_sise: 2\n}")
    assert info.value.source == "--config_override" and info.value.line == 2
    assert str(info.value).startswith("--config_override:2:")


def test_save_and_reload_round_trips(tmp_path):
    path = _write(tmp_path, samples.mtl_config_text(tmp_path))
    configs = config_util.get_configs_from_pipeline_file(path, "train_config { batch_size: 3 }")
    original = config_util.create_pipeline_proto_from_configs(configs)
    assert isinstance(original, pipeline_pb2.TrainEvalPipelineConfig)
    saved = config_util.save_pipeline_config(original, tmp_path / "model_dir" / "nested")
    assert saved == str(tmp_path / "model_dir" / "nested" / "pipeline.config")
    reloaded = config_util.get_configs_from_pipeline_file(saved)
    assert config_util.create_pipeline_proto_from_configs(reloaded) == original
    assert reloaded["train_config"].batch_size == 3
    # the dict form can be saved too
    saved_again = config_util.save_pipeline_config(reloaded, tmp_path / "again")
    assert pathlib.Path(saved_again).read_text() == pathlib.Path(saved).read_text()


def test_dict_and_proto_conversions_are_inverse(tmp_path):
    text = samples.mtl_config_text(tmp_path) + 'eval_input_reader { tf_record_input_reader { input_path: "b" } }\n'
    pipeline = config_util.parse_pipeline_text(text)
    configs = config_util.create_configs_from_pipeline_proto(pipeline)
    assert len(configs["eval_input_configs"]) == 2
    assert "graph_rewriter_config" not in configs
    assert config_util.create_pipeline_proto_from_configs(configs) == pipeline
