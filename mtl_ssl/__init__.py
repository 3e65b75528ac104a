"""mtl-ssl: MTL-SSL multi-task self-supervised object detection in TensorFlow 2.

TF2 / tf_keras re-implementation of "Multi-task Self-Supervised Object Detection via
Recycling of Bounding Box Annotations" (Lee, Na, Kim; CVPR 2019), configured with the
TF Object Detection API's pipeline.config format plus a `model { mtl { ... } }` block.
"""

__version__ = "0.1.0"
