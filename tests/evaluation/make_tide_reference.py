"""Writes tests/evaluation/tide_reference.json: cases and the numbers tidecv 1.0.1 gives for them.

Run it with a Python that has tidecv (it needs opencv-python, so not the project's venv):

  python3 -m venv /tmp/tidevenv && /tmp/tidevenv/bin/pip install tidecv==1.0.1
  /tmp/tidevenv/bin/python tests/evaluation/make_tide_reference.py

Every case: images with ground truth (boxes [ymin, xmin, ymax, xmax] pixels, 1-based classes,
crowd flags) and detections; the reference: tidecv's AP@50 and the dAP of each error type, in
tidecv's percentage points. Hand-made cases have a known dominant error; random cases mimic a
detector's output (shifted, relabelled, duplicated, spurious and missing boxes).
"""
import json
import os
import sys

import numpy as np

HAND_MADE = {
    # two objects; the detections are shifted so that IoU is ~0.33: localization errors
    'shifted': {
        'images': [
            {'gt': [[0, 0, 100, 100, 1], [200, 200, 300, 300, 2]],
             'det': [[0, 50, 100, 150, 1, 0.9], [200, 250, 300, 350, 2, 0.8]]},
            {'gt': [[10, 10, 110, 110, 1]],
             'det': [[10, 10, 110, 110, 1, 0.7]]}]},
    # perfect boxes with the wrong class: classification errors
    'wrong_class': {
        'images': [
            {'gt': [[0, 0, 100, 100, 1], [200, 200, 300, 300, 2]],
             'det': [[0, 0, 100, 100, 2, 0.9], [200, 200, 300, 300, 1, 0.8]]},
            {'gt': [[0, 0, 100, 100, 1], [150, 150, 250, 250, 2]],
             'det': [[0, 0, 100, 100, 1, 0.6], [150, 150, 250, 250, 2, 0.5]]}]},
    # every object found, plus a second, lower-scored copy ranked above another object's box
    'duplicates': {
        'images': [
            {'gt': [[0, 0, 100, 100, 1], [200, 200, 300, 300, 1]],
             'det': [[0, 0, 100, 100, 1, 0.9], [2, 2, 100, 100, 1, 0.85],
                     [200, 200, 300, 300, 1, 0.5], [200, 205, 300, 300, 1, 0.4]]}]},
    # every object found, plus confident boxes on empty background
    'background': {
        'images': [
            {'gt': [[0, 0, 100, 100, 1], [200, 200, 300, 300, 2]],
             'det': [[0, 0, 100, 100, 1, 0.5], [200, 200, 300, 300, 2, 0.5],
                     [400, 400, 450, 450, 1, 0.9], [500, 0, 560, 80, 2, 0.95]]},
            {'gt': [],
             'det': [[10, 10, 60, 60, 1, 0.99]]}]},
    # half the objects have no detection near them: missed ground truth
    'missed': {
        'images': [
            {'gt': [[0, 0, 100, 100, 1], [200, 200, 300, 300, 1], [0, 300, 80, 400, 2],
                    [300, 0, 400, 90, 2]],
             'det': [[0, 0, 100, 100, 1, 0.9], [0, 300, 80, 400, 2, 0.8]]},
            {'gt': [[50, 50, 150, 150, 1]], 'det': []}]},
    # shifted AND relabelled (IoU ~0.33 with a box of another class): 'Both'
    'both': {
        'images': [
            {'gt': [[0, 0, 100, 100, 1], [200, 200, 300, 300, 2]],
             'det': [[0, 50, 100, 150, 2, 0.9], [200, 200, 300, 300, 2, 0.8]]}]},
    # crowd region: a detection inside it is left out; another outside is background
    'crowd': {
        'images': [
            {'gt': [[0, 0, 100, 100, 1], [200, 200, 400, 400, 1, 'crowd']],
             'det': [[0, 0, 100, 100, 1, 0.6], [250, 250, 300, 300, 1, 0.9],
                     [500, 500, 540, 540, 1, 0.8]]}]},
    # two localization errors on the same object: only the higher-scored one is recovered
    'loc_competition': {
        'images': [
            {'gt': [[0, 0, 100, 100, 1], [200, 200, 300, 300, 1]],
             'det': [[0, 40, 100, 140, 1, 0.9], [0, 45, 100, 145, 1, 0.8],
                     [200, 200, 300, 300, 1, 0.7]]}]},
}


def _random_case(seed, num_images=12, num_classes=4):
  rng = np.random.default_rng(seed)
  images = []
  for _ in range(num_images):
    gt, det = [], []
    for _ in range(rng.integers(0, 6)):
      y, x = rng.uniform(0, 400, 2)
      h, w = rng.uniform(20, 120, 2)
      cls = int(rng.integers(1, num_classes + 1))
      crowd = rng.random() < 0.05
      gt.append([y, x, y + h, x + w, cls] + (['crowd'] if crowd else []))
      if rng.random() < 0.8:  # found, perhaps shifted / relabelled
        shift = rng.normal(0, [0.05, 0.05, 0.25, 0.25][rng.integers(0, 4)], 2) * [h, w]
        det_cls = cls if rng.random() < 0.8 else int(rng.integers(1, num_classes + 1))
        det.append([y + shift[0], x + shift[1], y + h + shift[0], x + w + shift[1], det_cls,
                    float(rng.random())])
        if rng.random() < 0.2:  # duplicate
          det.append([y + 2, x - 2, y + h + 2, x + w - 2, det_cls, float(rng.random())])
    for _ in range(rng.integers(0, 3)):  # spurious
      y, x = rng.uniform(0, 450, 2)
      h, w = rng.uniform(10, 60, 2)
      det.append([y, x, y + h, x + w, int(rng.integers(1, num_classes + 1)),
                  float(rng.random())])
    gt = [[round(float(v), 3) for v in b[:4]] + b[4:] for b in gt]
    det = [[round(float(v), 3) for v in d[:4]] + [d[4], round(d[5], 6)] for d in det]
    images.append({'gt': gt, 'det': det})
  return {'images': images}


def _xywh(box):
  ymin, xmin, ymax, xmax = box
  return [xmin, ymin, xmax - xmin, ymax - ymin]


def run_tidecv(case):
  from tidecv import TIDE, Data  # pylint: disable=import-outside-toplevel
  gt, preds = Data('gt'), Data('preds')
  for image_id, image in enumerate(case['images']):
    gt.add_image(image_id, f'image {image_id}')
    for box in image['gt']:
      if box[5:] == ['crowd']:
        gt.add_ignore_region(image_id, box[4], _xywh(box[:4]))
      else:
        gt.add_ground_truth(image_id, box[4], _xywh(box[:4]))
    for det in image['det']:
      preds.add_detection(image_id, det[4], det[5], _xywh(det[:4]))
  tide = TIDE()
  run = tide.evaluate(gt, preds, mode=TIDE.BOX, name='run')
  main = tide.get_main_errors()['run']
  special = tide.get_special_errors()['run']
  return {'AP50': run.ap, 'dAP': main, 'special_dAP': special,
          'counts': {name: len(errors) for name, errors in
                     ((t.short_name, run.error_dict[t]) for t in TIDE._error_types)}}


def main():
  cases = dict(HAND_MADE)
  for seed in range(8):
    cases[f'random_{seed}'] = _random_case(seed)
  reference = {}
  for name, case in cases.items():
    reference[name] = dict(case, tidecv=run_tidecv(case))
    print(name, {k: round(v, 3) for k, v in reference[name]['tidecv']['dAP'].items()},
          'AP', round(reference[name]['tidecv']['AP50'], 3))
  import tidecv  # pylint: disable=import-outside-toplevel
  out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tide_reference.json')
  with open(out, 'w', encoding='utf-8') as f:
    json.dump({'generator': 'tests/evaluation/make_tide_reference.py',
               'tidecv_version': getattr(tidecv, '__version__', '1.0.1'),
               'python': sys.version.split()[0], 'cases': reference}, f, indent=1)
  print('wrote', out)


if __name__ == '__main__':
  main()
