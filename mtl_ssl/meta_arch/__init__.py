"""Detection meta-architectures: the DetectionModel interface, Faster R-CNN, R-FCN."""
