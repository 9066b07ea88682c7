"""MR-VAE with the LSTM text model on a tiny generated corpus (in a temporary folder); decoding at two β."""

import argparse
import tempfile
from pathlib import Path

import torch

from mrvae.config import ModelConfig, TrainConfig
from mrvae.data import load_data
from mrvae.models import build_model
from mrvae.training.loop import fit


def main(steps: int = 1500, width: float = 0.25) -> dict[float, list[str]]:
    """Train on 400 generated sentences; returns {β: three sentences greedily decoded from z ~ N(0, I)}."""
    torch.manual_seed(0)
    words = (["the", "a"], ["cat", "dog", "bird", "fox"], ["sees", "chases", "likes"], ["the", "a"], ["ball", "hat"])
    with tempfile.TemporaryDirectory() as root:
        for split, count in (("train", 400), ("valid", 50), ("test", 100)):
            Path(root, "text").mkdir(exist_ok=True)
            lines = [" ".join(w[i % len(w)] for w, i in zip(words, r)) for r in torch.randint(12, (count, 5)).tolist()]
            Path(root, "text", f"{split}.txt").write_text("\n".join(lines) + "\n")
        data = load_data("text", root)  # ids padded to the longest sentence; <pad> <unk> <bos> <eos> are ids 0-3
    size = round(256 * width)  # embedding and LSTM sizes: width × the paper's 256
    model = build_model(ModelConfig(arch="lstm", latent_dim=8, embedding_dim=size, lstm_hidden=size), data.info, "gate")
    fit(model, data, TrainConfig(steps=steps, batch_size=32, lr=3e-3, warmup_steps=steps // 10, device="cpu"))
    samples, z, vocabulary = {}, torch.randn(3, 8), data.notes["vocabulary"]
    for beta in (0.01, 10.0):
        tokens = model.generate(z, model.u_of(beta), data.info.shape[0])  # β in the model's range
        samples[beta] = [" ".join(vocabulary[i] for i in row.tolist() if i > 3) for row in tokens]  # words only
        print(f"β={beta:<5g} decoded from the same z: {samples[beta]}")
    return samples


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    main(parser.parse_args().steps)
