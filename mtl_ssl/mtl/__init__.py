"""The MTL-SSL add-on: online self-supervised labels, auxiliary heads, context refiner, losses.

Kept light on purpose (no imports): import the submodules you need, e.g.
`from mtl_ssl.mtl import labels`.
"""
