"""The tf.data pipeline end to end on real TFRecords (dataset_builder.build + inputs transform)."""
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

import input_records as ir
from mtl_ssl.builders import dataset_builder
from mtl_ssl.data.fields import InputDataFields as F
from mtl_ssl.mtl import labels as mtl_labels
from mtl_ssl.protos import pipeline_pb2

FIXED_32 = 'fixed_shape_resizer { height: 32 width: 32 }'


def _config(paths, reader='', resizer=FIXED_32, mtl='', train='', num_classes=3):
  paths = [paths] if isinstance(paths, str) else paths
  inputs = ' '.join(f'input_path: "{p}"' for p in paths)
  text = f"""
    model {{ {('mtl { ' + mtl + ' }') if mtl else ''}
      faster_rcnn {{ num_classes: {num_classes} image_resizer {{ {resizer} }} }} }}
    train_config {{ {train} }}
    train_input_reader {{ tf_record_input_reader {{ {inputs} }} {reader} }}"""
  return text_format.Parse(text, pipeline_pb2.TrainEvalPipelineConfig())


def _build(config, batch_size=1, is_training=False, train=True, **kwargs):
  return dataset_builder.build(config.train_input_reader, batch_size, model_config=config.model,
                               train_config=config.train_config if train else None,
                               is_training=is_training, **kwargs)


def _elements(dataset):
  """Unbatches a dataset into a list of per-image (features, labels) numpy dicts."""
  out = []
  for features, labels in dataset.as_numpy_iterator():
    for b in range(len(features[F.source_id])):
      out.append(({k: v[b] for k, v in features.items()}, {k: v[b] for k, v in labels.items()}))
  return out


def test_keep_aspect_images_are_not_padded_at_batch_1_and_static_with_pad_to_max(tmp_path):
  shapes = [(30, 20), (20, 30), (16, 40)]
  records = [ir.drawn_example(h, w, [[0.1, 0.1, 0.6, 0.5]], [1], source_id=f'im{i}')
             for i, (h, w) in enumerate(shapes)]
  path = ir.write(tmp_path / 'x.tfrecord', records)
  resizer = 'keep_aspect_ratio_resizer { min_dimension: 24 max_dimension: 40 %s }'
  config = _config(path, reader='shuffle: false num_epochs: 1', resizer=resizer % '')
  sizes = [tuple(f[F.image].shape[1:3]) for f, _ in _build(config).as_numpy_iterator()]
  assert sizes == [(36, 24), (24, 36), (16, 40)]  # exactly the resized images, no pixel added
  config = _config(path, reader='shuffle: false num_epochs: 1',
                   resizer=resizer % 'pad_to_max_dimension: true')
  dataset = _build(config, batch_size=2)
  assert dataset.element_spec[0][F.image].shape.as_list() == [None, 40, 40, 3]  # static H, W
  assert [f[F.image].shape[1:3] for f, _ in dataset.as_numpy_iterator()] == [(40, 40)] * 2


def _ids(dataset):
  return [f[F.source_id].decode() for f, _ in _elements(dataset)]


def _simple(tmp_path, n, name='data.tfrecord', fmt='png'):
  records = [ir.drawn_example(20, 24, [[0.1, 0.1, 0.6, 0.5]], [1], fmt=fmt, source_id=f'im{i}')
             for i in range(n)]
  return ir.write(tmp_path / name, records)


# ---------------------------------------------------------------- batches: keys, shapes, values

def test_batch_matches_the_contract_jpeg_and_png(tmp_path):
  shapes = [(30, 20), (20, 30), (24, 24), (16, 40)]
  boxes = [[[0.1, 0.1, 0.6, 0.5], [0.5, 0.5, 0.9, 0.95]], [[0.2, 0.3, 0.4, 0.9]], [],
           [[0, 0, 1, 1]]]
  classes = [[1, 3], [2], [], [3]]
  records = [ir.drawn_example(h, w, b, c, fmt='jpeg' if i % 2 else 'png', source_id=f'im{i}',
                              difficult=[1] * len(c) if i == 1 else None)
             for i, ((h, w), b, c) in enumerate(zip(shapes, boxes, classes))]
  config = _config(ir.write(tmp_path / 'x.tfrecord', records),
                   reader='shuffle: false num_epochs: 1 max_number_of_boxes: 5',
                   resizer='keep_aspect_ratio_resizer { min_dimension: 24 max_dimension: 40 }')
  preprocess = lambda image: (image / 127.5 - 1.0, tf.shape(image)[None, 1:4])
  dataset = _build(config, batch_size=2, model_preprocess_fn=preprocess,
                   retain_original_image=True)
  features, labels = dataset.element_spec
  # no pad_to_max_dimension: the image size varies per batch (padded to the batch's largest)
  expected = {
      F.image: ((2, None, None, 3), tf.float32), F.true_image_shape: ((2, 3), tf.int32),
      F.original_image_spatial_shape: ((2, 2), tf.int32), F.source_id: ((2,), tf.string),
      F.original_image: ((2, None, None, 3), tf.uint8),
      F.groundtruth_boxes: ((2, 5, 4), tf.float32), F.groundtruth_classes: ((2, 5, 3), tf.float32),
      F.num_groundtruth_boxes: ((2,), tf.int32), F.groundtruth_weights: ((2, 5), tf.float32),
      F.groundtruth_difficult: ((2, 5), tf.int32), F.groundtruth_is_crowd: ((2, 5), tf.int32),
  }
  got = {k: (tuple(v.shape), v.dtype) for k, v in {**features, **labels}.items()}
  # eval keeps a partial last batch, so the batch dimension is not static there
  assert {k: (s[1:], d) for k, (s, d) in got.items()} == {
      k: (s[1:], d) for k, (s, d) in expected.items()}

  for features, _ in dataset.as_numpy_iterator():  # largest true size, up to a multiple of 32
    largest = features[F.true_image_shape][:, :2].max(axis=0)
    assert features[F.image].shape[1:3] == tuple(-(-largest // 32) * 32)
  elements = _elements(dataset)
  assert [f[F.source_id] for f, _ in elements] == [b'im0', b'im1', b'im2', b'im3']
  for i, (f, l) in enumerate(elements):
    h, w = shapes[i]
    scale = 24 / min(h, w) if max(h, w) * 24 / min(h, w) <= 40 else 40 / max(h, w)
    true_h, true_w = int(round(h * scale)), int(round(w * scale))
    np.testing.assert_array_equal(f[F.true_image_shape], [true_h, true_w, 3])
    np.testing.assert_array_equal(f[F.original_image_spatial_shape], [h, w])
    # normalized inside, zeros in the padding; original_image is the un-normalized picture
    assert np.all(f[F.image][true_h:] == 0) and np.all(f[F.image][:, true_w:] == 0)
    assert np.all(f[F.original_image][true_h:] == 0)
    np.testing.assert_allclose(f[F.image][:true_h, :true_w],
                               f[F.original_image][:true_h, :true_w] / 127.5 - 1.0, atol=0.01)
    assert -1.0 <= f[F.image].min() and f[F.image].max() <= 1.0
    n = len(classes[i])
    assert l[F.num_groundtruth_boxes] == n
    np.testing.assert_allclose(l[F.groundtruth_boxes][:n], np.reshape(boxes[i], (-1, 4)), atol=1e-6)
    assert np.all(l[F.groundtruth_boxes][n:] == 0)
    one_hot = np.zeros([5, 3])
    one_hot[np.arange(n), np.asarray(classes[i], int) - 1] = 1
    np.testing.assert_array_equal(l[F.groundtruth_classes], one_hot)
    np.testing.assert_array_equal(l[F.groundtruth_weights], [1.0] * n + [0.0] * (5 - n))
    np.testing.assert_array_equal(l[F.groundtruth_difficult], [int(i == 1)] * n + [0] * (5 - n))
    np.testing.assert_array_equal(l[F.groundtruth_is_crowd], 0)


def test_image_stays_0_to_255_without_model_preprocess_fn(tmp_path):
  config = _config(_simple(tmp_path, 2), reader='shuffle: false num_epochs: 1')
  (f, _), _ = _elements(_build(config))
  assert F.original_image not in f
  image = ir.draw(20, 24, [[0.1, 0.1, 0.6, 0.5]]).astype(np.float32)
  expected = tf.image.resize(image, (32, 32)).numpy()
  np.testing.assert_allclose(f[F.image], expected, atol=1e-3)
  assert f[F.image].max() > 200


def test_training_drops_the_remainder_eval_keeps_it(tmp_path):
  config = _config(_simple(tmp_path, 5), reader='shuffle: false num_epochs: 1')
  train = list(_build(config, batch_size=2, is_training=True).as_numpy_iterator())
  assert [len(f[F.source_id]) for f, _ in train] == [2, 2]
  assert _build(config, batch_size=2, is_training=True).element_spec[0][F.image].shape[0] == 2
  evaluation = list(_build(config, batch_size=2, is_training=False).as_numpy_iterator())
  assert [len(f[F.source_id]) for f, _ in evaluation] == [2, 2, 1]


# ---------------------------------------------------------------- reading: shards, sampling, shards

def test_sharded_files_by_glob_and_shard_pattern(tmp_path):
  for shard in range(3):
    records = [ir.drawn_example(8, 8, [], [], source_id=f's{shard}-{i}') for i in range(3)]
    ir.write(tmp_path / f'train.record-{shard:05d}-of-00003', records)
  expected = sorted(f's{s}-{i}' for s in range(3) for i in range(3))
  for pattern in ('train.record-?????-of-00003', 'train.record-*'):
    config = _config(str(tmp_path / pattern), reader='num_epochs: 1 shuffle: true num_readers: 2')
    assert sorted(_ids(_build(config, seed=3))) == expected
  config = _config([str(tmp_path / 'train.record-00000-of-00003'),
                    str(tmp_path / 'train.record-0000[12]-of-00003')], reader='num_epochs: 2')
  assert sorted(_ids(_build(config))) == sorted(expected * 2)


def test_sample_1_of_n_examples(tmp_path):
  config = _config(_simple(tmp_path, 10), reader='shuffle: false num_epochs: 1 '
                   'sample_1_of_n_examples: 3')
  assert _ids(_build(config)) == ['im0', 'im3', 'im6', 'im9']


@pytest.mark.parametrize('num_files', [1, 2])
def test_input_context_shards_between_pipelines(tmp_path, num_files):
  paths = []
  for f in range(num_files):
    records = [ir.drawn_example(8, 8, [], [], source_id=f'f{f}-{i}') for i in range(4)]
    paths.append(ir.write(tmp_path / f'part{f}.tfrecord', records))
  config = _config(paths, reader='shuffle: false num_epochs: 1')
  seen = []
  for pipeline in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                         num_replicas_in_sync=2)
    dataset = _build(config, batch_size=4, input_context=context)
    batches = list(dataset.as_numpy_iterator())
    assert all(len(f[F.source_id]) <= 2 for f, _ in batches)  # per-replica batch size
    seen.append({s.decode() for f, _ in batches for s in f[F.source_id]})
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == {f'f{f}-{i}' for f in range(num_files) for i in range(4)}


def test_missing_files_and_empty_files_are_errors(tmp_path):
  with pytest.raises(ValueError, match='matches no file'):
    _build(_config(str(tmp_path / 'nothing-*.tfrecord')))
  empty = ir.write(tmp_path / 'empty.tfrecord', [])
  with pytest.raises(ValueError, match='no records'):
    _build(_config(empty))


def test_class_text_is_mapped_with_the_label_map(tmp_path):
  label_map = tmp_path / 'map.pbtxt'
  label_map.write_text("item { id: 1 name: 'cat' } item { id: 3 name: 'dog' }")
  png = ir.encode(ir.draw(8, 8, []), 'png')
  record = ir.example(png, 'png', [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]], texts=['dog', 'cat'])
  config = _config(ir.write(tmp_path / 'x.tfrecord', [record]),
                   reader=f'label_map_path: "{label_map}" num_epochs: 1')
  (_, labels), = _elements(_build(config))
  np.testing.assert_array_equal(labels[F.groundtruth_classes][:2], [[0, 0, 1], [1, 0, 0]])


def test_label_map_ids_beyond_num_classes_are_a_build_error(tmp_path):
  label_map = tmp_path / 'map.pbtxt'
  label_map.write_text("item { id: 1 name: 'cat' } item { id: 9 name: 'dog' }")
  config = _config(_simple(tmp_path, 1), reader=f'label_map_path: "{label_map}"')
  with pytest.raises(ValueError, match=r'\[9\].*num_classes'):
    _build(config)


# ---------------------------------------------------------------- bad input (docs/data.md)

def test_undecodable_images_are_dropped_and_reported_with_file_and_index(tmp_path, capfd):
  png = ir.encode(ir.draw(8, 8, []), 'png')
  jpeg = ir.encode(ir.draw(8, 8, []), 'jpeg')
  records = [ir.example(png, 'png', source_id='ok0'),
             ir.example(b'\x89PNG garbage', 'png', source_id='bad1'),
             ir.example(jpeg[:len(jpeg) // 2], 'jpeg', source_id='bad2'),
             ir.example(png, 'png', source_id='ok3'),
             b'not a tf.Example at all']
  path = ir.write(tmp_path / 'x.tfrecord', records)
  config = _config(path, reader='shuffle: false num_epochs: 1')
  assert _ids(_build(config)) == ['ok0', 'ok3']
  err = capfd.readouterr().err
  assert f'dropped {path} record 1:' in err and f'dropped {path} record 2:' in err
  assert f'dropped {path} record 4:' in err and 'records dropped so far: 3' in err


def test_a_malformed_record_stops_the_pipeline_naming_file_record_and_key(tmp_path):
  png = ir.encode(ir.draw(8, 8, []), 'png')
  records = [ir.example(png, 'png', source_id='ok0'), ir.example(png, 'png', source_id='ok1'),
             ir.example(png, 'png', skip=('image/encoded',)),
             ir.example(png, 'png', source_id='ok3')]
  path = ir.write(tmp_path / 'x.tfrecord', records)
  dataset = _build(_config(path, reader='shuffle: false num_epochs: 1'))
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    list(dataset.as_numpy_iterator())
  message = error.value.message
  assert path in message and 'record 2' in message and 'image/encoded' in message


def test_a_bad_first_record_fails_at_build_time(tmp_path):
  png = ir.encode(ir.draw(8, 8, []), 'png')
  path = ir.write(tmp_path / 'x.tfrecord', [ir.example(png, 'png', [[0, 0, 1, 1]])])
  with pytest.raises(ValueError, match=rf'{path} record 0: .*image/object/class/label'):
    _build(_config(path))


def test_bad_boxes_are_dropped_or_clipped_and_counted(tmp_path, capfd):
  boxes = [[0.1, 0.1, 0.5, 0.5],      # fine
           [0.5, 0.1, 0.2, 0.6],      # inverted -> dropped (degenerate)
           [0.3, 0.3, 0.3, 0.7],      # zero height -> dropped (degenerate)
           [-0.2, 0.6, 0.4, 1.3],     # crosses the border -> clipped to [0, 0.6, 0.4, 1]
           [1.1, 0.2, 1.4, 0.4],      # completely below the image -> empty after clip, dropped
           [0.2, 0.2, 0.7, 0.7],      # class 4 > num_classes -> dropped (unknown class)
           [0.6, 0.6, 0.9, 0.9]]      # class 0 -> dropped (unknown class)
  record = ir.example(ir.encode(ir.draw(10, 10, []), 'png'), 'png', boxes,
                      labels=[1, 1, 2, 3, 2, 4, 0], source_id='b')
  path = ir.write(tmp_path / 'x.tfrecord', [record])
  (_, labels), = _elements(_build(_config(path, reader='num_epochs: 1')))
  assert labels[F.num_groundtruth_boxes] == 2
  np.testing.assert_allclose(labels[F.groundtruth_boxes][:2],
                             [[0.1, 0.1, 0.5, 0.5], [0.0, 0.6, 0.4, 1.0]], atol=1e-6)
  np.testing.assert_array_equal(labels[F.groundtruth_classes][:2], [[1, 0, 0], [0, 0, 1]])
  err = capfd.readouterr().err
  assert f'{path} record 0:' in err
  assert '2 boxes dropped: class id not in the label map' in err
  assert '2 boxes dropped: zero area, inverted' in err
  assert '1 boxes dropped: empty after clipping' in err


def test_more_boxes_than_max_number_of_boxes_are_cut_and_counted(tmp_path, capfd):
  boxes = [[0.1 * i, 0.1, 0.1 * i + 0.1, 0.5] for i in range(5)]
  record = ir.drawn_example(20, 20, boxes, [1, 2, 3, 1, 2], source_id='many')
  config = _config(ir.write(tmp_path / 'x.tfrecord', [record]),
                   reader='num_epochs: 1 max_number_of_boxes: 3')
  (_, labels), = _elements(_build(config))
  assert labels[F.num_groundtruth_boxes] == 3
  np.testing.assert_allclose(labels[F.groundtruth_boxes], boxes[:3], atol=1e-6)
  assert '2 boxes dropped: more than max_number_of_boxes' in capfd.readouterr().err
  # train_config.max_number_of_boxes, when set, wins for training
  config.train_config.max_number_of_boxes = 4
  dataset = _build(config, is_training=True)
  assert dataset.element_spec[1][F.groundtruth_boxes].shape == (1, 4, 4)


MTL_ALL = 'window: true closeness: true edgemask: true num_windows: 6 foreground_grid_size: 8'


@pytest.mark.parametrize('is_training', [True, False])
def test_images_without_boxes_are_kept_with_mtl_labels(tmp_path, is_training):
  records = [ir.drawn_example(16, 16, [], [], source_id='empty'),
             ir.drawn_example(16, 16, [[0.2, 0.2, 0.6, 0.6]], [2], source_id='one')]
  config = _config(ir.write(tmp_path / 'x.tfrecord', records), mtl=MTL_ALL,
                   reader='shuffle: false num_epochs: 1',
                   train='data_augmentation_options { random_crop_image {} }')
  elements = _elements(_build(config, is_training=is_training))
  assert [f[F.source_id] for f, _ in elements] == [b'empty', b'one']
  labels = elements[0][1]
  assert labels[F.num_groundtruth_boxes] == 0
  np.testing.assert_array_equal(labels[F.groundtruth_mtl_windows], [[0, 0, 1, 1]] * 6)
  np.testing.assert_array_equal(labels[F.groundtruth_mtl_window_labels], [[1, 0, 0, 0]] * 6)
  assert np.all(labels[F.groundtruth_mtl_closeness_labels] == 0)
  assert np.all(labels[F.groundtruth_mtl_foreground_mask] == 0)
  np.testing.assert_allclose(labels[F.groundtruth_mtl_foreground_weights], 1.0)


# ---------------------------------------------------------------- online MTL labels

def test_no_mtl_keys_when_mtl_is_absent_or_all_tasks_off(tmp_path):
  path = _simple(tmp_path, 1)
  for mtl in ('', 'refine: false window: false'):
    labels = _build(_config(path, mtl=mtl)).element_spec[1]
    assert not [k for k in labels if 'mtl' in k]
  labels = _build(_config(path, mtl='closeness: true')).element_spec[1]
  assert [k for k in labels if 'mtl' in k] == [F.groundtruth_mtl_closeness_labels]


def _flip_records():
  boxes = [[[0.1, 0.05, 0.45, 0.4], [0.5, 0.55, 0.9, 0.95]],
           [[0.2, 0.1, 0.8, 0.3], [0.15, 0.6, 0.5, 0.9], [0.55, 0.35, 0.95, 0.7]],
           [[0.3, 0.6, 0.7, 0.98]]]
  classes = [[1, 2], [3, 1, 1], [2]]
  return [ir.drawn_example(40, 48, b, c, source_id=f'im{i}')
          for i, (b, c) in enumerate(zip(boxes, classes))], classes


def _inside_colors_match(image, boxes, color_ids):
  h, w = image.shape[:2]
  for box, i in zip(boxes, color_ids):
    ymin, xmin, ymax, xmax = box
    inside = image[int(np.ceil(ymin * h)) + 1:int(ymax * h) - 1,
                   int(np.ceil(xmin * w)) + 1:int(xmax * w) - 1]
    np.testing.assert_allclose(inside.reshape(-1, 3).mean(0), ir.COLORS[i], atol=2.0)


def test_horizontal_flip_keeps_image_boxes_and_all_mtl_labels_in_agreement(tmp_path):
  records, classes = _flip_records()
  path = ir.write(tmp_path / 'x.tfrecord', records)
  resizer = 'keep_aspect_ratio_resizer { min_dimension: 40 max_dimension: 48 }'  # identity size
  reader = 'shuffle: false num_epochs: 4'
  plain = {f[F.source_id]: (f, l) for f, l in _elements(
      _build(_config(path, reader=reader, resizer=resizer, mtl=MTL_ALL), is_training=True))}
  config = _config(path, reader=reader, resizer=resizer, mtl=MTL_ALL,
                   train='data_augmentation_options { random_horizontal_flip {} }')
  flips = []
  for f, l in _elements(_build(config, is_training=True, seed=11)):
    ref_f, ref_l = plain[f[F.source_id]]
    i = int(f[F.source_id][2:])
    n = l[F.num_groundtruth_boxes]
    h, w = f[F.true_image_shape][:2]
    assert (h, w) == (40, 48)
    image, ref_image = f[F.image][:h, :w], ref_f[F.image][:h, :w]
    flipped = not np.array_equal(image, ref_image)
    flips.append(flipped)
    ref_boxes = ref_l[F.groundtruth_boxes][:n]
    if flipped:
      np.testing.assert_array_equal(image, ref_image[:, ::-1])
      ref_boxes = np.stack([ref_boxes[:, 0], 1 - ref_boxes[:, 3], ref_boxes[:, 2],
                            1 - ref_boxes[:, 1]], 1)
    boxes = l[F.groundtruth_boxes][:n]
    np.testing.assert_allclose(boxes, ref_boxes, atol=1e-6)
    _inside_colors_match(image, boxes, range(n))  # the image agrees with its boxes
    # every MTL label agrees with a recomputation from the (flipped) boxes with the labels API
    cls = np.asarray(classes[i], np.int32)
    windows = l[F.groundtruth_mtl_windows]
    np.testing.assert_allclose(
        l[F.groundtruth_mtl_window_labels],
        mtl_labels.multi_object_labels(windows, boxes, cls, 3).numpy(), atol=1e-6)
    np.testing.assert_allclose(
        l[F.groundtruth_mtl_closeness_labels][:n],
        mtl_labels.closeness_labels(boxes, cls, 3, h, w).numpy(), atol=1e-6)
    assert np.all(l[F.groundtruth_mtl_closeness_labels][n:] == 0)
    mask, weights = mtl_labels.foreground_labels(boxes, grid_size=8)
    np.testing.assert_array_equal(l[F.groundtruth_mtl_foreground_mask], mask.numpy())
    np.testing.assert_allclose(l[F.groundtruth_mtl_foreground_weights], weights.numpy(), atol=1e-6)
    # the windows really overlap the flipped boxes, and mirrored windows on the mirrored boxes
    # get the same labels
    mirror = lambda b: np.stack([b[:, 0], 1 - b[:, 3], b[:, 2], 1 - b[:, 1]], 1)
    np.testing.assert_allclose(
        mtl_labels.multi_object_labels(mirror(windows), mirror(boxes), cls, 3).numpy(),
        l[F.groundtruth_mtl_window_labels], atol=1e-6)
    assert np.all(l[F.groundtruth_mtl_window_labels][:, 0] < 1.0)  # every window touches a box
  assert any(flips) and not all(flips)


def _window_arrays(dataset):
  return [(f[F.source_id], l[F.groundtruth_mtl_windows], f[F.image]) for f, l in _elements(dataset)]


def test_seeded_pipeline_is_reproducible_and_windows_change_every_epoch(tmp_path):
  records, _ = _flip_records()
  path = ir.write(tmp_path / 'x.tfrecord', records)
  config = _config(path, reader='shuffle: true num_epochs: 2 shuffle_buffer_size: 4',
                   mtl='window: true num_windows: 4 window_min_size: 8',
                   train='data_augmentation_options { random_horizontal_flip {} } '
                         'data_augmentation_options { random_adjust_brightness {} }')
  first = _window_arrays(_build(config, is_training=True, seed=5))
  second = _window_arrays(_build(config, is_training=True, seed=5))
  assert len(first) == 6
  assert all(not np.allclose(windows, [[0, 0, 1, 1]] * 4) for _, windows, _ in first)
  for (id_a, win_a, img_a), (id_b, win_b, img_b) in zip(first, second):
    assert id_a == id_b
    np.testing.assert_array_equal(win_a, win_b)
    np.testing.assert_array_equal(img_a, img_b)
  by_id = {}
  for source_id, windows, _ in first:
    by_id.setdefault(source_id, []).append(windows)
  assert all(len(v) == 2 and not np.allclose(v[0], v[1]) for v in by_id.values())
  other = _window_arrays(_build(config, is_training=True, seed=6))
  assert any(not np.allclose(a[1], b[1]) for a, b in zip(first, other))
  # iterating the same dataset again (a new epoch loop) draws new windows too
  config.train_input_reader.num_epochs = 1
  dataset = _build(config, is_training=True, seed=5)
  again = [dict((i, w.tobytes()) for i, w, _ in _window_arrays(dataset)) for _ in range(2)]
  assert all(again[0][k] != again[1][k] for k in again[0])


def test_wrong_feature_types_drop_the_record_and_corrupt_framing_stops(tmp_path, capfd):
  png = ir.encode(ir.draw(8, 8, []), 'png')
  float_height = {'image/height': tf.train.Feature(float_list=tf.train.FloatList(value=[8.0]))}
  records = [ir.example(png, 'png', source_id='ok0'),
             ir.example(png, 'png', source_id='typed1', extra=float_height),
             ir.example(png, 'png', source_id='ok2')]
  path = ir.write(tmp_path / 'x.tfrecord', records)
  assert _ids(_build(_config(path, reader='shuffle: false num_epochs: 1'))) == ['ok0', 'ok2']
  assert f'dropped {path} record 1:' in capfd.readouterr().err
  data = bytearray(open(path, 'rb').read())
  data[len(data) - 10] ^= 0xFF  # inside the last record's payload: its CRC no longer matches
  (tmp_path / 'corrupt.tfrecord').write_bytes(bytes(data))
  dataset = _build(_config(str(tmp_path / 'corrupt.tfrecord'), reader='shuffle: false '
                           'num_epochs: 1'))
  with pytest.raises(tf.errors.DataLossError):
    list(dataset.as_numpy_iterator())


@pytest.mark.parametrize('original', [False, True])
def test_window_min_size_in_resized_or_original_pixels(tmp_path, original):
  # a 100 x 100 image resized to 200 x 200; window_min_size 80 pixels is 0.4 of the resized image
  # but 0.8 of the original (mtl.labels_in_original_pixels, as the original's offline labels)
  path = ir.write(tmp_path / 'x.tfrecord', [ir.drawn_example(100, 100, [[0.3, 0.3, 0.7, 0.7]],
                                                              [1])])
  mtl = ('window: true num_windows: 64 window_min_size: 80 window_class_loss_weight: 1.0 '
         f'labels_in_original_pixels: {str(original).lower()}')
  config = _config(path, reader='shuffle: false num_epochs: 1', mtl=mtl,
                   resizer='keep_aspect_ratio_resizer { min_dimension: 200 max_dimension: 400 }')
  features, labels = next(iter(_build(config, seed=4)))
  assert features[F.true_image_shape].numpy().tolist() == [[200, 200, 3]]
  windows = labels[F.groundtruth_mtl_windows].numpy()[0]
  sides = np.minimum(windows[:, 2] - windows[:, 0], windows[:, 3] - windows[:, 1])
  assert sides.min() >= (0.8 if original else 0.4) - 1e-6
  if not original:
    assert sides.min() < 0.8  # some windows are smaller than the original-pixel minimum
