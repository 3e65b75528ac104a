"""Detection evaluators (PASCAL VOC, COCO) and their builder from eval_config.metrics_set."""
