"""Data: tf.Example decoding, label maps, resizers, augmentation and the per-example transform.

Kept light on purpose (no imports, no TensorFlow at package import): import the submodules you need,
e.g. `from mtl_ssl.data import fields`. The tf.data pipeline is `mtl_ssl.builders.dataset_builder`.
"""
