"""The detector's only contact points with the MTL add-on (architecture §6).

make_heads: MTLHeads when model.mtl turns a task on, else None.
mtl_groundtruth: the padded MTL labels of the batch; labels that the input
pipeline did not provide are made here from the boxes with
mtl_ssl.mtl.labels.make_mtl_labels, so a plain box+class batch trains too.
"""
import tensorflow as tf

# labels that must come from the same sampling (windows and their labels)
_TOGETHER = (('mtl_windows', 'mtl_window_labels'),)


def make_heads(mtl_config, num_classes, feature_extractor, main_box_classifier,
               crop_fn, is_training, meta_arch, rfcn_ps_pool_fn=None,
               feature_levels=None, window_crop_fn=None, closeness_crop_fn=None):
  """window_crop_fn / closeness_crop_fn: those heads' own crop ops (mtl.window_crop_size,
  closeness_crop_size); None: the window head uses crop_fn, the closeness head the
  detector's proposal crops."""
  if mtl_config is None:
    return None
  from mtl_ssl.mtl import heads  # pylint: disable=g-import-not-at-top
  if not heads.any_task_on(mtl_config):
    return None
  kwargs = {'feature_levels': feature_levels} if feature_levels else {}
  for key, value in (('window_crop_fn', window_crop_fn),
                     ('closeness_crop_fn', closeness_crop_fn)):
    if value is not None:
      kwargs[key] = value
  return heads.MTLHeads(mtl_config, num_classes, feature_extractor,
                        main_box_classifier, crop_fn, is_training,
                        meta_arch=meta_arch, rfcn_ps_pool_fn=rfcn_ps_pool_fn,
                        **kwargs)


def mtl_groundtruth(groundtruth, class_ids, true_image_shapes, num_classes,
                    mtl_config):
  """groundtruth: the detector's padded dict ('boxes' [B, N, 4], 'num_boxes',
  and any 'mtl_*' keys provided). class_ids int32 [B, N] (1-based).
  Returns a new dict with every MTL label of the tasks that are on."""
  from mtl_ssl.mtl import labels  # pylint: disable=g-import-not-at-top
  batch = groundtruth['boxes'].shape[0]
  if batch is None:
    raise ValueError('MTL label fallback needs a static batch size')
  shapes = tf.cast(true_image_shapes, tf.float32)
  made = []
  for i in range(batch):
    made.append(labels.make_mtl_labels(
        groundtruth['boxes'][i], class_ids[i], groundtruth['num_boxes'][i],
        shapes[i, 0], shapes[i, 1], num_classes, mtl_config))
  result = dict(groundtruth)
  keys = made[0].keys() if made else []
  for key in keys:
    partners = [group for group in _TOGETHER if key in group]
    provided = all(k in groundtruth for k in (partners[0] if partners else
                                              (key,)))
    if not provided:
      result[key] = tf.stack([tf.cast(m[key], tf.float32) for m in made])
  return result
