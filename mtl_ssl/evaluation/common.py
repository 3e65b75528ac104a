"""Input checks the evaluators share (PASCAL, COCO, TIDE): one wording for one mistake."""
import numpy as np


def check_classes(classes, category_ids, what, image_id):
  """ValueError naming the image when `classes` holds ids outside the label map's."""
  unknown = sorted(set(classes.tolist()) - category_ids)
  if unknown:
    raise ValueError(f'{what} of image {image_id!r} has class ids {unknown} that are not in '
                     f'the label map ids {sorted(category_ids)}')


def detection_arrays(image_id, detections_dict):
  """(boxes [K,4] float64, scores [K] float64, classes [K] int64) of one image's detections,
  checked for equal lengths (each evaluator checks the class ids its own way)."""
  boxes = np.asarray(detections_dict['detection_boxes'], np.float64).reshape(-1, 4)
  scores = np.asarray(detections_dict['detection_scores'], np.float64).reshape(-1)
  classes = np.asarray(detections_dict['detection_classes']).astype(np.int64).reshape(-1)
  if not len(boxes) == len(scores) == len(classes):
    raise ValueError(f'detections of image {image_id!r}: {len(boxes)} boxes, {len(scores)} '
                     f'scores and {len(classes)} classes differ in length')
  return boxes, scores, classes
