"""Label map parsing, dict/category helpers, the shipped maps and the error messages."""
import os

import pytest

from mtl_ssl.data import label_map_util
from mtl_ssl.data.label_map_util import LabelMapError

MAPS_DIR = os.path.join(os.path.dirname(label_map_util.__file__), 'label_maps')


def _write(tmp_path, text, name='map.pbtxt'):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def test_parse_and_helpers(tmp_path):
  path = _write(tmp_path, '''
# a comment
item { name: "cat" id: 2 display_name: "Cat" }
item {
  name: "dog"
  id: 1
}
''')
  label_map = label_map_util.load_labelmap(path)
  assert [(i.name, i.id) for i in label_map.item] == [('cat', 2), ('dog', 1)]
  assert label_map_util.get_label_map_dict(path) == {'cat': 2, 'dog': 1}
  assert label_map_util.get_label_map_dict(path, use_display_name=True) == {'Cat': 2, 'dog': 1}
  categories = label_map_util.create_categories_from_labelmap(path)
  assert categories == [{'id': 1, 'name': 'dog'}, {'id': 2, 'name': 'Cat'}]
  assert label_map_util.create_categories_from_labelmap(path, use_display_name=False)[1] == {
      'id': 2, 'name': 'cat'}
  index = label_map_util.create_category_index(categories)
  assert index == {1: {'id': 1, 'name': 'dog'}, 2: {'id': 2, 'name': 'Cat'}}
  assert label_map_util.get_max_label_map_index(path) == 2
  # A proto is accepted in place of a path.
  assert label_map_util.get_label_map_dict(label_map) == {'cat': 2, 'dog': 1}


def test_write_roundtrip(tmp_path):
  path = str(tmp_path / 'out.pbtxt')
  label_map_util.write_labelmap(path, [(1, 'a'), (3, 'b', 'Bee')])
  assert label_map_util.get_label_map_dict(path) == {'a': 1, 'b': 3}
  assert label_map_util.get_label_map_dict(path, use_display_name=True) == {'a': 1, 'Bee': 3}


def test_syntax_error_names_file_and_line(tmp_path):
  path = _write(tmp_path, 'item {\n  name: "a"\n  id: 1\n}\nitem {\n  nme: "b"\n  id: 2\n}\n')
  with pytest.raises(LabelMapError) as info:
    label_map_util.load_labelmap(path)
  message = str(info.value)
  assert path + ':6' in message and 'nme' in message


def test_duplicate_id_names_both_lines(tmp_path):
  path = _write(tmp_path, 'item { name: "a" id: 1 }\nitem { name: "b" id: 2 }\n'
                '# id: 2 in a comment is ignored\nitem { name: "c" id: 2 }\n')
  with pytest.raises(LabelMapError) as info:
    label_map_util.load_labelmap(path)
  message = str(info.value)
  assert f'{path}:4' in message and 'duplicate id 2' in message and '(line 2)' in message
  assert "'c'" in message


@pytest.mark.parametrize('text, expected', [
    ('item { name: "bg" id: 0 }\n', 'has id 0'),
    ('item { name: "x" id: -3 }\n', 'negative id -3'),
    ('item { name: "x" }\n', 'has no id'),
    ('item { id: 4 }\n', 'neither name nor display_name'),
    ('', 'has no items'),
])
def test_invalid_items(tmp_path, text, expected):
  path = _write(tmp_path, text)
  with pytest.raises(LabelMapError, match=expected) as info:
    label_map_util.load_labelmap(path)
  assert path in str(info.value)


def test_missing_file_and_duplicate_names(tmp_path):
  with pytest.raises(LabelMapError, match='cannot read file'):
    label_map_util.load_labelmap(str(tmp_path / 'nope.pbtxt'))
  path = _write(tmp_path, 'item { name: "NA" id: 1 }\nitem { name: "NA" id: 2 }\n')
  with pytest.raises(LabelMapError, match="name 'NA' is used by ids 1 and 2"):
    label_map_util.get_label_map_dict(path)


def test_shipped_pascal_map():
  names = label_map_util.get_label_map_dict(os.path.join(MAPS_DIR, 'pascal_label_map.pbtxt'))
  voc = ['aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
         'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
         'train', 'tvmonitor']
  assert names == {name: i + 1 for i, name in enumerate(voc)}


def test_shipped_coco_map():
  path = os.path.join(MAPS_DIR, 'mscoco_label_map.pbtxt')
  categories = label_map_util.create_categories_from_labelmap(path)
  ids = [c['id'] for c in categories]
  assert len(ids) == 80 and ids[0] == 1 and ids[-1] == 90
  assert sorted(set(range(1, 91)) - set(ids)) == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
  index = label_map_util.create_category_index(categories)
  assert index[1]['name'] == 'person' and index[13]['name'] == 'stop sign'
  assert index[90]['name'] == 'toothbrush' and index[67]['name'] == 'dining table'
