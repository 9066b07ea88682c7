"""MR-VAE with a narrow ResNet on binarised Fashion-MNIST (random binary images stand in if the files are absent)."""

import argparse

import torch

from mrvae import Likelihood
from mrvae.config import ModelConfig, TrainConfig
from mrvae.data import ArrayDataset, DataError, DataInfo, DataSplits, load_data
from mrvae.evaluate import evaluate_at
from mrvae.models import build_model
from mrvae.train import fit


def fashion_or_stand_in(n_train: int, n_test: int) -> DataSplits:
    """Fashion-MNIST subsets, or random binary (1, 28, 28) images of the same sizes if its files are missing."""
    try:  # looks in $MRVAE_DATA, ~/.cache/mrvae and Debian's /usr/share/datasets/fashion-mnist
        data = load_data("fashion-mnist")
        return DataSplits(data.info, ArrayDataset(data.train.data[:n_train]), ArrayDataset(data.test.data[:n_test]),
                          train_transform=data.train_transform)
    except DataError as err:
        print(f"Fashion-MNIST not found ({err}); random binary images stand in")
        train, test = torch.bernoulli(torch.full((n_train + n_test, 1, 28, 28), 0.3)).split([n_train, n_test])
        return DataSplits(DataInfo("stand-in", (1, 28, 28), Likelihood.BERNOULLI), ArrayDataset(train), ArrayDataset(test))


def main(steps: int = 1000, width: float = 0.25, n_train: int = 10_000, n_test: int = 1000) -> dict[float, dict]:
    """Train a ResNet MR-VAE (``width`` × the paper's channels); returns {β: test rate, distortion, ... in nats}."""
    torch.manual_seed(0)
    data = fashion_or_stand_in(n_train, n_test)
    model = build_model(ModelConfig(arch="resnet", latent_dim=32, width=width), data.info, "gate", len(data.train))
    train = TrainConfig(steps=steps, batch_size=64, lr=3e-3, warmup_steps=steps // 10, device="cpu")
    fit(model, data, train)  # β ~ log-uniform on [0.01, 10], one per example
    results = {b: evaluate_at(model, data.test, b, train.beta_range) for b in (0.01, 1.0, 10.0)}
    print("\n".join(f"β={b:<5g} rate {r['rate']:7.2f}  distortion {r['distortion']:7.2f} nats" for b, r in results.items()))
    return results


if __name__ == "__main__":
    main(argparse.ArgumentParser(description=__doc__).parse_args() and 1000)
