"""Synthetic detection batches shared by bench_cost.py and odapi_train_step.py.

numpy only (the OD API's own venv imports it too), so every implementation sees the same
images and boxes. Labels use the input pipeline's padded layout and key names, which are the
OD API's (docs/architecture.md section 2).
"""
import numpy as np

NUM_CLASSES = 20
SIZE = 320
BATCH = 2
MAX_BOXES = 100


def batches(count, batch=BATCH, size=SIZE, num_classes=NUM_CLASSES, max_boxes=MAX_BOXES,
            seed=0):
  """`count` batches of (images float32 [B, S, S, 3] in 0..255, labels dict of numpy arrays):
  groundtruth_boxes [B, N, 4] normalized, groundtruth_classes [B, N, K] one-hot without
  background, num_groundtruth_boxes [B] int32, groundtruth_weights [B, N]; 2..8 boxes of
  15-45 % of the side per image, padded rows zero."""
  rng = np.random.RandomState(seed)
  result = []
  for _ in range(count):
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    boxes = np.zeros((batch, max_boxes, 4), np.float32)
    classes = np.zeros((batch, max_boxes, num_classes), np.float32)
    weights = np.zeros((batch, max_boxes), np.float32)
    counts = rng.randint(2, 9, batch).astype(np.int32)
    for i, n in enumerate(counts):
      corner = rng.uniform(0.0, 0.55, (n, 2))
      extent = rng.uniform(0.15, 0.45, (n, 2))
      boxes[i, :n] = np.concatenate([corner, np.minimum(corner + extent, 1.0)], 1)
      classes[i, np.arange(n), rng.randint(0, num_classes, n)] = 1.0
      weights[i, :n] = 1.0
    result.append((images, {'groundtruth_boxes': boxes, 'groundtruth_classes': classes,
                            'num_groundtruth_boxes': counts,
                            'groundtruth_weights': weights}))
  return result


def step_protocol(run_steps, ready_info):
  """Child side of the round-robin protocol: print ready_info as JSON, then for every stdin
  line N run N steps and print {'ms': [...]} (one time per step); 'quit' or EOF ends."""
  import json  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  print(json.dumps(ready_info), flush=True)
  for line in sys.stdin:
    line = line.strip()
    if not line or line == 'quit':
      break
    print(json.dumps({'ms': run_steps(int(line))}), flush=True)
