r"""Export a trained mtl-ssl detector as a SavedModel (the OD API's exporter_main_v2, same flags).

  exporter_main_v2 --input_type=image_tensor --pipeline_config_path=P \
      --trained_checkpoint_dir=MODEL_DIR --output_directory=OUT

Writes OUT/saved_model (signature serving_default, input 'input_tensor'), OUT/checkpoint and
OUT/pipeline.config. Input types: image_tensor (uint8 [1,H,W,3]), float_image_tensor (float32
[1,H,W,3], 0..255), encoded_image_string_tensor (JPEG/PNG bytes [N], same size),
tf_example (serialized tf.Example with image/encoded [N]).
"""

from mtl_ssl import cli


def build_parser():
  parser = cli.new_parser(__doc__)
  parser.add_argument('--input_type', default='image_tensor',
                      choices=['image_tensor', 'encoded_image_string_tensor', 'tf_example',
                               'float_image_tensor'], help='type of the serving input')
  parser.add_argument('--pipeline_config_path', required=True, help='pipeline.config path')
  parser.add_argument('--trained_checkpoint_dir', required=True,
                      help='training directory (latest checkpoint) or a checkpoint prefix')
  parser.add_argument('--output_directory', required=True, help='where the export is written')
  parser.add_argument('--config_override', default='',
                      help='text proto merged over the pipeline config (or @file)')
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  cli.init_logging()
  from mtl_ssl.export import exporter_lib  # pylint: disable=import-outside-toplevel
  exporter_lib.export_inference_graph(
      args.input_type, args.pipeline_config_path, args.trained_checkpoint_dir,
      args.output_directory, config_override=cli.read_config_override(args.config_override))
  return 0


def run():
  """Console script `exporter_main_v2`."""
  cli.run_main(main)


if __name__ == '__main__':
  run()
