"""Builders from pipeline config protos (OD API builders role): dataset_builder, model_builder, ...

Kept light on purpose (no imports): import the builder you need, e.g.
`from mtl_ssl.builders import dataset_builder`.
"""
