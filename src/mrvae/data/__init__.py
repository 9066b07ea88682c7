"""Data sets: registry, embedded defaults, readers of the paper's data in their standard formats."""

from .base import (ArrayDataset, BatchTransform, DataInfo, DataSplits, batch_of, dynamic_binarise,
                   fixed_binarise, random_hflip)
from .catalog import CATALOG, DatasetFiles, RemoteFile
from .check import check_dataset, list_datasets
from .download import download_dataset
from .dsprites_like import DSpritesLikeImages
from .errors import DataError
from .registry import DATA_ENV_VAR, DATASETS, DatasetEntry, data_root, load_data, register_dataset
from .stored import ByteImageDataset
from .text import Vocabulary

__all__ = ["ArrayDataset", "BatchTransform", "DataInfo", "DataSplits", "batch_of", "dynamic_binarise",
           "fixed_binarise", "random_hflip", "DATA_ENV_VAR", "DATASETS", "DatasetEntry", "data_root",
           "load_data", "register_dataset", "CATALOG", "DatasetFiles", "RemoteFile", "check_dataset",
           "list_datasets", "download_dataset", "DSpritesLikeImages", "DataError", "ByteImageDataset", "Vocabulary"]
