"""``mrvae sample``: decoded prior samples of a trained model as a PNG grid at one β, a strip across βs
(one row per β, the same prior draws in every row), or, for text models, printed sentences."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.text import Vocabulary
from ..runs.load import LoadedVAE, load
from ..runs.folder import new_file
from ..runs.methods import load_run_data
from ..runs.pictures import GAP_PX, Display, Painter, display_for, encode_png, write_atomic

#: Samples drawn without ``--n``: a grid at one β, and each row of a strip across βs.
GRID_SAMPLES, STRIP_SAMPLES = 64, 8
DEFAULT_OUT = "samples.png"


def _betas(args: Any) -> list[float]:
    """``--beta B`` or ``--betas B1 B2 ...`` (exactly one of them) -> the βs to sample at."""
    if (args.beta is None) == (args.betas is None):
        raise ValueError("mrvae sample needs exactly one of --beta B (a grid at one β) or --betas B1 B2 ... "
                         "(one row per β)")
    betas = [float(args.beta)] if args.beta is not None else [float(b) for b in args.betas]
    bad = [b for b in betas if not (math.isfinite(b) and b > 0)]
    if not betas or bad:
        raise ValueError(f"β must be a finite number > 0, got {bad[0] if bad else 'no value'}")
    return betas


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """(h_i, w_i, C) uint8 pixel rows -> one (H, W, C) array: rows top to bottom, ``GAP_PX`` apart, each
    padded on the right to the widest (gaps and padding are zeros: transparent where C has alpha)."""
    width = max(row.shape[1] for row in rows)
    parts: list[np.ndarray] = []
    for index, row in enumerate(rows):
        if index:
            parts.append(np.zeros((GAP_PX, width, row.shape[2]), dtype=np.uint8))
        parts.append(np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))))
    return np.concatenate(parts, axis=0)


def sample_picture(model: LoadedVAE, betas: list[float], n: int, seed: int, strip: bool) -> np.ndarray:
    """The pixels of ``n`` decoded prior samples at each β: with ``strip``, one row of n tiles per β (the
    draws of ``torch.Generator().manual_seed(seed)`` in every row); else a near-square grid at betas[0]."""
    display, note = display_for(model.info) if model.info is not None else (Display.NONE, "no data info")
    if display is Display.NONE:
        raise ValueError(f"cannot draw samples of this model: {note}")
    samples = [model.sample(n, beta, torch.Generator().manual_seed(seed)).cpu() for beta in betas]
    paint = Painter.for_examples(display, torch.cat(samples))
    if strip:
        return stack_rows([paint(batch) for batch in samples])
    if display is not Display.TILES:
        return paint(samples[0])
    columns = math.ceil(math.sqrt(n))
    return stack_rows([paint(batch) for batch in samples[0].split(columns)])


def _vocabulary(model: LoadedVAE) -> Vocabulary | None:
    """The vocabulary of the model's data set when its files are at hand, else None (token ids are printed)."""
    if model.config is None:
        return None
    try:
        tokens = load_run_data(model.config).notes.get("vocabulary")
    except (ValueError, OSError) as exc:
        print(f"mrvae sample: printing token ids, the vocabulary is not at hand ({' '.join(str(exc).split())})",
              file=sys.stderr)
        return None
    if tokens is None or len(tokens) != model.model.vocab_size:
        return None
    return Vocabulary(tuple(tokens))


def _sentence(ids: list[int], model: LoadedVAE, vocabulary: Vocabulary | None) -> str:
    """One generated row ``BOS w_1 ... EOS pad ...`` -> its words (or ids), without BOS, EOS and padding."""
    body = ids[1:]
    if vocabulary is not None:
        return " ".join(vocabulary.decode(body))
    stops = (model.model.eos_index, model.model.pad_index)
    end = next((i for i, token in enumerate(body) if token in stops), len(body))
    return " ".join(str(token) for token in body[:end])


def sample_sentences(model: LoadedVAE, betas: list[float], n: int, seed: int) -> list[str]:
    """``n`` sentences decoded greedily from the same prior draws at each β -> lines ``β B: words``."""
    vocabulary = _vocabulary(model)
    lines = []
    for beta in betas:
        ids: Tensor = model.sample(n, beta, torch.Generator().manual_seed(seed)).cpu()
        lines += [f"β {beta:g}: {_sentence(row, model, vocabulary)}" for row in ids.tolist()]
    return lines


def cmd_sample(args: Any) -> int:
    """Decode prior samples of a run folder, checkpoint or export: a PNG grid (``--beta``) or strip
    (``--betas``) written to ``--out`` (never over an existing file unless ``--overwrite``); text models
    print sentences (also written to ``--out`` when it is given)."""

    betas = _betas(args)
    n = args.n if args.n is not None else (GRID_SAMPLES if args.betas is None else STRIP_SAMPLES)
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if args.out is not None:
        new_file(args.out, args.overwrite)  # refuse before the model is loaded
    model = load(args.model, device=args.device)
    if model.is_text:
        lines = sample_sentences(model, betas, n, args.seed)
        print("\n".join(lines))
        if args.out is not None:
            write_atomic(new_file(args.out, args.overwrite), ("\n".join(lines) + "\n").encode("utf-8"))
        return 0
    out = new_file(args.out or DEFAULT_OUT, args.overwrite)
    pixels = sample_picture(model, betas, n, args.seed, strip=args.betas is not None)
    write_atomic(out, encode_png(pixels))
    at = f"β = {betas[0]:g}" if len(betas) == 1 else f"each of β = {', '.join(f'{b:g}' for b in betas)}"
    print(f"{n} samples at {at} written to {out} ({pixels.shape[1]}×{pixels.shape[0]} px)")
    return 0
