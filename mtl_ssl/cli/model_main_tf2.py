"""Train or evaluate an mtl-ssl detector (the OD API's model_main_tf2, same flags).

  model_main_tf2 --pipeline_config_path=P --model_dir=D [--num_train_steps=N]   # train
  model_main_tf2 --pipeline_config_path=P --model_dir=D --checkpoint_dir=D     # evaluate only
  model_main_tf2 --pipeline_config_path=P --model_dir=D --train_and_eval       # both

Training resumes from the latest checkpoint in --model_dir. --num_train_steps replaces
train_config.num_steps and stretches the learning-rate schedule with it (--noscale_lr_schedule
keeps it); <model_dir>/pipeline.config records the config used. Evaluation-only mode evaluates
the latest checkpoint of --checkpoint_dir, then each new one, and ends after the final step
(the num_steps in <checkpoint_dir>/pipeline.config, written by the training run) or after
--eval_timeout seconds without a new checkpoint; metrics go to <model_dir>/eval (TensorBoard +
metrics_<step>.json). --train_and_eval evaluates every --eval_every_n_checkpoints-th checkpoint
as soon as training writes it, in the same process.
"""
import os
import shutil
import sys

from mtl_ssl import cli


def build_parser():
  parser = cli.new_parser(__doc__)
  parser.add_argument('--pipeline_config_path', required=True, help='pipeline.config path')
  parser.add_argument('--model_dir', required=True,
                      help='where checkpoints, summaries and the eval metrics are written')
  parser.add_argument('--num_train_steps', type=int, default=None,
                      help='number of training steps (default train_config.num_steps)')
  cli.add_bool_flag(parser, 'scale_lr_schedule', True,
                    'with --num_train_steps: stretch the learning-rate schedule to the new '
                    'number of steps')
  parser.add_argument('--config_override', default='',
                      help='text proto merged over the pipeline config (or @file)')
  parser.add_argument('--checkpoint_dir', default=None,
                      help='evaluation-only mode: evaluate the checkpoints of this directory')
  parser.add_argument('--eval_timeout', type=int, default=3600,
                      help='seconds to wait for a new checkpoint in evaluation-only mode')
  parser.add_argument('--eval_interval_secs', type=int, default=None,
                      help='minimum seconds between evaluations in evaluation-only mode '
                           '(default eval_config.eval_interval_secs)')
  parser.add_argument('--sample_1_of_n_eval_examples', type=int, default=None,
                      help='evaluate one of every n eval examples')
  cli.add_bool_flag(parser, 'use_tpu', False, 'train on a TPU (TPUStrategy)')
  parser.add_argument('--tpu_name', default=None, help='the TPU to use with --use_tpu')
  parser.add_argument('--num_workers', type=int, default=1,
                      help='> 1: MultiWorkerMirroredStrategy with the cluster of TF_CONFIG')
  parser.add_argument('--checkpoint_every_n', type=int, default=1000,
                      help='write a checkpoint every n training steps')
  parser.add_argument('--checkpoint_max_to_keep', type=int, default=7,
                      help='number of recent checkpoints kept')
  cli.add_bool_flag(parser, 'record_summaries', True, 'write TensorBoard summaries in training')
  parser.add_argument('--log_every_n', type=int, default=100,
                      help='log losses / write scalar summaries every n steps')
  cli.add_bool_flag(parser, 'train_and_eval', False,
                    'evaluate the checkpoints written while training')
  parser.add_argument('--eval_every_n_checkpoints', type=int, default=1,
                      help='with --train_and_eval: evaluate every n-th checkpoint')
  parser.add_argument('--seed', type=int, default=None,
                      help='seed for weights initialization and data order')
  cli.add_bool_flag(parser, 'deterministic', False,
                    'bit-reproducible training (tf.config.experimental.enable_op_determinism; '
                    'seed 0 unless --seed). On CPUs it also corrects crop_and_resize\'s '
                    'racy multi-threaded gradient; on GPUs crop_and_resize\'s gradient has '
                    'no deterministic kernel and raises (docs/reliability.md)')
  return parser


def _remove_if_empty(directory):
  """Removes a directory tree that holds no file (what a failed start may leave)."""
  if not os.path.isdir(directory):
    return False
  if any(files for _, _, files in os.walk(directory)):
    return False
  shutil.rmtree(directory)
  return True


def main(argv=None):
  """Runs the command; a model_dir it created is removed again if the run fails before writing
  anything to it."""
  args = build_parser().parse_args(argv)
  if args.num_train_steps is not None and args.num_train_steps < 1:
    raise ValueError(f'--num_train_steps must be >= 1, got {args.num_train_steps}')
  created = not os.path.exists(args.model_dir)
  try:
    return _run(args)
  except BaseException:
    if created and _remove_if_empty(args.model_dir):
      print(f'(removed the empty --model_dir {args.model_dir} made by this run)', file=sys.stderr)
    raise


def _run(args):
  cli.init_logging()
  # imported here: TF_CPP_MIN_LOG_LEVEL is set by `mtl_ssl.cli` before TensorFlow loads
  from mtl_ssl.config import validation  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import eval_loop  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import input_files  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import strategies  # pylint: disable=import-outside-toplevel
  from mtl_ssl.training import train_loop  # pylint: disable=import-outside-toplevel

  override = cli.read_config_override(args.config_override)
  if args.checkpoint_dir:
    results = eval_loop.eval_continuously(
        args.pipeline_config_path, args.model_dir, args.checkpoint_dir,
        config_override=override, train_steps=args.num_train_steps,
        sample_1_of_n_eval_examples=args.sample_1_of_n_eval_examples,
        wait_interval=args.eval_interval_secs, timeout=args.eval_timeout)
    return 0 if results else 1

  strategy = strategies.select_strategy(args.use_tpu, args.tpu_name, args.num_workers)
  on_checkpoint = None
  if args.train_and_eval:
    configs = validation.load_and_validate(args.pipeline_config_path, override, 'eval')
    input_files.check(configs, ('train', 'eval'))  # both, before anything is built
    evaluation = eval_loop.CheckpointEvaluation(
        configs, args.model_dir,
        sample_1_of_n_eval_examples=args.sample_1_of_n_eval_examples)
    every = max(1, args.eval_every_n_checkpoints)
    final_step = args.num_train_steps or configs['train_config'].num_steps
    saved = []

    def on_checkpoint(path, step):  # every n-th checkpoint, and always the final one
      saved.append(step)
      if len(saved) % every == 0 or step >= final_step:
        evaluation.evaluate_checkpoint(path, step)

  train_loop.train_loop(
      args.pipeline_config_path, args.model_dir, config_override=override,
      train_steps=args.num_train_steps, strategy=strategy,
      checkpoint_every_n=args.checkpoint_every_n,
      checkpoint_max_to_keep=args.checkpoint_max_to_keep,
      record_summaries=args.record_summaries, log_every_n=args.log_every_n, seed=args.seed,
      on_checkpoint=on_checkpoint, scale_lr_schedule=args.scale_lr_schedule,
      deterministic=args.deterministic)
  return 0


def run():
  """Console script `model_main_tf2`."""
  cli.run_main(main)


if __name__ == '__main__':
  run()
