"""Synthetic detection batches shared by bench_fpn.py and its OD API child (numpy only, seeded:
both processes get the same images and boxes)."""
import numpy as np


def batches(count, batch, size, num_classes, seed, max_boxes=5):
  """-> list of (images float32 [B,S,S,3] 0..255, boxes [B,N,4] normalized (padded rows 0),
  classes int32 [B,N] 1-based (padding 1), num_boxes int32 [B])."""
  rng = np.random.default_rng(seed)
  result = []
  for _ in range(count):
    images = rng.uniform(0.0, 255.0, (batch, size, size, 3)).astype(np.float32)
    boxes = np.zeros((batch, max_boxes, 4), np.float32)
    classes = np.ones((batch, max_boxes), np.int32)
    counts = rng.integers(1, max_boxes + 1, batch).astype(np.int32)
    for i, n in enumerate(counts):
      ymin, xmin = rng.uniform(0.0, 0.6, (2, n))
      height, width = rng.uniform(0.1, 0.4, (2, n))
      boxes[i, :n] = np.stack([ymin, xmin, np.minimum(ymin + height, 1.0),
                               np.minimum(xmin + width, 1.0)], 1)
      classes[i, :n] = rng.integers(1, num_classes + 1, n)
    result.append((images, boxes, classes, counts))
  return result
