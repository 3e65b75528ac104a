"""Core detection ops: boxes, anchors, box coder, matcher, sampler, losses, NMS, crops."""
