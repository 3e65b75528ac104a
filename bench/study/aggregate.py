"""Tables and plots of the study from the runs' result.json files.

Writes to <workdir>/report/: results.md (markdown tables: mAP@0.5 and COCO AP mean +- std per
variant and dataset, the difference to the baseline with its standard error, the TIDE error
breakdown, the runs' timing), summary.json (the same numbers), map_vs_step_<dataset>.png (mean
mAP@0.5 per variant vs step, band = min..max over seeds) and tide_<dataset>.png (dAP per error
type, baseline vs MTL variants, error bars = std over seeds).
"""
import glob
import json
import math
import os

import numpy as np

from bench.study import variants as variants_lib

TIDE_TYPES = ('Cls', 'Loc', 'Both', 'Dupe', 'Bkg', 'Miss')
SPREAD_WARNING = 0.02  # std of mAP@0.5 over seeds above which more seeds are suggested


def load_results(workdir):
  results = []
  for path in sorted(glob.glob(os.path.join(workdir, 'runs', '*', '*', 'seed*', 'result.json'))):
    with open(path, encoding='utf-8') as f:
      results.append(json.load(f))
  return results


def _stats(values):
  values = [v for v in values if v is not None and math.isfinite(v)]
  if not values:
    return {'n': 0, 'mean': None, 'std': None, 'min': None, 'max': None}
  array = np.asarray(values, np.float64)
  return {'n': len(values), 'mean': float(array.mean()),
          'std': float(array.std(ddof=1)) if len(values) > 1 else None,
          'min': float(array.min()), 'max': float(array.max())}


def _order(names):
  table = [v.name for v in variants_lib.VARIANTS]
  return sorted(names, key=lambda n: (table.index(n) if n in table else len(table), n))


def summarize(results):
  """{dataset: {variant: {...stats...}}} plus the baseline differences."""
  summary = {}
  for dataset in sorted({r['dataset'] for r in results}):
    rows = {}
    in_dataset = [r for r in results if r['dataset'] == dataset]
    for variant in _order({r['variant'] for r in in_dataset}):
      runs = sorted((r for r in in_dataset if r['variant'] == variant), key=lambda r: r['seed'])
      rows[variant] = {
          'label': runs[0].get('variant_label', variant),
          'seeds': [r['seed'] for r in runs],
          'num_steps': sorted({r['num_steps'] for r in runs}),
          'pascal_map': _stats([r['pascal_map'] for r in runs]),
          'coco_ap': _stats([r['coco_ap'] for r in runs]),
          'coco_ap50': _stats([r['coco_ap50'] for r in runs]),
          'tide': {kind: _stats([r['tide'].get(f'dAP_{kind}') for r in runs])
                   for kind in TIDE_TYPES},
          'curve': _curve(runs),
          'train_seconds': _stats([r['timing']['train_seconds'] for r in runs]),
          'steps_per_sec': _stats([r['timing']['train_steps_per_sec'] for r in runs]),
          'cpu_seconds': _stats([r['timing']['cpu_seconds'] for r in runs]),
          'eval_cpu_seconds': _stats([r['timing'].get('eval_cpu_seconds') for r in runs]),
          'cpu_per_step': _stats([r['timing'].get('steady_cpu_seconds_per_step')
                                  for r in runs]),
      }
    base = rows.get(variants_lib.BASELINE)
    for name, row in rows.items():
      row['vs_baseline'] = {key: _difference(row[key], base[key])
                            if base and name != variants_lib.BASELINE else None
                            for key in ('pascal_map', 'coco_ap')}
    summary[dataset] = rows
  return summary


def _difference(stats, base):
  """Difference of the means and its standard error (None without >= 2 seeds on both sides)."""
  if stats['mean'] is None or base['mean'] is None:
    return None
  error = None
  if stats['std'] is not None and base['std'] is not None:
    error = math.sqrt(stats['std'] ** 2 / stats['n'] + base['std'] ** 2 / base['n'])
  return {'delta': stats['mean'] - base['mean'], 'standard_error': error}


def _curve(runs):
  steps = sorted({point['step'] for r in runs for point in r['curve']})
  curve = []
  for step in steps:
    values = [point['pascal_map'] for r in runs for point in r['curve']
              if point['step'] == step and point['pascal_map'] is not None]
    curve.append(dict({'step': step}, **_stats(values)))
  return curve


def _pm(stats, digits=3):
  if stats['mean'] is None:
    return '-'
  if stats['std'] is None:
    return f'{stats["mean"]:.{digits}f}'
  return f'{stats["mean"]:.{digits}f} ± {stats["std"]:.{digits}f}'


def _delta(difference):
  if not difference:
    return '-'
  text = f'{difference["delta"]:+.3f}'
  if difference['standard_error'] is not None:
    text += f' ± {difference["standard_error"]:.3f}'
  return text


def markdown(summary):
  lines = []
  for dataset, rows in summary.items():
    lines += [f'### {dataset}', '',
              '| variant | seeds | steps | PASCAL mAP@0.5 | Δ vs baseline | COCO AP | Δ vs baseline '
              '| COCO AP50 |', '|---|---|---|---|---|---|---|---|']
    for name, row in rows.items():
      lines.append(
          f'| {row["label"]} | {len(row["seeds"])} | {"/".join(map(str, row["num_steps"]))} | '
          f'{_pm(row["pascal_map"])} | {_delta(row["vs_baseline"]["pascal_map"])} | '
          f'{_pm(row["coco_ap"])} | {_delta(row["vs_baseline"]["coco_ap"])} | '
          f'{_pm(row["coco_ap50"])} |')
    lines += ['', 'TIDE error breakdown (dAP@0.5, mean ± std over seeds; higher = that error '
              'costs more AP):', '',
              '| variant | ' + ' | '.join(TIDE_TYPES) + ' |',
              '|---|' + '---|' * len(TIDE_TYPES)]
    for name, row in rows.items():
      lines.append(f'| {row["label"]} | '
                   + ' | '.join(_pm(row['tide'][kind]) for kind in TIDE_TYPES) + ' |')
    lines += ['', 'Cost per run (wall times depend on the machine\'s load; CPU seconds much '
              'less):', '',
              '| variant | train wall s | steps/s | CPU s (all) | CPU s/step (steady) | '
              'eval CPU s |', '|---|---|---|---|---|---|']
    for name, row in rows.items():
      lines.append(f'| {row["label"]} | {_pm(row["train_seconds"], 0)} | '
                   f'{_pm(row["steps_per_sec"], 2)} | {_pm(row["cpu_seconds"], 0)} | '
                   f'{_pm(row["cpu_per_step"], 3)} | {_pm(row["eval_cpu_seconds"], 0)} |')
    lines.append('')
  return '\n'.join(lines)


def spread_advice(summary):
  """Variants whose mAP spread over seeds is large, or whose difference to the baseline is
  within two standard errors: more seeds would tell more."""
  advice = []
  for dataset, rows in summary.items():
    for name, row in rows.items():
      std = row['pascal_map']['std']
      diff = row['vs_baseline']['pascal_map']
      if std is not None and std > SPREAD_WARNING:
        advice.append(f'{dataset}/{name}: mAP@0.5 std {std:.3f} over {len(row["seeds"])} seeds')
      elif (name != variants_lib.BASELINE and diff and diff['standard_error'] is not None
            and abs(diff['delta']) < 2 * diff['standard_error']):
        advice.append(f'{dataset}/{name}: Δ {diff["delta"]:+.3f} is within 2 standard errors '
                      f'({diff["standard_error"]:.3f})')
  return advice


def plot_curves(summary, directory):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  paths = []
  for dataset, rows in summary.items():
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, row in rows.items():
      points = [p for p in row['curve'] if p['mean'] is not None]
      if not points:
        continue
      steps = [p['step'] for p in points]
      line, = axis.plot(steps, [p['mean'] for p in points], marker='o',
                        label=f'{row["label"]} (n={len(row["seeds"])})',
                        linewidth=2.5 if name in (variants_lib.BASELINE,
                                                  variants_lib.FULL_MTL) else 1.2)
      axis.fill_between(steps, [p['min'] for p in points], [p['max'] for p in points],
                        color=line.get_color(), alpha=0.15)
    axis.set_xlabel('training step')
    axis.set_ylabel('PASCAL mAP@0.5 (test split)')
    axis.set_title(f'{dataset}: mAP vs step (mean over seeds, band = min..max)')
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    paths.append(_save(plt, figure, os.path.join(directory, f'map_vs_step_{dataset}.png')))
  return paths


def _save(plt, figure, path):
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)
  return path


def plot_tide(summary, directory):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  paths = []
  for dataset, rows in summary.items():
    names = list(rows)
    width = 0.8 / max(1, len(names))
    figure, axis = plt.subplots(figsize=(8, 4.5))
    x = np.arange(len(TIDE_TYPES))
    for i, name in enumerate(names):
      tide = rows[name]['tide']
      means = [tide[k]['mean'] or 0.0 for k in TIDE_TYPES]
      stds = [tide[k]['std'] or 0.0 for k in TIDE_TYPES]
      axis.bar(x + (i - (len(names) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=rows[name]['label'],
               edgecolor='black' if name == variants_lib.BASELINE else None)
    axis.set_xticks(x, ['classification', 'localization', 'both', 'duplicate', 'background',
                        'missed'])
    axis.set_ylabel('dAP@0.5 (AP gained by fixing that error)')
    axis.set_title(f'{dataset}: TIDE error breakdown (mean ± std over seeds)')
    axis.grid(axis='y', alpha=0.3)
    axis.legend(fontsize=8)
    paths.append(_save(plt, figure, os.path.join(directory, f'tide_{dataset}.png')))
  return paths


def write_report(workdir, echo=print):
  """Aggregates every finished run of workdir; returns the paths written (None if no runs)."""
  results = load_results(workdir)
  if not results:
    echo(f'no finished runs under {os.path.join(workdir, "runs")} yet')
    return None
  summary = summarize(results)
  directory = os.path.join(workdir, 'report')
  os.makedirs(directory, exist_ok=True)
  table = markdown(summary)
  advice = spread_advice(summary)
  with open(os.path.join(directory, 'results.md'), 'w', encoding='utf-8') as f:
    f.write(table)
    if advice:
      f.write('\nMore seeds would tell more for:\n' + ''.join(f'- {a}\n' for a in advice))
  with open(os.path.join(directory, 'summary.json'), 'w', encoding='utf-8') as f:
    json.dump({'runs': len(results), 'summary': summary, 'more_seeds_for': advice}, f,
              indent=2)
  pictures = plot_curves(summary, directory) + plot_tide(summary, directory)
  echo(table)
  if advice:
    echo('More seeds would tell more for:\n' + '\n'.join(f'  {a}' for a in advice))
  paths = {'results_md': os.path.join(directory, 'results.md'),
           'summary_json': os.path.join(directory, 'summary.json'), 'pictures': pictures}
  echo('report: ' + ', '.join([paths['results_md'], paths['summary_json']] + pictures))
  return paths
