"""Datasets: where they come from (`sources`: CIFAR-10, IDX files, synthetic) and how they are
prepared and read (`prepared`: uint8 arrays, a seeded private hold-out, normalisation statistics).

Imports nothing of nasloop but the standard library and numpy.
"""

from orchestrator.data.prepared import (DatasetMeta, PreparedDataset, draw_secret, ensure_prepared, open_prepared, prepare,
                                        prepare_from, prepared_name)
from orchestrator.data.sources import (CIFAR10_MD5, CIFAR10_URL, DATASET_SHAPES, DATASETS, FASHION_MNIST_DEBIAN, DataError, RawSplits,
                                       default_source, fetch_cifar10, load_cifar10, load_idx_dataset, load_raw,
                                       make_synthetic)

__all__ = ["CIFAR10_MD5", "CIFAR10_URL", "DATASET_SHAPES", "DATASETS", "FASHION_MNIST_DEBIAN", "DataError", "DatasetMeta",
           "PreparedDataset", "RawSplits", "draw_secret", "prepare_from", "default_source", "ensure_prepared", "fetch_cifar10", "load_cifar10",
           "load_idx_dataset", "load_raw",
           "make_synthetic", "open_prepared", "prepare", "prepared_name"]
