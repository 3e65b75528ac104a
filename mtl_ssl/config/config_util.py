"""Read, merge, convert and write pipeline configs (the OD API config_util role).

A pipeline config is a text-format `TrainEvalPipelineConfig` (protos/pipeline.proto), the
same format as the TF Object Detection API's pipeline.config plus `model { mtl { ... } }`.
Syntax errors, unknown fields and wrong value types raise ConfigError naming the file and
line:column. Semantic checks live in mtl_ssl.config.validation (`validate`).
"""
import difflib
import os
import re

from google.protobuf import descriptor
from google.protobuf import text_format

from mtl_ssl import io_util
from mtl_ssl.config.errors import ConfigError
from mtl_ssl.config import support
from mtl_ssl.protos import pipeline_pb2

PIPELINE_CONFIG_NAME = "pipeline.config"
OVERRIDE_SOURCE = "--config_override"

_NO_FIELD = re.compile(r'Message type "mtl_ssl\.protos\.([\w.]+)" has no field named "(\w+)"')
_NO_ENUM_VALUE = re.compile(r'Enum type "(mtl_ssl\.protos\.[\w.]+)" has no value named (\w+)')


def _read_text(path):
    """Local files with open(); URLs such as gs:// through tf.io.gfile (imported lazily)."""
    path = os.fspath(path)
    if "://" in path:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        if not tf.io.gfile.exists(path):
            raise ConfigError("pipeline config file not found", source=path)
        with tf.io.gfile.GFile(path, "rb") as f:
            return _utf8(f.read(), path)
    if not os.path.isfile(path):
        raise ConfigError("pipeline config file not found", source=path)
    with open(path, "rb") as f:
        return _utf8(f.read(), path)


def _utf8(data, path):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
                          "save the config as UTF-8", source=path, line=line) from error


def _did_you_mean(name, candidates):
    close = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"


def _hint_for_unknown_field(message):
    """Explain unknown fields known to come from other config dialects; else suggest the
    closest field (or enum value) names of that message."""
    pool = pipeline_pb2.DESCRIPTOR.pool
    match = _NO_FIELD.search(message)
    if match:
        key = f"{match.group(1)}.{match.group(2)}"
        hint = support.FOREIGN_FIELD_HINTS.get(key)
        if hint:
            return f" ({hint})"
        try:
            fields = pool.FindMessageTypeByName(f"mtl_ssl.protos.{match.group(1)}").fields
        except KeyError:
            return ""
        return _did_you_mean(match.group(2), [f.name for f in fields])
    match = _NO_ENUM_VALUE.search(message)
    if match:
        try:
            values = pool.FindEnumTypeByName(match.group(1)).values
        except KeyError:
            return ""
        return _did_you_mean(match.group(2), [v.name for v in values])
    return ""


def merge_text(text, pipeline_config, source):
    """text_format.Merge `text` into `pipeline_config`; ParseError -> ConfigError(source, line:col).

    Merge semantics (as the OD API): a singular field set again replaces the earlier value,
    a repeated field gets the new elements appended.
    """
    try:
        text_format.Merge(text, pipeline_config)
    except text_format.ParseError as error:
        message = str(error)
        line, column = error.GetLine(), error.GetColumn()
        # str(ParseError) starts with "line:column : " when the position is known.
        prefix = f"{line}:{column} : "
        if line is not None and message.startswith(prefix):
            message = message[len(prefix):]
        raise ConfigError(
            message + _hint_for_unknown_field(message), source=source, line=line, column=column
        ) from error
    return pipeline_config


def parse_pipeline_text(text, source="<string>"):
    """Parse a text-format pipeline config into a new TrainEvalPipelineConfig."""
    return merge_text(text, pipeline_pb2.TrainEvalPipelineConfig(), source)


def _is_repeated(field):
    # protobuf >= 5.28 has is_repeated; FieldDescriptor.label is gone in protobuf 7
    if hasattr(field, "is_repeated"):
        return field.is_repeated
    return field.label == descriptor.FieldDescriptor.LABEL_REPEATED


def merge_replacing_lists(source, target):
    """Merge message `source` into `target`; a repeated field set in `source` REPLACES target's
    list (text_format.Merge would append to it). Singular fields are merged field by field."""
    for field, value in source.ListFields():
        if _is_repeated(field):
            target.ClearField(field.name)
            container = getattr(target, field.name)
            if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
                container.MergeFrom(value)
            else:
                container.extend(value)
        elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            sub_message = getattr(target, field.name)
            sub_message.SetInParent()  # also selects it in its oneof, even when empty
            merge_replacing_lists(value, sub_message)
        else:
            setattr(target, field.name, value)
    return target


def merge_override(text, pipeline_config, source=OVERRIDE_SOURCE):
    """Merge --config_override text over a pipeline config.

    Singular fields are set field by field (the rest of each message stays); a repeated field
    named in the override replaces the config's list instead of being appended to it: an
    override's `eval_input_reader { ... }` is THE eval reader, `input_path: "x"` is THE input
    path, `metrics_set: "..."` is THE metrics set. (The OD API appends; see docs/migrating.md.)
    """
    override = merge_text(text, pipeline_pb2.TrainEvalPipelineConfig(), source)
    return merge_replacing_lists(override, pipeline_config)


def get_pipeline_proto_from_file(pipeline_config_path, config_override=None):
    """Read the file and merge the optional --config_override text over it (merge_override)."""
    pipeline_config = parse_pipeline_text(_read_text(pipeline_config_path), os.fspath(pipeline_config_path))
    if config_override:
        merge_override(config_override, pipeline_config)
    return pipeline_config


def create_configs_from_pipeline_proto(pipeline_config):
    """TrainEvalPipelineConfig -> dict with the OD API keys.

    'model', 'train_config', 'train_input_config', 'eval_config', 'eval_input_configs'
    (list) and 'eval_input_config' (the first eval input, or None when there is none),
    plus 'graph_rewriter_config' when the config has one. The values are the proto
    sub-messages themselves (no copies), as in the OD API.
    """
    eval_input_configs = list(pipeline_config.eval_input_reader)
    configs = {
        "model": pipeline_config.model,
        "train_config": pipeline_config.train_config,
        "train_input_config": pipeline_config.train_input_reader,
        "eval_config": pipeline_config.eval_config,
        "eval_input_configs": eval_input_configs,
        "eval_input_config": eval_input_configs[0] if eval_input_configs else None,
    }
    if pipeline_config.HasField("graph_rewriter"):
        configs["graph_rewriter_config"] = pipeline_config.graph_rewriter
    return configs


def get_configs_from_pipeline_file(pipeline_config_path, config_override=None):
    """Load a pipeline.config (plus optional text-proto override) into the OD API dict.

    Raises ConfigError (a ValueError) naming the file and line:column for syntax errors,
    unknown fields and values of the wrong type. Does not validate semantics: call
    mtl_ssl.config.validation.validate(configs) for that.
    """
    return create_configs_from_pipeline_proto(
        get_pipeline_proto_from_file(pipeline_config_path, config_override)
    )


def create_pipeline_proto_from_configs(configs):
    """Inverse of create_configs_from_pipeline_proto (the OD API function of that name)."""
    pipeline_config = pipeline_pb2.TrainEvalPipelineConfig()
    pipeline_config.model.CopyFrom(configs["model"])
    pipeline_config.train_config.CopyFrom(configs["train_config"])
    pipeline_config.train_input_reader.CopyFrom(configs["train_input_config"])
    pipeline_config.eval_config.CopyFrom(configs["eval_config"])
    eval_inputs = configs.get("eval_input_configs")
    if eval_inputs is None and configs.get("eval_input_config") is not None:
        eval_inputs = [configs["eval_input_config"]]
    pipeline_config.eval_input_reader.extend(eval_inputs or [])
    if configs.get("graph_rewriter_config") is not None:
        pipeline_config.graph_rewriter.CopyFrom(configs["graph_rewriter_config"])
    return pipeline_config


def pipeline_config_to_text(pipeline_config):
    return text_format.MessageToString(pipeline_config)


def save_pipeline_config(pipeline_config, directory):
    """Write `directory`/pipeline.config (creating the directory); returns the file path.

    Accepts a TrainEvalPipelineConfig or the configs dict.
    """
    if isinstance(pipeline_config, dict):
        pipeline_config = create_pipeline_proto_from_configs(pipeline_config)
    path = os.path.join(os.fspath(directory), PIPELINE_CONFIG_NAME)
    # temp file + rename: a process killed mid-write never leaves a truncated pipeline.config
    return io_util.atomic_write_text(path, pipeline_config_to_text(pipeline_config))
