"""The β range [a, b]: standardised log β, log-uniform samplers and evaluation grids.

Every conditioned layer sees β only through ``u``, log β standardised over the training
range (PAPER.md §2): with ``m = (log a + log b)/2`` and ``h = (log b - log a)/2``,
``u = √3·(log β - m)/h``, so a log-uniform β gives ``u`` uniform on [-√3, √3]
with mean 0 and variance 1. A range with ``low == high`` is a fixed β (β-VAE baselines);
its ``u`` is identically 0.

``Choice`` (the enum base of every named option in mrvae, parsed from its value or name) lives here,
at the bottom of the import graph, because β's sampling mode is the first of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

SQRT3 = math.sqrt(3.0)

#: The β values mrvae accepts: β·R must not overflow float32 (max 3.4e38) for rates up to 1e8 nats,
#: and β must stay a normal float32 number.
BETA_MIN, BETA_MAX = 1e-30, 1e30


class Choice(str, Enum):
    """A string enum whose members can also be looked up by name, case-insensitively
    (``GateFunction("sqrt")`` and ``GateFunction("SQRT")`` are the same member)."""

    @classmethod
    def _missing_(cls, value: object) -> Choice | None:
        if isinstance(value, str):
            for member in cls:
                if value.lower() in (member.name.lower(), member.value.lower()):
                    return member
        raise ValueError(f"{value!r} is not a valid {cls.__name__}; choose one of: "
                         f"{', '.join(m.value for m in cls)}")

    def __str__(self) -> str:
        return self.value


class BetaSampling(Choice):
    """How training draws β: one per example (the authors' experiments) or one per batch (Alg. 1)."""

    PER_EXAMPLE = "per-example"
    PER_BATCH = "per-batch"


@dataclass(frozen=True)
class BetaRange:
    """The closed interval [low, high] of β values a model is trained for (0 < low <= high)."""

    low: float = 0.01
    high: float = 10.0

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"BetaRange.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"BetaRange.{name} must be a finite number > 0, got {value!r}")
            if not BETA_MIN <= value <= BETA_MAX:
                raise ValueError(f"BetaRange.{name} = {value!r} is outside [{BETA_MIN:g}, {BETA_MAX:g}]: β·R and "
                                 f"log β must stay finite in float32 training")
        if self.low > self.high:
            raise ValueError(
                f"BetaRange needs low <= high, got low={self.low!r} > high={self.high!r}"
            )

    @property
    def is_fixed(self) -> bool:
        """True when the range is a single β (a plain β-VAE)."""
        return self.low == self.high

    @property
    def log_center(self) -> float:
        """m = (log a + log b) / 2."""
        return 0.5 * (math.log(self.low) + math.log(self.high))

    @property
    def log_half_width(self) -> float:
        """h = (log b - log a) / 2 (0 for a fixed β)."""
        return 0.5 * (math.log(self.high) - math.log(self.low))

    def contains(self, beta: float, rel_tol: float = 1e-9) -> bool:
        """Whether β lies in [low, high] (with a relative tolerance for rounding)."""
        return self.low * (1 - rel_tol) <= beta <= self.high * (1 + rel_tol)

    def standardise_log(self, log_beta: Tensor) -> Tensor:
        """log β (any shape) -> u of the same shape; identically 0 for a fixed β."""
        if self.is_fixed:
            return torch.zeros_like(log_beta)
        return SQRT3 * (log_beta - self.log_center) / self.log_half_width

    def standardise(self, beta: Tensor | float) -> Tensor:
        """β (any shape, > 0) -> u of the same shape."""
        beta_t = torch.as_tensor(beta, dtype=torch.get_default_dtype())
        if not torch.is_floating_point(beta_t):
            beta_t = beta_t.to(torch.get_default_dtype())
        bad = ~(beta_t > 0)  # also catches NaN
        if bool(bad.any()):
            raise ValueError(f"β must be > 0, got {beta_t[bad].flatten()[0].item()!r}")
        return self.standardise_log(torch.log(beta_t))

    def u_of(self, beta: float | Tensor, device: torch.device | str | None = None,
             dtype: torch.dtype = torch.float32, *, checked: bool = True) -> Tensor:
        """β as a float, or a (B,) / (B, 1) tensor of values > 0 -> u of shape (1, 1) or (B, 1).

        The one place in mrvae where β becomes the ``u`` that conditioned layers take; a float gives
        (1, 1), which broadcasts over any batch. ``checked=False`` skips the finiteness and sign checks,
        which read values back to the host (a device synchronisation on a GPU): for a (B, 1) β that the
        training loop drew itself from this range.
        """
        if not checked and isinstance(beta, Tensor) and beta.dim() == 2:
            return self.standardise_log(torch.log(beta)).to(device=device, dtype=dtype)
        if isinstance(beta, bool) or not isinstance(beta, (int, float, Tensor)):
            raise TypeError(f"β must be a float or a tensor of shape (B,) or (B, 1), got {beta!r}")
        beta_t = torch.as_tensor(beta).detach()
        if beta_t.dim() == 0:
            beta_t = beta_t.reshape(1, 1)
        elif beta_t.dim() == 1:
            beta_t = beta_t.unsqueeze(1)
        if beta_t.dim() != 2 or beta_t.shape[1] != 1 or beta_t.shape[0] == 0:
            raise ValueError(f"β must be a float or a tensor of shape (B,) or (B, 1), got shape {tuple(beta_t.shape)}")
        if not bool(torch.isfinite(beta_t).all()):
            raise ValueError(f"β must be finite, got {beta_t.flatten().tolist()[:8]}")
        return self.standardise(beta_t).to(device=device, dtype=dtype)

    def unstandardise(self, u: Tensor) -> Tensor:
        """u (any shape) -> β of the same shape (the inverse of ``standardise``)."""
        if self.is_fixed:
            return torch.full_like(u, self.low)
        return torch.exp(self.log_center + u * self.log_half_width / SQRT3)

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        mode: BetaSampling | str = BetaSampling.PER_EXAMPLE,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        tilt: float = 0.0,
        ends: float = 0.0,
    ) -> Tensor:
        """Draw log β ~ Uniform[log low, log high]; returns β of shape (batch_size, 1).

        ``tilt`` != 0 draws the position t = (log β − log low)/(log high − log low) in [0, 1] from the
        density ∝ exp(−tilt·t) instead (tilt > 0 favours low β), by inverse CDF from the same uniforms;
        ``ends`` = m in (0, 1] then maps t -> (1 − m)·t + m·(1 − cos πt)/2, which moves mass to both
        ends of the range (m = 1: the arcsine density). Issue 14's recipe uses tilt 1, ends 1.

        ``per-example`` draws ``batch_size`` independent values, ``per-batch`` one value
        repeated. Draws come from ``generator`` (its device decides where they are drawn).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        mode = BetaSampling(mode)
        dtype = dtype or torch.get_default_dtype()
        gen_device = generator.device if generator is not None else torch.device("cpu")
        count = batch_size if mode is BetaSampling.PER_EXAMPLE else 1
        unit = torch.rand(count, 1, generator=generator, device=gen_device, dtype=dtype)
        if tilt != 0.0:
            unit = -torch.log1p(-unit * (-math.expm1(-tilt))) / tilt
        if ends != 0.0:
            unit = (1.0 - ends) * unit + ends * 0.5 * (1.0 - torch.cos(math.pi * unit))
        log_beta = math.log(self.low) + unit * (math.log(self.high) - math.log(self.low))
        beta = torch.exp(log_beta).expand(batch_size, 1).contiguous()
        return beta.to(device) if device is not None else beta

    def grid(self, num: int = 20) -> Tensor:
        """``num`` log-spaced β from low to high inclusive, shape (num,), float64."""
        if num < 1:
            raise ValueError(f"a β grid needs at least 1 point, got {num}")
        if self.is_fixed:
            return torch.full((num,), float(self.low), dtype=torch.float64)
        if num == 1:
            return torch.tensor([math.sqrt(self.low * self.high)], dtype=torch.float64)
        return torch.logspace(math.log10(self.low), math.log10(self.high), num, dtype=torch.float64)


def baseline_betas(num: int = 10, low: float = 0.01, high: float = 10.0) -> list[float]:
    """The β-VAE sweep of PAPER.md §4: ``logspace(log10 low, log10 high, num)`` as floats."""
    return [float(b) for b in BetaRange(low, high).grid(num)]
