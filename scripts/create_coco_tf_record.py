r"""Convert a COCO detection json + image folder to OD API TFRecords.

  python scripts/create_coco_tf_record.py --image_dir=/data/coco/val2017 \
      --annotations_file=/data/coco/annotations/instances_val2017.json \
      --output_path=/data/coco_val.record --num_shards=10
"""
import sys

from mtl_ssl.data.converters import coco

if __name__ == '__main__':
  sys.exit(coco.main())
