"""Detection evaluators (PASCAL VOC, COCO, TIDE error breakdown) and their builder from
eval_config.metrics_set."""
