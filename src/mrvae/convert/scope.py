"""The β scope of a converted model: ``BetaScope`` (u, set only inside a ``with``), the ``ScopedLayer`` that
reads it, and ``MultiRateModel``, the user's module whose ``beta(β)`` context sets it.

A user's ``forward`` cannot take β, so the converted model keeps u in a small ``BetaScope`` that only
``MultiRateModel.beta`` (a context manager) sets and always restores; a scoped layer run outside one
raises ``BetaNotSetError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..beta import BetaRange
from ..layers import ConditionedLayer, ModelConditioning, Role
from ..models.base import check_beta_in_range, prior_draws

#: Layer types the converter can gate (one gate per output unit / output channel).
GATEABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                                         nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class BetaNotSetError(RuntimeError):
    """A converted layer ran outside a ``with model.beta(...)`` block."""


class BetaScope:
    """The current u (standardised log β, (B, 1) or (1, 1)) of one converted model; ``None`` outside
    a β context. Only ``MultiRateModel.beta`` sets it."""

    def __init__(self) -> None:
        self.u: Tensor | None = None

    def require(self, where: str) -> Tensor:
        """The current u, or ``BetaNotSetError`` naming ``where`` when no β context is active."""
        if self.u is None:
            raise BetaNotSetError(
                f"{where} is conditioned on β but ran outside a β context; call the model inside "
                "`with model.beta(b): ...` (or `with beta_context(model, b): ...`)")
        return self.u


def output_units(module: nn.Module) -> int:
    """Number of output units / channels of a gateable layer or BatchNorm (what gets one gate each)."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels
    if isinstance(module, _BatchNorm):
        return module.num_features
    raise TypeError(f"cannot gate a {type(module).__name__}; expected one of "
                    f"{[t.__name__ for t in GATEABLE]} or a BatchNorm")


def delegated_getattr(module: nn.Module, name: str, inner: str) -> Any:
    """``nn.Module.__getattr__(module, name)``, falling back to the attribute of the submodule ``inner``:
    what lets user code read ``layer.weight`` or call ``model.encode`` through a wrapper."""
    try:
        return nn.Module.__getattr__(module, name)
    except AttributeError:
        target = module.__dict__.get("_modules", {}).get(inner)
        if target is None:
            raise
        return getattr(target, name)


class ScopedLayer(ConditionedLayer):
    """A user's layer (``base``) with per-unit conditioning that reads u from the model's ``BetaScope``.

    ``forward(x)`` -> ``gate(u) ⊙ base(x)`` (or FiLM), with u the scope's; an explicit ``u`` wins.
    Attributes it does not have (``weight``, ``out_features``, ...) are read from ``base``, so user
    code touching ``self.fc1.weight`` keeps working.
    """

    def __init__(self, base: nn.Module, spec: ModelConditioning, role: Role | str, scope: BetaScope,
                 name: str) -> None:
        super().__init__(base, output_units(base), spec, role)
        self.scope = scope
        self.qualified_name = name
        reference = next(base.parameters(), None)
        if reference is not None:
            for extra in (self.gate, self.film):
                if extra is not None:
                    extra.to(device=reference.device, dtype=reference.dtype)

    def forward(self, x: Tensor, u: Tensor | None = None) -> Tensor:
        """(B, in, ...) -> (B, out, ...), conditioned on the scope's u."""
        if u is None:
            u = self.scope.require(f"layer {self.qualified_name!r}").to(x.device)
        return super().forward(x, u)

    def __getattr__(self, name: str) -> Any:
        return delegated_getattr(self, name, "base")


class MultiRateModel(nn.Module):
    """A converted user model: ``forward`` is the user's; β is set with ``with mr.beta(b): out = mr(x)``.

    ``model`` is the user's module with ``ScopedLayer``s in place of the gated layers; attributes not
    found on the wrapper are read from it. ``encode(x, β)``, ``decode(z, β)``, ``sample(n, β)`` and
    ``reconstruct(x, β)`` call the user's own ``encode(x)`` / ``decode(z)`` at β (without β, encode and
    decode use the active β context). Build one with ``make_multirate``.
    """

    def __init__(self, model: nn.Module, beta_range: BetaRange, scope: BetaScope) -> None:
        super().__init__()
        self.model = model
        self.beta_range = beta_range
        self.scope = scope

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The user's forward; every gated layer needs an active β context."""
        return self.model(*args, **kwargs)

    def beta(self, beta: float | Tensor) -> contextlib.AbstractContextManager[MultiRateModel]:
        """Set β (a float, or (B,) / (B, 1) per-example values) for the block; the previous value
        (``None`` or an outer context's) is restored on exit, exceptions included."""
        return self.scoped_u(self.u_of(beta))

    def u_of(self, beta: float | Tensor, *, checked: bool = True) -> Tensor:
        """β (a float, or (B,) / (B, 1)) -> u of shape (1, 1) or (B, 1) on the model's device."""
        reference = next(self.parameters(), None)
        return self.beta_range.u_of(beta, reference.device if reference is not None else None, checked=checked)

    @contextlib.contextmanager
    def scoped_u(self, u: Tensor) -> Iterator[MultiRateModel]:
        """Like ``beta`` for a caller that already holds u = ``beta_range.standardise(β)``, (1, 1) or (B, 1)."""
        if not isinstance(u, Tensor) or not torch.is_floating_point(u) or u.dim() != 2 or u.shape[1] != 1:
            shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
            raise ValueError(f"u must be a floating tensor of shape (B, 1) or (1, 1), got {shape}")
        previous = self.scope.u
        self.scope.u = u.detach()
        try:
            yield self
        finally:
            self.scope.u = previous

    def u_in_range(self, beta: float | Tensor) -> Tensor:
        """``u_of(β)``, refusing β outside ``beta_range`` (ValueError): the u of the β-taking methods."""
        u = self.u_of(beta)
        check_beta_in_range(self.beta_range, beta)
        return u

    def _at(self, beta: float | Tensor | None) -> contextlib.AbstractContextManager[Any]:
        """The β context of one call: β inside the range, or ``None`` for the active context's."""
        return contextlib.nullcontext() if beta is None else self.scoped_u(self.u_in_range(beta))

    def _user(self, name: str) -> Any:
        method = getattr(self.model, name, None)
        if not callable(method):
            raise AttributeError(f"{type(self.model).__name__} has no {name}(...): the β-taking methods of a "
                                 "converted model call your model's own encode(x) -> (mean, log_var) and decode(z)")
        return method

    def encode(self, x: Tensor, beta: float | Tensor | None = None) -> Any:
        """(B, ...) data -> your model's ``encode(x)`` (for a VAE: (B, k) mean and log-variance), run at β (a
        float or (B,) / (B, 1), inside ``beta_range``); β ``None`` uses the active ``with mr.beta(...)``."""
        with self._at(beta):
            return self._user("encode")(x)

    def decode(self, z: Tensor, beta: float | Tensor | None = None) -> Any:
        """(B, k) latents -> your model's ``decode(z)`` (what it returns, e.g. the Bernoulli mean) at β
        (``None``: the active β context)."""
        with self._at(beta):
            return self._user("decode")(z)

    @torch.no_grad()
    def sample(self, n: int, beta: float | Tensor, generator: torch.Generator | None = None,
               latent_dim: int | None = None) -> Any:
        """n prior draws z ~ N(0, I) (from ``generator``, on its device) decoded at β by your ``decode(z)``;
        the latent size is ``latent_dim`` or your model's ``latent_dim`` attribute. No gradients are kept."""
        size = latent_dim if latent_dim is not None else getattr(self.model, "latent_dim", None)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"sample needs the latent size: {type(self.model).__name__} has no int latent_dim "
                             f"attribute ({size!r}); pass latent_dim=...")
        reference = next(self.parameters(), None)
        return self.decode(prior_draws(n, size, generator, None if reference is None else reference.device), beta)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, beta: float | Tensor) -> Any:
        """(B, ...) data -> ``decode(encode(x)[0])`` at β: your decoder's output at the posterior mean."""
        with self._at(beta):
            return self._user("decode")(self._user("encode")(x)[0])

    @property
    def current_u(self) -> Tensor | None:
        """u of the active β context ((1, 1) or (B, 1)), or ``None`` outside one."""
        return self.scope.u

    @property
    def gated_layers(self) -> tuple[str, ...]:
        """Qualified names (inside ``model``) of the conditioned layers, in registration order."""
        return tuple(name for name, m in self.model.named_modules() if isinstance(m, ScopedLayer))

    def __getattr__(self, name: str) -> Any:
        return delegated_getattr(self, name, "model")
