r"""Convert PASCAL VOC to OD API TFRecords.

  python scripts/create_pascal_tf_record.py --data_dir=/data/VOCdevkit --year=VOC2007 \
      --set=trainval --output_path=/data/pascal_trainval.record --num_shards=10
"""
import sys

from mtl_ssl.data.converters import pascal

if __name__ == '__main__':
  sys.exit(pascal.main())
