"""Mutual information gap (MIG, Chen et al. 2018) from latent codes and discrete ground-truth factors.

For each factor v_j, the mutual information I(c_i; v_j) with every discretised code dimension c_i
is computed from counts (nats); MIG is the mean over factors of
``(largest - second largest I(c_i; v_j)) / H(v_j)``, in [0, 1]. Defaults follow disentanglement_lib:
each code dimension is cut into 20 equal-width bins over its observed range, and the codes are
usually the posterior means of 10,000 examples (``num_samples`` subsamples the inputs if given).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
from torch import Tensor


class Discretisation(str, Enum):
    """How continuous codes become bins: equal-width ``histogram`` bins over each dimension's range
    (disentanglement_lib's default) or equal-mass ``quantile`` bins."""

    HISTOGRAM = "histogram"
    QUANTILE = "quantile"


@dataclass
class MIGResult:
    """``mig`` (mean over factors), ``per_factor`` gaps (f,), ``mutual_information`` (k, f) in nats and
    factor ``entropies`` (f,) in nats."""

    mig: float
    per_factor: np.ndarray
    mutual_information: np.ndarray
    entropies: np.ndarray


def _as_2d(name: str, values: Tensor | np.ndarray) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty (N, d) array, got shape {array.shape}")
    return array


def discretise(codes: Tensor | np.ndarray, num_bins: int = 20,
               method: Discretisation | str = Discretisation.HISTOGRAM) -> np.ndarray:
    """(N, k) continuous codes -> (N, k) integer bin ids in [0, num_bins), each column binned separately."""
    array = _as_2d("codes", codes).astype(np.float64)
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be an int >= 1, got {num_bins!r}")
    if not np.isfinite(array).all():
        raise ValueError("codes contain NaN or infinite values")
    method = Discretisation(method)
    out = np.empty(array.shape, dtype=np.int64)
    for i, column in enumerate(array.T):
        if method is Discretisation.HISTOGRAM:
            inner = np.histogram_bin_edges(column, bins=num_bins)[1:-1]
        else:
            inner = np.quantile(column, np.linspace(0.0, 1.0, num_bins + 1)[1:-1])
        out[:, i] = np.searchsorted(inner, column, side="right")
    return out


def _labels(column: np.ndarray) -> np.ndarray:
    return np.unique(column, return_inverse=True)[1].reshape(-1)


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Two (N,) arrays of discrete labels -> I(a; b) in nats from their empirical joint distribution."""
    a_ids, b_ids = _labels(np.asarray(a)), _labels(np.asarray(b))
    if a_ids.shape != b_ids.shape:
        raise ValueError(f"label arrays differ in length: {a_ids.shape[0]} vs {b_ids.shape[0]}")
    n = a_ids.shape[0]
    joint = np.zeros((a_ids.max() + 1, b_ids.max() + 1))
    np.add.at(joint, (a_ids, b_ids), 1.0)
    joint /= n
    outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float(max(0.0, (joint[nz] * np.log(joint[nz] / outer[nz])).sum()))


def discrete_entropy(a: np.ndarray) -> float:
    """(N,) discrete labels -> empirical entropy H(a) in nats."""
    p = np.bincount(_labels(np.asarray(a))) / len(a)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information_gap(codes: Tensor | np.ndarray, factors: Tensor | np.ndarray, num_bins: int = 20,
                           discretisation: Discretisation | str = Discretisation.HISTOGRAM,
                           num_samples: int | None = None, generator: torch.Generator | None = None) -> MIGResult:
    """(N, k) codes (k >= 2) and (N, f) discrete factors -> ``MIGResult`` (MIG in [0, 1]).

    ``num_samples`` (optional) uses a random subset of that many rows, drawn without replacement with
    ``generator``. Factors may hold any discrete values (ids or the factor values themselves); a
    factor that takes a single value has zero entropy and raises ValueError.
    """
    code_array, factor_array = _as_2d("codes", codes), _as_2d("factors", factors)
    if code_array.shape[0] != factor_array.shape[0]:
        raise ValueError(f"codes and factors need the same number of rows, got {code_array.shape[0]} "
                         f"and {factor_array.shape[0]}")
    if code_array.shape[1] < 2:
        raise ValueError(f"MIG needs at least 2 code dimensions, got {code_array.shape[1]}")
    if num_samples is not None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 1 <= num_samples:
            raise ValueError(f"num_samples must be an int >= 1 or None, got {num_samples!r}")
        if num_samples < code_array.shape[0]:
            keep = torch.randperm(code_array.shape[0], generator=generator)[:num_samples].numpy()
            code_array, factor_array = code_array[keep], factor_array[keep]
    binned = discretise(code_array, num_bins, discretisation)
    entropies = np.array([discrete_entropy(v) for v in factor_array.T])
    constant = np.flatnonzero(entropies == 0)
    if constant.size:
        raise ValueError(f"factor(s) {constant.tolist()} take a single value; MIG needs factors with entropy > 0")
    mi = np.array([[discrete_mutual_information(c, v) for v in factor_array.T] for c in binned.T])  # (k, f)
    top = np.sort(mi, axis=0)[::-1]
    gaps = (top[0] - top[1]) / entropies
    return MIGResult(float(gaps.mean()), gaps, mi, entropies)
