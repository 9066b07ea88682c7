"""Images per second that ``fit``'s batch source (``mrvae.training.batches``) feeds, side by side in one run:
a lazily decoded set read by 0 loader workers (the training process decodes, as before issue 17 item 4)
and by ``--workers`` processes, and the same images held in memory (``ArrayDataset``).

The lazy set costs what CelebA costs per item: each item is a 178×218 JPEG (random smooth colours, held as
bytes in memory, so no disk is timed) decoded by Pillow, centre-cropped to 148 and resized to 64×64 by
``mrvae.data.celeba.crop_and_resize``. Nothing trains: the loop only asks for batches, so the figures are the
feed's ceiling; ``--step-ms`` adds a wait per batch that stands for a GPU training step (the training process
idle meanwhile, as it is while a GPU works), which the workers' decoding overlaps. Each setting runs
``--repeats`` times, interleaved, after one warm-up batch (which starts the workers); the best run is kept.

    python benchmarks/data_feed.py --workers 2 --json benchmarks/results/data_feed.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from mrvae.config import TrainConfig
from mrvae.data.base import ArrayDataset, batch_of
from mrvae.data.celeba import crop_and_resize
from mrvae.training.batches import BatchSource, training_batches
from mrvae.training.distributed import DistInfo

WIDTH, HEIGHT = 178, 218  # CelebA's aligned images


def jpeg_images(count: int, seed: int) -> list[bytes]:
    """``count`` JPEG files (WIDTH×HEIGHT RGB, quality 90) of smooth random colour fields, as bytes."""
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(count):
        coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        files.append(buffer.getvalue())
    return files


class JpegImages(Dataset):
    """Item i: the i-th JPEG decoded, cropped and resized as CelebA's, (3, 64, 64) float32 in [0, 1]."""

    def __init__(self, files: list[bytes]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        with Image.open(io.BytesIO(self.files[i])) as image:
            return crop_and_resize(image)


def images_per_second(source: BatchSource, steps: int, batch_size: int, step_s: float = 0.0) -> float:
    """Ask ``source`` for batches 0 (warm-up, not timed) .. ``steps``, waiting ``step_s`` after each;
    -> images per second of steps 1.."""
    source.batch(0)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        source.batch(step)
        time.sleep(step_s)
    elapsed = time.perf_counter() - started
    source.close()
    return steps * batch_size / elapsed


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Best images/s of each setting over ``args.repeats`` interleaved runs."""
    lazy = JpegImages(jpeg_images(args.images, args.seed))
    in_memory = ArrayDataset(batch_of(lazy, torch.arange(len(lazy))))
    cpu, info = torch.device("cpu"), DistInfo()
    settings = {"lazy, 0 workers": (lazy, 0), f"lazy, {args.workers} workers": (lazy, args.workers),
                "in memory": (in_memory, None)}
    best = dict.fromkeys(settings, 0.0)
    for _ in range(args.repeats):
        for name, (dataset, workers) in settings.items():
            config = TrainConfig(batch_size=args.batch_size, seed=args.seed, loader_workers=workers)
            source = training_batches(dataset, config, cpu, info)
            rate = images_per_second(source, args.steps, args.batch_size, args.step_ms / 1000)
            best[name] = max(best[name], rate)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="distinct JPEGs in the lazy set")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=24, help="timed batches per run")
    parser.add_argument("--workers", type=int, default=2, help="loader workers compared with 0")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-ms", type=float, default=0.0, help="a wait per batch standing for a GPU step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    best = measure(args)
    lazy0, lazyn = best["lazy, 0 workers"], best[f"lazy, {args.workers} workers"]
    for name, rate in best.items():
        print(f"{name:>18}: {rate:10.0f} images/s")
    print(f"lazy set, {args.workers} workers / 0 workers: {lazyn / lazy0:.2f}×; "
          f"in memory / lazy with {args.workers} workers: {best['in memory'] / lazyn:.1f}×; "
          f"load average {os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"images_per_s": best, "ratio_workers": lazyn / lazy0, "settings": vars(args) | {"json": None},
                  "cores": len(os.sched_getaffinity(0)), "load_1min": os.getloadavg()[0], "machine": platform.platform(), "torch": torch.__version__}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
