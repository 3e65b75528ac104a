"""The variants of the study: ONE table. Adding a variant is adding one row.

Each row: name, the MTL tasks switched on (the four flags of the `mtl { }` block; none = the
`mtl` block is removed, i.e. the plain detector), an optional pipeline config replacing the
study's base config (path relative to the repository root), and optional extra text-proto
overrides merged last. The base config must carry every predictor the tasks need (the
`..._mtl.config` files do). Same steps, schedule and data for every row.
"""
import dataclasses

MTL_FLAGS = ('window', 'closeness', 'edgemask', 'refine')
ALL_TASKS = ('window', 'closeness', 'edgemask')
FPN_SCENES_CONFIG = 'pipeline_configs/scenes/faster_rcnn_mobilenet_v1_fpn_scenes_mtl.config'
# the lean cost preset (docs/performance.md)
LEAN = 'num_windows: 16 refine_top_k: 16 refine_top_k_in_training: true'


@dataclasses.dataclass(frozen=True)
class Variant:
  name: str
  tasks: tuple = ()  # subset of MTL_FLAGS; () = no mtl block (baseline)
  config: str = None  # None: the study's --config
  override: str = ''  # text proto merged over the config after the task flags
  label: str = ''  # for tables and plots


VARIANTS = (
    Variant('baseline', (), label='baseline (no MTL)'),
    Variant('T1_window', ('window',), label='T1 multi-object windows'),
    Variant('T2_closeness', ('closeness',), label='T2 closeness'),
    Variant('T3_foreground', ('edgemask',), label='T3 foreground'),
    Variant('all_tasks', ALL_TASKS, label='T1+T2+T3'),
    Variant('all_refine', ALL_TASKS + ('refine',), label='T1+T2+T3 + refine (MTL-SSL)'),
    # beyond the paper's ablation (not in the cpu preset's default list; name them in --variants)
    Variant('all_refine_wholemap', ALL_TASKS + ('refine',),
            override="model { mtl { aux_stage_input: 'whole_feature_map' } }",
            label='MTL-SSL, aux_stage_input whole_feature_map (fast)'),
    # the paper's own option: windows through the main stage, closeness on its features
    Variant('all_refine_shared', ALL_TASKS + ('refine',),
            override="model { mtl { shared_feature: 'classifier_feature_maps' } }",
            label='MTL-SSL, shared_feature classifier_feature_maps'),
    # cost presets (docs/performance.md): 16 windows, refiner and closeness head on the top-16
    # RoIs in training and inference; with own stage copies (the paper's) or the shared stage
    Variant('all_refine_lean', ALL_TASKS + ('refine',), override=f'model {{ mtl {{ {LEAN} }} }}',
            label='MTL-SSL, lean (16 windows, top-16 refine + closeness)'),
    # the lean preset's two parts alone (which one costs the accuracy)
    Variant('all_refine_topk_train', ALL_TASKS + ('refine',),
            override='model { mtl { refine_top_k: 16 refine_top_k_in_training: true } }',
            label='MTL-SSL, top-16 refine + closeness in training and inference'),
    Variant('all_refine_windows16', ALL_TASKS + ('refine',),
            override='model { mtl { num_windows: 16 } }', label='MTL-SSL, 16 windows'),
    # the window head's crops (windows, context boxes) at 4 x 4 instead of the config's 7 x 7
    Variant('all_refine_lean_wc4', ALL_TASKS + ('refine',),
            override=f'model {{ mtl {{ {LEAN} window_crop_size: 4 }} }}',
            label='MTL-SSL, lean + window crops 4 x 4'),
    # ... and the closeness head's crops too (R50 C4 equivalents in bench_cost: 'mtl lean wc10 cc8')
    Variant('all_refine_lean_wc5_cc4', ALL_TASKS + ('refine',),
            override=f'model {{ mtl {{ {LEAN} window_crop_size: 5 closeness_crop_size: 4 }} }}',
            label='MTL-SSL, lean + window crops 5 x 5, closeness crops 4 x 4'),
    # both at 4 x 4 (bench_cost: 'mtl lean wc8 cc8')
    Variant('all_refine_lean_wc4_cc4', ALL_TASKS + ('refine',),
            override=f'model {{ mtl {{ {LEAN} window_crop_size: 4 closeness_crop_size: 4 }} }}',
            label='MTL-SSL, lean + window and closeness crops 4 x 4'),
    # the MTL heads train on every second step only (the detector alone on the others)
    Variant('all_refine_lean_every2', ALL_TASKS + ('refine',),
            override=f'model {{ mtl {{ {LEAN} train_every_n_steps: 2 }} }}',
            label='MTL-SSL, lean, MTL on every second step'),
    Variant('all_refine_shared_lean', ALL_TASKS + ('refine',),
            override=f"model {{ mtl {{ shared_feature: 'classifier_feature_maps' {LEAN} }} }}",
            label='MTL-SSL, lean on the shared stage'),
    Variant('all_refine_bf16', ALL_TASKS + ('refine',),
            override='train_config { use_bfloat16: true }', label='MTL-SSL, bfloat16'),
    Variant('fpn_baseline', (), config=FPN_SCENES_CONFIG, label='FPN baseline (no MTL)'),
    Variant('fpn_all_refine', ALL_TASKS + ('refine',), config=FPN_SCENES_CONFIG,
            label='FPN T1+T2+T3 + refine'),
)
PAPER_ABLATION = ('baseline', 'T1_window', 'T2_closeness', 'T3_foreground', 'all_tasks',
                  'all_refine')
BASELINE = 'baseline'
FULL_MTL = 'all_refine'


def by_name(names=None):
  """The rows named in `names` (all when None), in table order; unknown names are an error."""
  table = {variant.name: variant for variant in VARIANTS}
  if not names:
    return list(VARIANTS)
  unknown = [name for name in names if name not in table]
  if unknown:
    raise ValueError(f'unknown variant(s) {unknown}; the table has {list(table)}')
  return [variant for variant in VARIANTS if variant.name in names]


def apply_tasks(model_config, variant):
  """Sets the four MTL flags of model_config (a DetectionModel proto) for `variant`; removes
  the mtl block for the baseline."""
  unknown = set(variant.tasks) - set(MTL_FLAGS)
  if unknown:
    raise ValueError(f'variant {variant.name}: unknown MTL task(s) {sorted(unknown)}; '
                     f'use {MTL_FLAGS}')
  if not variant.tasks:
    model_config.ClearField('mtl')
    return
  for flag in MTL_FLAGS:
    setattr(model_config.mtl, flag, flag in variant.tasks)
