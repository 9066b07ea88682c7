"""Data sets: registry, embedded defaults, readers of the paper's data in their standard formats."""

from .base import (ArrayDataset, BatchTransform, DataInfo, DataSplits, batch_of, dynamic_binarise,
                   fixed_binarise, random_hflip)
from .registry import DATA_ENV_VAR, DATASETS, DatasetEntry, data_root, load_data, register_dataset

__all__ = ["ArrayDataset", "BatchTransform", "DataInfo", "DataSplits", "batch_of", "dynamic_binarise",
           "fixed_binarise", "random_hflip", "DATA_ENV_VAR", "DATASETS", "DatasetEntry", "data_root",
           "load_data", "register_dataset"]
