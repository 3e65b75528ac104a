r"""Write the result files of the PASCAL VOC or COCO evaluation server for a trained detector.

  # PASCAL VOC2012 test: results/VOC2012/Main/comp4_det_test_<class>.txt + results.tar.gz
  mtl_ssl_submission --format=voc --saved_model_dir=exported/x/saved_model \
      --image_dir=VOC2012test/JPEGImages \
      --image_list=VOC2012test/ImageSets/Main/test.txt --output_dir=submission/voc12
  # COCO test-dev: detections_test-dev2017_<alg>_results.json + .zip
  mtl_ssl_submission --format=coco --saved_model_dir=exported/x/saved_model \
      --image_dir=coco/test2017 --coco_image_info=annotations/image_info_test-dev2017.json \
      --alg_name=mtlssl --output_dir=submission/coco
  # in process from a training checkpoint instead of an export; from a TFRecord
  mtl_ssl_submission --format=coco --pipeline_config_path=P --checkpoint_dir=runs/x \
      --input_tfrecord=coco17_val.record-?????-of-00010 --coco_split=val2017 --output_dir=out

Boxes are written in pixels of the original images (VOC: the devkit's 1-based coordinates;
COCO: [x, y, width, height]); see docs/reproducing.md, "Submitting to the evaluation servers".
"""
import sys

from absl import app
from absl import flags

from mtl_ssl import cli  # sets TF_CPP_MIN_LOG_LEVEL before TensorFlow is imported

FLAGS = flags.FLAGS

flags.DEFINE_enum('format', None, ['voc', 'coco'],
                  'voc: PASCAL VOC devkit detection files; coco: COCO results JSON')
flags.DEFINE_string('output_dir', None, 'where the result files (and the archive) are written')
# the model
flags.DEFINE_string('saved_model_dir', None,
                    'the saved_model directory written by exporter_main_v2 (or the export '
                    'directory holding it); or give --pipeline_config_path and --checkpoint_dir')
flags.DEFINE_string('pipeline_config_path', None,
                    'build the model in this process from this pipeline.config ...')
flags.DEFINE_string('checkpoint_dir', None,
                    '... restored from this training directory (latest checkpoint) or prefix')
flags.DEFINE_string('config_override', '',
                    'text proto merged over --pipeline_config_path (or @file)')
flags.DEFINE_string('label_map_path', None,
                    'class names (VOC file names) and ids (COCO category_id); default: the '
                    'label_map_path of the eval input reader of the export\'s pipeline.config '
                    '(or of --pipeline_config_path)')
# the images
flags.DEFINE_string('image_dir', None, 'a directory of images (jpg, jpeg, png, bmp, gif)')
flags.DEFINE_string('input_tfrecord', None,
                    'OD API TFRecord(s) instead of --image_dir: a path, glob or sharded '
                    'name-?????-of-NNNNN')
flags.DEFINE_string('image_list', None,
                    'run only on the images listed here, by file stem (the devkit\'s '
                    'ImageSets/Main/test.txt); a listed image missing from the input is an error')
# the servers' rules
flags.DEFINE_float('min_score', 0.0,
                   'score floor: detections below it are left out (both servers rank by score, '
                   'so low-score detections can only add recall; raise it, e.g. to 0.01, to '
                   'make the files smaller)')
flags.DEFINE_integer('max_detections_per_image', None,
                     'keep the best n detections of each image; default 100 for coco (the '
                     'server\'s limit), all the model returns for voc')
flags.DEFINE_enum('voc_competition', 'comp4', ['comp3', 'comp4'],
                  'comp3: trained on VOC data only; comp4: trained on any data (ImageNet '
                  'weights count: the paper\'s models are comp4)')
flags.DEFINE_string('voc_year', 'VOC2012', 'results/<voc_year>/Main (VOC2007 for the devkit)')
flags.DEFINE_enum('voc_image_set', 'test', ['train', 'val', 'trainval', 'test'],
                  'the image set in the file names: <comp>_det_<set>_<class>.txt')
flags.DEFINE_enum('coco_split', 'test-dev2017', ['test-dev2017', 'val2017'],
                  'the split in the JSON name (val2017: a local check with pycocotools)')
flags.DEFINE_string('alg_name', 'mtlssl',
                    'the algorithm name in detections_<split>_<alg>_results.json (letters, '
                    'digits, "-")')
flags.DEFINE_string('coco_image_info', None,
                    'image_info_test-dev2017.json (or an instances_*.json): image ids by '
                    'file_name, and the images to run (all of them must be in the input); '
                    'default: the TFRecord\'s integer image/source_id, else the digits that end '
                    'the file name (000000000139.jpg -> 139)')
flags.DEFINE_bool('archive', True,
                  'also write the archive to upload: results.tar.gz (voc) or the JSON zipped')
flags.DEFINE_bool('progress', True, 'show a progress bar')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  cli.init_logging()
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.get_logger().setLevel('ERROR')
  from mtl_ssl.export import submission  # pylint: disable=import-outside-toplevel
  try:
    submission.make_submission(
        FLAGS.format, FLAGS.output_dir, saved_model_dir=FLAGS.saved_model_dir,
        pipeline_config_path=FLAGS.pipeline_config_path, checkpoint_dir=FLAGS.checkpoint_dir,
        config_override=cli.read_config_override(FLAGS.config_override),
        image_dir=FLAGS.image_dir, input_tfrecord=FLAGS.input_tfrecord,
        image_list=FLAGS.image_list, label_map_path=FLAGS.label_map_path,
        min_score=FLAGS.min_score, max_detections_per_image=FLAGS.max_detections_per_image,
        voc_year=FLAGS.voc_year, voc_image_set=FLAGS.voc_image_set,
        voc_competition=FLAGS.voc_competition, coco_split=FLAGS.coco_split,
        alg_name=FLAGS.alg_name, coco_image_info=FLAGS.coco_image_info, archive=FLAGS.archive,
        show_progress=FLAGS.progress)
  except (ValueError, OSError) as error:  # user errors: their message names the culprit
    print(f'error: {error}', file=sys.stderr)
    return 1
  return 0


def run():
  """Console script `mtl_ssl_submission`."""
  flags.mark_flags_as_required(['format', 'output_dir'])
  app.run(main)


if __name__ == '__main__':
  run()
