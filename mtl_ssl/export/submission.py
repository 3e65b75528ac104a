"""Test-server submissions: run a detector over the test images and write the PASCAL VOC or COCO
result files (formats and coordinate rules: mtl_ssl/export/submission_files.py).

Everything that can be checked before the model runs is checked first (flags, label map, image
names and ids, the image list), so a bad input fails in seconds, not after hours of inference.
"""
import collections
import os

from absl import logging
from tqdm import tqdm

from mtl_ssl.data import label_map_util
from mtl_ssl.export import image_sources
from mtl_ssl.export import submission_files as files

FORMATS = ('voc', 'coco')


def _export_dir(saved_model_dir):
  return os.path.dirname(os.path.normpath(saved_model_path(saved_model_dir)))


def saved_model_path(saved_model_dir):
  """The SavedModel directory: the one given, or <export>/saved_model when given the export."""
  nested = os.path.join(saved_model_dir, 'saved_model')
  if not os.path.isfile(os.path.join(saved_model_dir, 'saved_model.pb')) and \
      os.path.isfile(os.path.join(nested, 'saved_model.pb')):
    return nested
  return saved_model_dir


def default_label_map_path(saved_model_dir=None, pipeline_config_path=None):
  """label_map_path of the eval (else train) input reader of the run's pipeline.config: the
  export's <export>/pipeline.config, or --pipeline_config_path."""
  from mtl_ssl.config import config_util  # pylint: disable=import-outside-toplevel
  if not (saved_model_dir or pipeline_config_path):
    raise ValueError('--label_map_path is needed')
  config_path = pipeline_config_path or os.path.join(_export_dir(saved_model_dir),
                                                     'pipeline.config')
  if not os.path.isfile(config_path):
    raise ValueError(f'--label_map_path is needed: no {config_path} to read it from')
  configs = config_util.get_configs_from_pipeline_file(config_path)
  readers = [configs['eval_input_config'], configs['train_input_config']]
  path = next((r.label_map_path for r in readers if r is not None and r.label_map_path), '')
  if not path:
    raise ValueError(f'--label_map_path is needed: {config_path} names no label_map_path')
  if not os.path.isfile(path):
    raise ValueError(f'--label_map_path is needed: {config_path} names label map {path}, which '
                     f'does not exist from {os.getcwd()}')
  return path


def _check_model_arguments(saved_model_dir, pipeline_config_path, checkpoint_dir):
  if bool(saved_model_dir) == bool(pipeline_config_path or checkpoint_dir):
    raise ValueError('give either --saved_model_dir or --pipeline_config_path with '
                     '--checkpoint_dir')
  if not saved_model_dir and not (pipeline_config_path and checkpoint_dir):
    raise ValueError('--pipeline_config_path and --checkpoint_dir go together')


def _check_arguments(output_format, image_dir, input_tfrecord, min_score, max_detections):
  if output_format not in FORMATS:
    raise ValueError(f'--format must be one of {FORMATS}, got {output_format!r}')
  if bool(image_dir) == bool(input_tfrecord):
    raise ValueError('give either --image_dir or --input_tfrecord')
  if not 0.0 <= min_score <= 1.0:
    raise ValueError(f'--min_score must be in [0, 1], got {min_score}')
  if max_detections is not None and max_detections < 1:
    raise ValueError(f'--max_detections_per_image must be >= 1, got {max_detections}')


def _check_num_classes(outputs, max_label_id, label_map_path):
  """The label map must name the model's classes: its largest id is the model's num_classes."""
  scores = outputs.get('detection_multiclass_scores')
  if scores is None:  # exports without it (some OD API ones): nothing to compare
    return
  num_classes = int(scores.shape[-1]) - 1
  if num_classes != max_label_id:
    raise ValueError(f'label map {label_map_path} has ids up to {max_label_id} but the model '
                     f'predicts {num_classes} classes: not the label map the model was trained '
                     'with')


def _build_detector(saved_model_dir, pipeline_config_path, checkpoint_dir, config_override):
  from mtl_ssl.export import inference  # pylint: disable=import-outside-toplevel
  if saved_model_dir:
    return inference.SavedModelDetector(saved_model_path(saved_model_dir))
  return inference.CheckpointDetector(pipeline_config_path, checkpoint_dir, config_override)


def _voc_plan(source, class_names, label_map_path, image_list, output_dir, options):
  """(refs to run, writer, image key) of a VOC submission."""
  unknown = files.check_voc_class_names(class_names, label_map_path)
  if unknown:
    logging.warning('label map %s: %s are not PASCAL VOC class names; the VOC server will not '
                    'take these files', label_map_path, ', '.join(unknown))
  names = (image_sources.read_image_list(image_list) if image_list
           else [ref.name for ref in source.refs])
  refs = image_sources.select(source.refs, names, f'--image_list {image_list}')
  writer = files.VocResultsWriter(output_dir, class_names, options['voc_competition'],
                                  options['voc_image_set'], options['voc_year'])
  return refs, writer, lambda ref: ref.name


def _coco_plan(source, image_list, coco_image_info, output_dir, options):
  """(refs to run, writer, image key, CocoImageIds) of a COCO submission."""
  name = files.coco_results_name(options['coco_split'], options['alg_name'])
  image_ids = files.CocoImageIds(coco_image_info)
  if image_ids.file_names() is not None:
    refs = image_sources.select(source.refs, image_ids.file_names(),
                                f'--coco_image_info {coco_image_info}',
                                key=lambda ref: ref.file_name)
  elif image_list:
    refs = image_sources.select(source.refs, image_sources.read_image_list(image_list),
                                f'--image_list {image_list}')
  else:
    refs = image_sources.select(source.refs, [ref.name for ref in source.refs], 'input')
  ids = {}
  for ref in refs:
    image_id = image_ids.image_id(ref)
    if image_id in ids:
      raise ValueError(f'{ids[image_id].where} and {ref.where} both get COCO image id '
                       f'{image_id}; give --coco_image_info')
    ids[image_id] = ref
  key = {ref.where: image_id for image_id, ref in ids.items()}
  writer = files.CocoResultsWriter(os.path.join(output_dir, name))
  return refs, writer, lambda ref: key[ref.where], image_ids


def make_submission(output_format, output_dir, *, saved_model_dir=None,
                    pipeline_config_path=None, checkpoint_dir=None, config_override=None,
                    image_dir=None, input_tfrecord=None, image_list=None, label_map_path=None,
                    min_score=0.0, max_detections_per_image=None, voc_year='VOC2012',
                    voc_image_set='test', voc_competition='comp4', coco_split='test-dev2017',
                    alg_name='mtlssl', coco_image_info=None, archive=True, show_progress=True,
                    detector=None):
  """Writes the result files of `output_format` ('voc' or 'coco') under output_dir.

  The model: saved_model_dir, or pipeline_config_path + checkpoint_dir, or `detector` (any
  object with detect(uint8 image [H,W,3], encoded bytes) -> the export's outputs of the image).

  max_detections_per_image None: 100 for COCO (the server's limit), all the model returns for
  VOC. Returns a summary dict: files, archive, images, detections, dropped_classes.
  """
  if detector is None:
    _check_model_arguments(saved_model_dir, pipeline_config_path, checkpoint_dir)
  _check_arguments(output_format, image_dir, input_tfrecord, min_score, max_detections_per_image)
  label_map_path = label_map_path or default_label_map_path(saved_model_dir,
                                                            pipeline_config_path)
  class_names = {class_id: name for name, class_id in
                 label_map_util.get_label_map_dict(label_map_path).items()}
  source = (image_sources.ImageDirSource(image_dir) if image_dir
            else image_sources.TFRecordSource(input_tfrecord))
  options = {'voc_year': voc_year, 'voc_image_set': voc_image_set,
             'voc_competition': voc_competition, 'coco_split': coco_split, 'alg_name': alg_name}
  image_ids = None
  if output_format == 'voc':
    refs, writer, key = _voc_plan(source, class_names, label_map_path, image_list, output_dir,
                                  options)
    max_detections = max_detections_per_image
  else:
    refs, writer, key, image_ids = _coco_plan(source, image_list, coco_image_info, output_dir,
                                              options)
    max_detections = max_detections_per_image or files.COCO_MAX_DETECTIONS
    if max_detections > files.COCO_MAX_DETECTIONS:
      logging.warning('--max_detections_per_image=%d: the COCO server keeps at most %d per image',
                      max_detections, files.COCO_MAX_DETECTIONS)
  logging.info('%d of the %d images of %s; label map %s', len(refs), len(source.refs),
               source.description, label_map_path)

  if detector is None:
    detector = _build_detector(saved_model_dir, pipeline_config_path, checkpoint_dir,
                               config_override)
  dropped = collections.Counter()
  with writer:
    loaded = tqdm(source.load(refs), total=len(refs), desc=f'{output_format} submission',
                  unit='img', disable=not show_progress)
    for index, (ref, image, encoded) in enumerate(loaded):
      height, width = image.shape[:2]
      if image_ids is not None:
        image_ids.check_size(ref, height, width)
      outputs = detector.detect(image, encoded)
      if index == 0:
        _check_num_classes(outputs, max(class_names), label_map_path)
      boxes, scores, classes, dropped_here = files.select_detections(
          outputs, min_score, max_detections, class_names)
      dropped.update(dropped_here)
      writer.add(key(ref), height, width, boxes, scores, classes)
  written = writer.paths  # complete: renamed from their .partial names when the block ended
  summary = {'files': written, 'archive': None, 'images': len(refs),
             'detections': writer.num_detections, 'dropped_classes': dict(dropped)}
  if archive:
    summary['archive'] = (files.write_voc_archive(output_dir, written) if output_format == 'voc'
                          else files.write_coco_zip(written[0]))
  if dropped:
    logging.info('left out %d detections of class ids not in the label map: %s',
                 sum(dropped.values()), dict(sorted(dropped.items())))
  logging.info('%d detections of %d images in %s%s', summary['detections'], len(refs),
               os.path.dirname(written[0]),
               f'; upload {summary["archive"]}' if summary['archive'] else '')
  return summary
