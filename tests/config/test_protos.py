"""The generated protos: OD API field numbers/defaults, the MTL block, install-time generation."""
import importlib
import pathlib
import shutil
import subprocess

import pytest

from mtl_ssl.protos import (box_predictor_pb2, faster_rcnn_pb2, mask_predictor_pb2, model_pb2, mtl_pb2,
                            optimizer_pb2, pipeline_pb2, preprocessor_pb2, train_pb2)

REPO = pathlib.Path(__file__).resolve().parents[2]


def _numbers(message_class):
    return {f.name: f.number for f in message_class.DESCRIPTOR.fields}


# (message, field) -> number in the OD API TF2 protos (a sample across files).
ODAPI_FIELD_NUMBERS = {
    (pipeline_pb2.TrainEvalPipelineConfig, "eval_input_reader"): 5,
    (pipeline_pb2.TrainEvalPipelineConfig, "graph_rewriter"): 6,
    (model_pb2.DetectionModel, "faster_rcnn"): 1,
    (model_pb2.DetectionModel, "experimental_model"): 3,
    (faster_rcnn_pb2.FasterRcnn, "num_classes"): 3,
    (faster_rcnn_pb2.FasterRcnn, "second_stage_box_predictor"): 21,
    (faster_rcnn_pb2.FasterRcnn, "hard_example_miner"): 28,
    (faster_rcnn_pb2.FasterRcnn, "use_matmul_crop_and_resize"): 31,
    (faster_rcnn_pb2.FasterRcnn, "clip_anchors_to_image"): 32,
    (faster_rcnn_pb2.FasterRcnn, "use_matmul_gather_in_matcher"): 33,
    (faster_rcnn_pb2.FasterRcnn, "use_static_balanced_label_sampler"): 34,
    (faster_rcnn_pb2.FasterRcnn, "use_static_shapes"): 35,
    (faster_rcnn_pb2.FasterRcnn, "context_config"): 41,
    (faster_rcnn_pb2.FasterRcnn, "output_final_box_rpn_features"): 43,
    (faster_rcnn_pb2.FasterRcnnFeatureExtractor, "fpn"): 7,
    (train_pb2.TrainConfig, "fine_tune_checkpoint_type"): 22,
    (train_pb2.TrainConfig, "fine_tune_checkpoint_version"): 28,
    (train_pb2.TrainConfig, "run_fine_tune_checkpoint_dummy_computation"): 30,
    (train_pb2.TrainConfig, "max_number_of_boxes"): 20,
    (train_pb2.TrainConfig, "use_bfloat16"): 26,
    (box_predictor_pb2.BoxPredictor, "weight_shared_convolutional_box_predictor"): 4,
    (box_predictor_pb2.MaskRCNNBoxPredictor, "share_box_across_classes"): 13,
    (optimizer_pb2.LearningRate, "cosine_decay_learning_rate"): 4,
    (preprocessor_pb2.PreprocessingStep, "random_scale_crop_and_pad_to_square"): 38,
    (preprocessor_pb2.PreprocessingStep, "adjust_gamma"): 39,
}


@pytest.mark.parametrize("message, field", list(ODAPI_FIELD_NUMBERS), ids=lambda x: getattr(x, "__name__", x))
def test_odapi_field_numbers(message, field):
    assert _numbers(message)[field] == ODAPI_FIELD_NUMBERS[(message, field)]


def test_odapi_defaults():
    fr = faster_rcnn_pb2.FasterRcnn()
    assert fr.number_of_stages == 2 and fr.first_stage_max_proposals == 300
    assert fr.second_stage_batch_size == 64 and fr.second_stage_balance_fraction == 0.25
    assert fr.use_partitioned_nms_in_first_stage and fr.resize_masks and not fr.use_static_shapes
    assert fr.feature_extractor.first_stage_features_stride == 16 and fr.feature_extractor.pad_to_multiple == 32
    tc = train_pb2.TrainConfig()
    assert tc.batch_size == 32 and tc.fine_tune_checkpoint_version == train_pb2.V1
    assert tc.keep_checkpoint_every_n_hours == 10000.0 and tc.add_regularization_loss
    assert optimizer_pb2.Optimizer().use_moving_average
    assert preprocessor_pb2.RandomHorizontalFlip().probability == 0.5


def test_ssd_and_center_net_numbers_are_reserved():
    descriptor = model_pb2.DetectionModel.DESCRIPTOR
    assert 2 not in descriptor.fields_by_number and 4 not in descriptor.fields_by_number
    source = (REPO / "protos" / "model.proto").read_text()
    assert "reserved 2, 4;" in source and 'reserved "ssd", "center_net";' in source


# Original TF1 mtl-ssl MTL message (object_detection/protos/model.proto @ b2aeaf0e): name -> (number, default)
ORIGINAL_MTL = {
    "refine": (1, False), "window": (2, False), "closeness": (4, False), "edgemask": (5, False),
    "refine_num_fc_layers": (6, 0), "refiner_fc_hyperparams": (7, None), "refine_residue": (8, False),
    "refine_dropout_rate": (9, 1.0), "window_class_loss_weight": (10, 0.0), "closeness_loss_weight": (11, 0.0),
    "edgemask_loss_weight": (12, 0.0), "refined_classification_loss_weight": (13, 0.0),
    "window_box_predictor": (14, None), "closeness_box_predictor": (15, None), "edgemask_predictor": (16, None),
    "shared_feature": (17, "proposal_feature_maps"), "stop_gradient_for_aux_tasks": (18, False),
    "share_second_stage_init": (19, True), "stop_gradient_for_prediction_org": (20, False),
    "global_closeness": (21, True), "edgemask_weighted": (22, True),
}
NEW_MTL = {"num_windows": 64, "window_min_size": 32, "foreground_grid_size": 64, "num_context_levels": 5,
           "foreground_tanh": False, "label_seed": 0, "labels_in_original_pixels": False,
           "closeness_loss_sum_over_images": False, "stop_gradient_covers_foreground": True,
           # cost levers (docs/performance.md): defaults keep the paper's method
           "aux_stage_input": "roi_crops", "refine_top_k": 0, "refine_top_k_in_training": False,
           "window_crop_size": 0, "closeness_crop_size": 0,
           "train_every_n_steps": 1}
NEW_MTL["foreground_feature_level"] = 4  # FPN (number 40)


def test_mtl_block_keeps_the_original_fields_and_adds_new_ones_after_them():
    numbers = _numbers(mtl_pb2.MTL)
    mtl = mtl_pb2.MTL()
    for name, (number, default) in ORIGINAL_MTL.items():
        assert numbers[name] == number, name
        if default is not None:
            assert getattr(mtl, name) == pytest.approx(default), name
    assert set(numbers) == set(ORIGINAL_MTL) | set(NEW_MTL)
    assert min(numbers[n] for n in NEW_MTL) > max(n for n, _ in ORIGINAL_MTL.values())
    for name, default in NEW_MTL.items():
        assert getattr(mtl, name) == default, name
    assert _numbers(model_pb2.DetectionModel)["mtl"] == 1000
    assert model_pb2.DetectionModel.DESCRIPTOR.fields_by_name["mtl"].containing_oneof is None
    assert _numbers(mask_predictor_pb2.MaskPredictor) == {"trainable": 1, "kernel_size": 2, "conv_hyperparams": 3}
    assert mask_predictor_pb2.MaskPredictor().kernel_size == 3


def test_original_box_predictor_fields_are_accepted_at_1000():
    assert _numbers(box_predictor_pb2.BoxPredictor)["trainable"] == 1000
    assert box_predictor_pb2.BoxPredictor().trainable
    assert _numbers(box_predictor_pb2.MaskRCNNBoxPredictor)["spatial_average"] == 1000
    assert box_predictor_pb2.MaskRCNNBoxPredictor().spatial_average


def test_every_proto_has_an_importable_generated_module():
    names = sorted(p.stem for p in (REPO / "protos").glob("*.proto"))
    assert "pipeline" in names and "mtl" in names
    for name in names:
        module = importlib.import_module(f"mtl_ssl.protos.{name}_pb2")
        assert module.DESCRIPTOR.package == "mtl_ssl.protos"


def test_missing_generated_module_says_how_to_build_it():
    with pytest.raises(ImportError, match=r"pip install -e \.") as info:
        importlib.import_module("mtl_ssl.protos.not_a_real_pb2")
    assert "python setup.py build_py" in str(info.value)
    with pytest.raises(ImportError, match="has not been generated"):
        from mtl_ssl.protos import another_missing_pb2  # noqa: F401
    with pytest.raises(ModuleNotFoundError):  # other names keep the normal error
        importlib.import_module("mtl_ssl.protos.not_a_proto_module")


def test_generated_modules_are_not_in_git():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert [line for line in tracked.splitlines() if line.endswith("_pb2.py")] == []
    ignored = subprocess.run(["git", "check-ignore", "mtl_ssl/protos/pipeline_pb2.py"], cwd=REPO,
                             capture_output=True, text=True)
    assert ignored.returncode == 0, "mtl_ssl/protos/*_pb2.py must be git-ignored"


def test_mtl_doc_documents_every_field():
    doc = (REPO / "docs" / "mtl_config.md").read_text()
    for field in mtl_pb2.MTL.DESCRIPTOR.fields:
        assert f"| {field.number} | `{field.name}` |" in doc, field.name
