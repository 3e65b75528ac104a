"""Dataset converters (PASCAL VOC layout, MS COCO json) to OD API TFRecords.

They are commands (`mtl_ssl_create_pascal_tf_record`, `mtl_ssl_create_coco_tf_record`, or
`python -m mtl_ssl.data.converters.pascal|coco`); scripts/ holds thin entry files. Importing
this package quiets TensorFlow's C++ start-up lines (TF_CPP_MIN_LOG_LEVEL=3 unless already set),
which must happen before TensorFlow loads.
"""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
