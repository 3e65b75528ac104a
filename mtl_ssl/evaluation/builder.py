"""Builds the evaluators named by eval_config.metrics_set (OD API names)."""
from mtl_ssl.evaluation import coco
from mtl_ssl.evaluation import pascal
from mtl_ssl.evaluation import tide

DEFAULT_METRICS_SET = 'coco_detection_metrics'  # the OD API default when none is given


def _pascal(categories, eval_config):
  del eval_config
  return pascal.PascalDetectionEvaluator(categories)


def _coco(categories, eval_config):
  per_category = bool(getattr(eval_config, 'include_metrics_per_category', False))
  all_per_category = bool(getattr(eval_config, 'all_metrics_per_category', False))
  return coco.CocoDetectionEvaluator(categories, include_metrics_per_category=per_category,
                                     all_metrics_per_category=all_per_category)


def _tide(categories, eval_config):
  del eval_config
  return tide.TideDetectionEvaluator(categories)


EVALUATOR_BUILDERS = {
    'pascal_voc_detection_metrics': _pascal,
    'coco_detection_metrics': _coco,
    'tide_error_metrics': _tide,  # mtl-ssl addition: TIDE error breakdown (tide.py)
}


def metrics_sets(eval_config):
  """The metrics sets of an eval_config, in order, without repeats (default: COCO)."""
  names = list(getattr(eval_config, 'metrics_set', []) or [])
  return list(dict.fromkeys(names)) or [DEFAULT_METRICS_SET]


def build_evaluators(eval_config, categories):
  """List of evaluators, one per eval_config.metrics_set entry.

  categories: list of {'id': 1-based int, 'name': str} (from the label map).
  """
  evaluators = []
  for name in metrics_sets(eval_config):
    if name not in EVALUATOR_BUILDERS:
      raise ValueError(f'eval_config.metrics_set {name!r} is not supported; supported: '
                       f'{sorted(EVALUATOR_BUILDERS)}')
    evaluators.append(EVALUATOR_BUILDERS[name](categories, eval_config))
  return evaluators
