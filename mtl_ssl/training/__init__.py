"""Train and eval loops, distribution strategies, checkpoints, summaries and pictures.

Kept light (no imports): import the module you need, e.g.
`from mtl_ssl.training import train_loop`. See docs/training.md.
"""
