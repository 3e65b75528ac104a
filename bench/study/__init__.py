"""The accuracy study of MTL-SSL: variants x seeds x datasets, trained, evaluated, aggregated.

  python -m bench.study --workdir runs/study            # the CPU study on the scenes data
  python -m bench.study --help                          # every option (paper configs on a GPU, ...)

Parts: variants.py (THE table of variants), settings.py (presets, data, per-run configs),
runner.py (one run in its own process: train, evaluate checkpoints, result.json),
scheduler.py (runs in parallel, resume, progress), aggregate.py (tables and PNGs),
__main__.py (the command line). docs/benchmarks.md "Accuracy study" explains the outputs.
"""
