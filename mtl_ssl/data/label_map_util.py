"""Label maps: OD API `StringIntLabelMap` text protos -> dicts used by data, eval and export.

Ids are 1-based (0 is the implicit background class). Every failure names the file, and for
text-format errors and duplicate ids also the line, so a broken label map is fixed in one go.
"""
import re

from google.protobuf import text_format

from mtl_ssl.protos import string_int_label_map_pb2


class LabelMapError(ValueError):
  """A label map file that cannot be used (unreadable, malformed, duplicate or invalid ids)."""


def _read_text(path):
  try:
    with open(path, 'r', encoding='utf-8') as f:
      return f.read()
  except OSError as e:
    raise LabelMapError(f'label map {path}: cannot read file ({e.strerror or e})') from e
  except UnicodeDecodeError as e:
    raise LabelMapError(f'label map {path}: not UTF-8 text ({e})') from e


def _id_lines(text):
  """Line numbers (1-based) of every `id: N` field, in file order, ignoring comments."""
  lines = []
  for lineno, line in enumerate(text.splitlines(), start=1):
    code = line.split('#', 1)[0]
    for match in re.finditer(r'(?<![\w])id\s*:\s*(-?\d+)', code):
      lines.append((int(match.group(1)), lineno))
  return lines


def _line_of_id(id_lines, label_id, occurrence):
  """Line of the `occurrence`-th (0-based) `id: label_id` in the file, or None."""
  seen = [line for value, line in id_lines if value == label_id]
  return seen[occurrence] if occurrence < len(seen) else None


def _where(path, line):
  return f'{path}:{line}' if line is not None else path


def validate_label_map(label_map, path='<label map>', text=None):
  """Checks ids are >= 1 and unique and that each item has a name or display_name."""
  id_lines = _id_lines(text) if text is not None else []
  first_index = {}
  occurrences = {}
  for index, item in enumerate(label_map.item):
    occurrence = occurrences.get(item.id, 0)
    occurrences[item.id] = occurrence + 1
    line = _line_of_id(id_lines, item.id, occurrence)
    label = item.name or item.display_name
    if _has_presence(item, 'id') and not item.HasField('id'):
      raise LabelMapError(f'label map {_where(path, line)}: item #{index + 1} ({label!r}) has no id')
    if item.id == 0:
      raise LabelMapError(
          f'label map {_where(path, line)}: item #{index + 1} ({label!r}) has id 0; ids start at 1 '
          '(0 is the implicit background class)')
    if item.id < 0:
      raise LabelMapError(
          f'label map {_where(path, line)}: item #{index + 1} ({label!r}) has negative id {item.id}')
    if not label:
      raise LabelMapError(
          f'label map {_where(path, line)}: item #{index + 1} (id {item.id}) has neither name '
          'nor display_name')
    if item.id in first_index:
      first, first_line = first_index[item.id]
      raise LabelMapError(
          f'label map {_where(path, line)}: duplicate id {item.id}: item #{index + 1} '
          f'({label!r}) repeats the id of item #{first + 1} (line {first_line})')
    first_index[item.id] = (index, line)
  if not label_map.item:
    raise LabelMapError(f'label map {path}: has no items')


def _has_presence(message, field):
  """True when `field` tracks presence (proto2 optional), so HasField is meaningful."""
  try:
    message.HasField(field)
    return True
  except ValueError:
    return False


def load_labelmap(path):
  """Parses and validates a label map text proto; returns a `StringIntLabelMap`."""
  text = _read_text(path)
  label_map = string_int_label_map_pb2.StringIntLabelMap()
  try:
    text_format.Parse(text, label_map)
  except text_format.ParseError as e:
    # ParseError messages start with "line:col : ..."; keep them, prefixed with the file.
    line = getattr(e, 'GetLine', lambda: None)()
    where = _where(path, line)
    raise LabelMapError(f'label map {where}: not a valid StringIntLabelMap text proto: {e}') from e
  validate_label_map(label_map, path, text)
  return label_map


def get_label_map_dict(label_map_path_or_proto, use_display_name=False):
  """Returns {name: id}. With use_display_name, keys are display names (name if empty)."""
  label_map = _as_label_map(label_map_path_or_proto)
  where = label_map_path_or_proto if isinstance(label_map_path_or_proto, str) else '<label map>'
  result = {}
  for item in label_map.item:
    key = (item.display_name or item.name) if use_display_name else (item.name or item.display_name)
    if key in result and result[key] != item.id:
      raise LabelMapError(
          f'label map {where}: name {key!r} is used by ids {result[key]} and {item.id}; '
          f'{"display names" if use_display_name else "names"} must be unique to map names to ids')
    result[key] = item.id
  return result


def create_categories_from_labelmap(label_map_path_or_proto, use_display_name=True):
  """Returns [{'id': int, 'name': str}] sorted by id (display names by default, as the OD API)."""
  label_map = _as_label_map(label_map_path_or_proto)
  categories = []
  for item in sorted(label_map.item, key=lambda it: it.id):
    name = (item.display_name or item.name) if use_display_name else (item.name or item.display_name)
    categories.append({'id': int(item.id), 'name': name})
  return categories


def create_category_index(categories):
  """Returns {id: category dict} from a list of category dicts with an 'id' key."""
  index = {}
  for category in categories:
    index[int(category['id'])] = dict(category)
  return index


def create_category_index_from_labelmap(label_map_path_or_proto, use_display_name=True):
  return create_category_index(
      create_categories_from_labelmap(label_map_path_or_proto, use_display_name))


def get_max_label_map_index(label_map_path_or_proto):
  """The largest id: the number of classes a detector needs for this label map."""
  return max(item.id for item in _as_label_map(label_map_path_or_proto).item)


def labelmap_to_text(entries):
  """Text proto for [(id, name)] or [(id, name, display_name)] entries, in the given order."""
  label_map = string_int_label_map_pb2.StringIntLabelMap()
  for entry in entries:
    item = label_map.item.add()
    item.id = int(entry[0])
    item.name = entry[1]
    if len(entry) > 2 and entry[2]:
      item.display_name = entry[2]
  validate_label_map(label_map)
  return text_format.MessageToString(label_map)


def write_labelmap(path, entries):
  """Writes [(id, name[, display_name])] as a label map text proto file."""
  text = labelmap_to_text(entries)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  return path


def _as_label_map(label_map_path_or_proto):
  if isinstance(label_map_path_or_proto, string_int_label_map_pb2.StringIntLabelMap):
    return label_map_path_or_proto
  return load_labelmap(label_map_path_or_proto)
