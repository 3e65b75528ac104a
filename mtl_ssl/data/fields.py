"""Key names of the input pipeline's dicts (docs/architecture.md section 2), OD API style.

Use these constants rather than string literals, so the data, model, training and export parts agree
on one spelling. `features` and `labels` are the two dicts of a batch from
`mtl_ssl.builders.dataset_builder.build`.
"""


class InputDataFields:
  """Keys of the batch dicts (features and labels) and of the tf.Example feature map."""

  # features
  image = 'image'
  true_image_shape = 'true_image_shape'
  original_image_spatial_shape = 'original_image_spatial_shape'
  source_id = 'source_id'
  original_image = 'original_image'

  # labels
  groundtruth_boxes = 'groundtruth_boxes'
  groundtruth_classes = 'groundtruth_classes'
  num_groundtruth_boxes = 'num_groundtruth_boxes'
  groundtruth_weights = 'groundtruth_weights'
  groundtruth_difficult = 'groundtruth_difficult'
  groundtruth_is_crowd = 'groundtruth_is_crowd'
  groundtruth_mtl_windows = 'groundtruth_mtl_windows'
  groundtruth_mtl_window_labels = 'groundtruth_mtl_window_labels'
  groundtruth_mtl_closeness_labels = 'groundtruth_mtl_closeness_labels'
  groundtruth_mtl_foreground_mask = 'groundtruth_mtl_foreground_mask'
  groundtruth_mtl_foreground_weights = 'groundtruth_mtl_foreground_weights'


FEATURE_KEYS = (
    InputDataFields.image,
    InputDataFields.true_image_shape,
    InputDataFields.original_image_spatial_shape,
    InputDataFields.source_id,
    InputDataFields.original_image,
)

BOX_LABEL_KEYS = (
    InputDataFields.groundtruth_boxes,
    InputDataFields.groundtruth_classes,
    InputDataFields.num_groundtruth_boxes,
    InputDataFields.groundtruth_weights,
    InputDataFields.groundtruth_difficult,
    InputDataFields.groundtruth_is_crowd,
)

# `mtl_ssl.mtl.labels.make_mtl_labels` key -> batch label key (it returns keys without the prefix).
MTL_LABEL_KEYS = {
    'mtl_windows': InputDataFields.groundtruth_mtl_windows,
    'mtl_window_labels': InputDataFields.groundtruth_mtl_window_labels,
    'mtl_closeness_labels': InputDataFields.groundtruth_mtl_closeness_labels,
    'mtl_foreground_mask': InputDataFields.groundtruth_mtl_foreground_mask,
    'mtl_foreground_weights': InputDataFields.groundtruth_mtl_foreground_weights,
}


class TfExampleFields:
  """tf.Example feature keys written by the OD API converters (and by scripts/create_*)."""

  image_encoded = 'image/encoded'
  image_format = 'image/format'
  height = 'image/height'
  width = 'image/width'
  filename = 'image/filename'
  source_id = 'image/source_id'
  object_bbox_ymin = 'image/object/bbox/ymin'
  object_bbox_xmin = 'image/object/bbox/xmin'
  object_bbox_ymax = 'image/object/bbox/ymax'
  object_bbox_xmax = 'image/object/bbox/xmax'
  object_class_label = 'image/object/class/label'
  object_class_text = 'image/object/class/text'
  object_difficult = 'image/object/difficult'
  object_is_crowd = 'image/object/is_crowd'
  object_weight = 'image/object/weight'


BOX_COORDINATE_KEYS = (
    TfExampleFields.object_bbox_ymin,
    TfExampleFields.object_bbox_xmin,
    TfExampleFields.object_bbox_ymax,
    TfExampleFields.object_bbox_xmax,
)
