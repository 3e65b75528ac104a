"""Dataset converters (PASCAL VOC, MS COCO) to OD API TFRecords; scripts/ holds thin entry files."""
