"""docs/getting_started.md, "Your own data", executed: every command of the section, in order,
on generated VOC-layout and COCO data.

The commands are parsed from the markdown (```bash blocks; an HTML comment `<!-- own-data: X -->`
before a block says what it is: `voc` / `coco` for the two converter alternatives, `file NAME`
for a file to write, `edit NAME` for the fields to change in a config). Console scripts run
in-process through their [project.scripts] entry functions. So that the section stays fast in
CI, the training command gets `--num_train_steps=2`, `--norecord_summaries` and a
--config_override that shrinks the model (64x64 input, few proposals and windows, batch 2); the
other commands run as written.
"""
import io
import json
import os
import re
import shlex
import shutil

import numpy as np
from PIL import Image
from PIL import ImageDraw
import pytest
import tensorflow as tf

from mtl_ssl.config import config_util
from mtl_ssl.config import validation
from mtl_ssl.data import tf_example_util

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DOC = os.path.join(REPO, 'docs', 'getting_started.md')
CLASSES = ('apple', 'pear')
TINY_MODEL = """
model {
  faster_rcnn {
    image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
    first_stage_box_predictor_depth: 16
    first_stage_max_proposals: 8
    second_stage_batch_size: 8
  }
  mtl { num_windows: 4 foreground_grid_size: 8 window_min_size: 8 }
}
train_config { batch_size: 2 }
eval_config { batch_size: 2 num_visualizations: 1 }
"""
TRAIN_EXTRA = ['--num_train_steps=2', f'--config_override={TINY_MODEL}', '--log_every_n=1',
               '--seed=0', '--norecord_summaries']


# ---------------------------------------------------------------------------------------------
# the markdown

def own_data_section():
  with open(DOC, encoding='utf-8') as f:
    text = f.read()
  start = text.index('\n## Your own data\n')
  end = text.find('\n## ', start + 1)
  return text[start:end if end > 0 else len(text)]


def doc_blocks(section):
  """[(marker, language, body)] of the fenced blocks, marker from a preceding own-data comment."""
  pattern = re.compile(r'(?:<!-- own-data: ([^>]*?) -->\n)?```(\w*)\n(.*?)\n```', re.S)
  return [(m.group(1) or '', m.group(2), m.group(3)) for m in pattern.finditer(section)]


def shell_commands(body):
  """argv lists of a bash block (continuation lines joined)."""
  joined = re.sub(r'\\\n\s*', ' ', body)
  return [shlex.split(line) for line in joined.splitlines()
          if line.strip() and not line.strip().startswith('#')]


def console_scripts():
  """{command: (module, function)} from pyproject.toml's [project.scripts]."""
  with open(os.path.join(REPO, 'pyproject.toml'), encoding='utf-8') as f:
    text = f.read()
  table = text.split('[project.scripts]', 1)[1].split('\n[', 1)[0]
  return {name: tuple(target.split(':')) for name, target in
          re.findall(r'^(\w+)\s*=\s*"([\w.]+:\w+)"', table, re.M)}


def run_console_script(argv, monkeypatch):
  import importlib  # pylint: disable=import-outside-toplevel
  module, function = console_scripts()[argv[0]]
  entry = getattr(importlib.import_module(module), function)
  monkeypatch.setattr('sys.argv', list(argv))
  try:
    code = entry()
  except SystemExit as done:
    code = done.code
  assert code in (0, None), f'{shlex.join(argv)} exited with {code}'


# ---------------------------------------------------------------------------------------------
# generated data: apples (red discs) and pears (green boxes) on noise

def _scene(index):
  rng = np.random.default_rng(index)
  height, width = 96, 128
  image = Image.fromarray(rng.integers(60, 200, (height, width, 3), dtype=np.uint8))
  draw = ImageDraw.Draw(image)
  objects = []
  for k in range(1 + index % 3):
    name = CLASSES[(index + k) % 2]
    size = int(rng.integers(20, 40))
    x0, y0 = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
    box = (x0, y0, x0 + size, y0 + size)
    if name == 'apple':
      draw.ellipse(box, fill=(220, 30, 30))
    else:
      draw.rectangle(box, fill=(40, 200, 40))
    objects.append((name, box))
  return image, objects


def _voc_xml(filename, size, objects):
  parts = [f'<annotation><filename>{filename}</filename><size><width>{size[0]}</width>'
           f'<height>{size[1]}</height><depth>3</depth></size>']
  for name, (x0, y0, x1, y1) in objects:
    parts.append(f'<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin>'
                 f'<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>')
  return ''.join(parts) + '</annotation>'


def write_own_data(root, num_train=6, num_val=4):
  """my_data/ (VOC layout, one TIFF image, one box of a class outside the label map) and
  my_coco/ (the same images and known boxes as COCO json) under root."""
  voc, coco_images = root / 'my_data', root / 'my_coco' / 'images'
  for folder in (voc / 'Annotations', voc / 'JPEGImages', voc / 'ImageSets' / 'Main', coco_images):
    folder.mkdir(parents=True)
  splits = {'train': range(num_train), 'val': range(num_train, num_train + num_val)}
  coco = {split: {'images': [], 'annotations': [], 'categories': [
      {'id': i + 1, 'name': name} for i, name in enumerate(CLASSES)]} for split in splits}
  for split, indices in splits.items():
    (voc / 'ImageSets' / 'Main' / f'{split}.txt').write_text(
        ''.join(f'img{i}\n' for i in indices))
    for i in indices:
      image, objects = _scene(i)
      filename = f'img{i}.tif' if i == 1 else f'img{i}.jpg'
      buffer = io.BytesIO()
      image.save(buffer, format='TIFF' if i == 1 else 'JPEG')
      for folder in (voc / 'JPEGImages', coco_images):
        (folder / filename).write_bytes(buffer.getvalue())
      extra = [('plum', (2, 2, 12, 12))] if i == 0 else []  # not in the label map: dropped
      (voc / 'Annotations' / f'img{i}.xml').write_text(
          _voc_xml(filename, image.size, objects + extra))
      coco[split]['images'].append({'id': i, 'file_name': filename, 'width': image.size[0],
                                    'height': image.size[1]})
      for name, (x0, y0, x1, y1) in objects:
        coco[split]['annotations'].append({
            'id': len(coco[split]['annotations']) + 1, 'image_id': i,
            'category_id': CLASSES.index(name) + 1, 'bbox': [x0, y0, x1 - x0, y1 - y0],
            'area': (x1 - x0) * (y1 - y0), 'iscrowd': 0})
  for split in splits:
    (root / 'my_coco' / f'{split}.json').write_text(json.dumps(coco[split]))


def _record_contents(path):
  """What training reads of each example, in file order: pixels, boxes, labels, names."""
  contents = []
  for example in tf_example_util.read_examples(path):
    record = tf_example_util.example_to_dict(example)
    pixels = np.asarray(Image.open(io.BytesIO(record['encoded'])).convert('RGB'))
    contents.append((pixels, record['boxes'], record['labels'].tolist(), record['texts']))
  return contents


def _assert_same_records(first, second):
  assert len(first) == len(second) > 0
  for (pixels_a, boxes_a, labels_a, texts_a), (pixels_b, boxes_b, labels_b, texts_b) in zip(
      first, second):
    np.testing.assert_array_equal(pixels_a, pixels_b)
    np.testing.assert_allclose(boxes_a, boxes_b, rtol=1e-6)
    assert (labels_a, texts_a) == (labels_b, texts_b)


# ---------------------------------------------------------------------------------------------
# config edits

def _is_message(field):
  return field.message_type is not None


def _leaf_paths(message, prefix=''):
  """Dotted paths of every field set in message (a repeated message: its first element's)."""
  paths = []
  for field, value in message.ListFields():
    name = f'{prefix}.{field.name}' if prefix else field.name
    repeated = config_util._is_repeated(field)  # pylint: disable=protected-access
    if _is_message(field):
      paths += _leaf_paths(value[0] if repeated else value, name) or [name]
    else:
      paths.append(name)
  return paths


def _has_path(message, path):
  """Whether the dotted path is set in message (a repeated message: in its first element)."""
  for part in path.split('.'):
    field = message.DESCRIPTOR.fields_by_name[part]
    value = getattr(message, part)
    if config_util._is_repeated(field):  # pylint: disable=protected-access
      if not len(value):
        return False
      if not _is_message(field):
        return True
      message = value[0]
    elif _is_message(field):
      if not message.HasField(part):
        return False
      message = value
    else:
      return message.HasField(part)
  return True


def apply_config_edit(path, edit_text):
  """Writes path's config with the doc's fields set, as an editor would; every field the doc
  shows must already be in the copied config (the doc says 'edit', not 'add')."""
  config = config_util.get_pipeline_proto_from_file(path)
  edit = config_util.parse_pipeline_text(edit_text, 'the doc\'s edit block')
  missing = [p for p in _leaf_paths(edit) if not _has_path(config, p)]
  assert not missing, f'the doc edits fields the copied config does not have: {missing}'
  config_util.merge_replacing_lists(edit, config)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(config_util.pipeline_config_to_text(config))


# ---------------------------------------------------------------------------------------------

def test_section_blocks_are_all_understood():
  blocks = doc_blocks(own_data_section())
  markers = [marker.split()[0] if marker else '' for marker, _, _ in blocks]
  assert {'voc', 'coco', 'file', 'edit', 'run'} <= set(markers)
  scripts = console_scripts()
  for marker, language, body in blocks:
    if language == 'bash':
      for argv in shell_commands(body):
        assert argv[0] in scripts or argv[0] == 'cp', f'the docs test cannot run {argv[0]}'
    else:
      assert language in ('', 'text'), language
      assert language == '' or marker, f'a ```text block without an own-data marker:\n{body}'


def test_own_data_path_runs_as_documented(tmp_path, monkeypatch, caplog):
  monkeypatch.chdir(tmp_path)
  write_own_data(tmp_path)
  blocks = doc_blocks(own_data_section())
  ran, converted = [], {}
  for marker, language, body in blocks:
    kind, _, name = marker.partition(' ')
    if kind == 'file':
      (tmp_path / name).write_text(body + '\n')
    elif kind == 'edit':
      apply_config_edit(str(tmp_path / name), body)
    elif language == 'bash':
      for argv in shell_commands(body):
        if argv[0] == 'cp':
          shutil.copy(os.path.join(REPO, argv[1]), argv[2])  # paths of the repository root
        elif argv[0] == 'model_main_tf2' and not any(a.startswith('--checkpoint_dir') for a in argv):
          run_console_script(argv + TRAIN_EXTRA, monkeypatch)
        elif argv[0] == 'model_main_tf2':
          _run_eval_only(argv, monkeypatch)
        else:
          caplog.clear()
          run_console_script(argv, monkeypatch)
          if argv[0] == 'exporter_main_v2':
            assert 'Skipping full serialization' not in caplog.text
        ran.append(argv[0])
      if kind in ('voc', 'coco'):  # both converters made the records: keep each version
        converted[kind] = {split: _record_contents(f'data/my_{split}.record')
                           for split in ('train', 'val')}
  assert ran.count('mtl_ssl_create_pascal_tf_record') == 2
  assert ran.count('mtl_ssl_create_coco_tf_record') == 2
  assert ran[-4:] == ['model_main_tf2', 'model_main_tf2', 'exporter_main_v2', 'mtl_ssl_infer']

  # the VOC and the COCO conversion give the same training data (the TIFF re-encoded, the
  # unknown 'plum' box dropped), so the path after step 3 is the same for both
  for split in ('train', 'val'):
    _assert_same_records(converted['voc'][split], converted['coco'][split])
  assert len(converted['voc']['train']) == 6 and len(converted['voc']['val']) == 4

  # the edited config is valid and says what the doc says
  configs = validation.load_and_validate('my_model.config')
  assert configs['model'].faster_rcnn.num_classes == 2
  (reader,) = configs['eval_input_configs']
  assert list(reader.tf_record_input_reader.input_path) == ['data/my_val.record']

  # training recorded the steps it used, with the schedule stretched to them
  used = config_util.get_configs_from_pipeline_file('runs/my_model/pipeline.config')
  assert used['train_config'].num_steps == 2
  cosine = used['train_config'].optimizer.momentum_optimizer.learning_rate
  assert cosine.cosine_decay_learning_rate.total_steps == 2
  # evaluation of the final checkpoint, per class
  with open('runs/my_model/eval/metrics_2.json', encoding='utf-8') as f:
    metrics = json.load(f)['metrics']
  assert 'PascalBoxes_Precision/mAP@0.5IOU' in metrics
  assert {f'PascalBoxes_PerformanceByCategory/AP@0.5IOU/{c}' for c in CLASSES} <= set(metrics)
  assert tf.saved_model.contains_saved_model('exported/my_model/saved_model')
  with open('detections/my_model/detections.json', encoding='utf-8') as f:
    detected = json.load(f)['images']
  jpegs = sorted(n for n in os.listdir('my_data/JPEGImages') if n.endswith('.jpg'))
  assert [os.path.basename(d['image']) for d in detected] == jpegs


def _run_eval_only(argv, monkeypatch):
  """The evaluation-only command, which must end after the run's final checkpoint by itself."""
  real_iterator = tf.train.checkpoints_iterator

  def must_not_wait(*args, **kwargs):
    for path in real_iterator(*args, **kwargs):
      yield path
      raise AssertionError('evaluation-only mode waits for a checkpoint that never comes')

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(tf.train, 'checkpoints_iterator', must_not_wait)
    run_console_script(argv, monkeypatch)
