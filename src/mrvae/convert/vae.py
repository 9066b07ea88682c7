"""A converted model trained like a library VAE: ``ConvertedVAE`` = ``MultiRateModel`` + the user's loss terms,
and ``beta_context`` for either."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..beta import BetaRange
from ..objectives import beta_objective
from .scope import MultiRateModel

#: ``loss_terms(output, x) -> (distortion, rate)``: the user's forward output and the batch -> two (B,)
#: tensors in nats per example (distortion summed over data dims, rate summed over latents).
LossTerms = Callable[[Any, Tensor], tuple[Tensor, Tensor]]


@dataclass
class ConvertedOutput:
    """One forward pass of a converted model: the user's ``output`` and the (B,) ``rate`` and
    ``distortion`` in nats per example that ``loss_terms`` computed from it."""

    output: Any
    rate: Tensor
    distortion: Tensor


class ConvertedVAE(nn.Module):
    """A converted model plus the user's loss terms, with the ``objective(x, beta, u, generator)`` that
    ``fit()`` trains: ``((B,) D + β·R in nats, ConvertedOutput)``."""

    def __init__(self, multirate: MultiRateModel, loss_terms: LossTerms) -> None:
        super().__init__()
        if not isinstance(multirate, MultiRateModel):
            raise TypeError(f"ConvertedVAE wraps the result of make_multirate(...), got {type(multirate).__name__}")
        if not callable(loss_terms):
            raise TypeError(f"loss_terms must be callable (output, x) -> (distortion, rate), got {loss_terms!r}")
        self.multirate = multirate
        self.loss_terms = loss_terms

    @property
    def beta_range(self) -> BetaRange:
        return self.multirate.beta_range

    def beta(self, beta: float | Tensor):
        """The converted model's β context (see ``MultiRateModel.beta``)."""
        return self.multirate.beta(beta)

    def u_of(self, beta: float | Tensor, *, checked: bool = True) -> Tensor:
        """β -> u over this model's ``beta_range`` (see ``MultiRateModel.u_of``)."""
        return self.multirate.u_of(beta, checked=checked)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The user's forward (needs an active β context)."""
        return self.multirate(*args, **kwargs)

    def objective(self, x: Tensor, beta: Tensor | float, u: Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[Tensor, ConvertedOutput]:
        """(B, ...) data, (B, 1) β and u -> ((B,) D + β·R in nats, ``ConvertedOutput``).

        As in ``VAE.objective`` the gates see ``u`` and the loss sees β (they differ under KL warm-up);
        ``u`` must be standardised over this model's ``beta_range``, and ``None`` computes it from β.
        ``generator`` is unused: the user's forward draws its own noise from the global RNG.
        """
        scope = self.multirate.beta(beta) if u is None else self.multirate.scoped_u(u)
        with scope:
            output = self.multirate(x)
            distortion, rate = self.loss_terms(output, x)
        batch = x.shape[0]
        for label, term in (("distortion", distortion), ("rate", rate)):
            if not isinstance(term, Tensor) or term.shape != (batch,):
                shape = tuple(term.shape) if isinstance(term, Tensor) else type(term).__name__
                raise ValueError(f"loss_terms must return (distortion, rate) of shape ({batch},) in nats per "
                                 f"example; {label} has shape {shape}")
        return beta_objective(distortion, rate, beta), ConvertedOutput(output, rate, distortion)


    def encode(self, x: Tensor, beta: float | Tensor | None = None) -> Any:
        """Your model's ``encode(x)`` at β (see ``MultiRateModel.encode``)."""
        return self.multirate.encode(x, beta)

    def decode(self, z: Tensor, beta: float | Tensor | None = None) -> Any:
        """Your model's ``decode(z)`` at β (see ``MultiRateModel.decode``)."""
        return self.multirate.decode(z, beta)

    def sample(self, n: int, beta: float | Tensor, generator: torch.Generator | None = None,
               latent_dim: int | None = None) -> Any:
        """n prior draws decoded at β (see ``MultiRateModel.sample``)."""
        return self.multirate.sample(n, beta, generator, latent_dim)

    def reconstruct(self, x: Tensor, beta: float | Tensor) -> Any:
        """``decode(encode(x)[0])`` at β (see ``MultiRateModel.reconstruct``)."""
        return self.multirate.reconstruct(x, beta)

    def rate_distortion(self, x: Tensor, beta: float | Tensor) -> tuple[Tensor, Tensor]:
        """(B, ...) data at β (a float or (B,) / (B, 1), inside ``beta_range``) -> ((B,) rate, (B,)
        distortion) in nats per example: your ``loss_terms`` on your forward (which draws its own noise)."""
        _, out = self.objective(x, beta, self.multirate.u_in_range(beta))
        return out.rate, out.distortion


def beta_context(model: MultiRateModel | ConvertedVAE, beta: float | Tensor):
    """``with beta_context(model, β): ...`` is ``with model.beta(β): ...`` (float, (B,) or (B, 1) β)."""
    if not isinstance(model, (MultiRateModel, ConvertedVAE)):
        raise TypeError(f"beta_context needs a model from make_multirate (or a ConvertedVAE), "
                        f"got {type(model).__name__}")
    return model.beta(beta)
