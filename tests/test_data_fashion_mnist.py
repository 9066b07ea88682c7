"""Real data: Debian's Fashion-MNIST files (or $MRVAE_FASHION_MNIST_DIR); skipped when they are absent."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mrvae.data import load_data
from mrvae.data.catalog import CATALOG, DEBIAN_FASHION_MNIST_DIR
from mrvae.data.idx import load_mnist_family, read_idx_folder

FOLDER = Path(os.environ.get("MRVAE_FASHION_MNIST_DIR", str(DEBIAN_FASHION_MNIST_DIR)))
pytestmark = pytest.mark.skipif(not CATALOG["fashion-mnist"].complete_in(FOLDER),
                                reason=f"Fashion-MNIST IDX files not found in {FOLDER}")


def test_published_counts_balance_and_mean():
    raw = read_idx_folder("fashion-mnist", FOLDER)
    assert raw.train_images.shape == (60_000, 28, 28) and raw.test_images.shape == (10_000, 28, 28)
    assert np.bincount(raw.train_labels).tolist() == [6_000] * 10
    assert np.bincount(raw.test_labels).tolist() == [1_000] * 10
    assert raw.train_images.mean(dtype=np.float64) / 255 == pytest.approx(0.2860, abs=1e-4)


def test_loader_splits_the_real_files(tmp_path):
    splits = load_mnist_family("fashion-mnist", tmp_path, seed=0, folder=FOLDER)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (50_000, 10_000, 10_000)
    labels = torch.cat([splits.train.labels, splits.valid.labels])
    assert torch.bincount(labels).tolist() == [6_000] * 10
    assert 0.0 <= splits.train.data.min() and splits.train.data.max() == 1.0
    assert set(splits.test.data.unique().tolist()) == {0.0, 1.0}


@pytest.mark.skipif(FOLDER != DEBIAN_FASHION_MNIST_DIR, reason="the fallback is Debian's folder")
def test_data_root_without_files_falls_back_to_debian(tmp_path):
    assert len(load_data("fashion-mnist", tmp_path).test) == 10_000
