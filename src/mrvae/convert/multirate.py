"""Make a user's own VAE multi-rate: gate its hidden layers and set β inside one scoped ``with`` block.

A user's ``forward`` cannot take β, so the converted model keeps it in a small ``BetaScope`` that only
``MultiRateModel.beta`` (a context manager) sets and always restores. Each chosen ``nn.Linear`` /
``nn.Conv*d`` / ``nn.ConvTranspose*d`` is replaced by a ``ScopedLayer``: a ``ConditionedLayer`` holding
the original layer as ``base`` plus a per-unit gate (or FiLM) that reads u from that scope. When a
chosen layer is followed by a BatchNorm in the same parent, the gate goes after the BatchNorm (a gate
before it would be normalised away in training).
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..beta import BetaRange
from ..layers import BetaConditioned, Conditioning, ConditionedLayer, ConditioningSpec, ModelConditioning
from ..objectives import beta_objective

#: Layer types the converter can gate (one gate per output unit / output channel).
GATEABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                                         nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

#: A rule ``(qualified_name, module) -> bool`` choosing layers.
Rule = Callable[[str, nn.Module], bool]
#: Layers named exactly (``"fc21"``, or a parent such as ``"decoder"`` for everything under it), by a
#: glob (``"decoder.*"``), by a rule, or any list of these.
Selector = Union[str, Rule, Iterable[Union[str, Rule]]]


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


class ScopedLayer(ConditionedLayer):
    """A user's layer (``base``) with per-unit conditioning that reads u from the model's ``BetaScope``.

    ``forward(x)`` -> ``gate(u) ⊙ base(x)`` (or FiLM), with u the scope's; an explicit ``u`` wins.
    Attributes it does not have (``weight``, ``out_features``, ...) are read from ``base``, so user
    code touching ``self.fc1.weight`` keeps working.
    """

    def __init__(self, base: nn.Module, spec: ConditioningSpec, scope: BetaScope, name: str) -> None:
        super().__init__(base, output_units(base), spec)
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
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__.get("_modules", {}).get("base")
            if base is None:
                raise
            return getattr(base, name)


class MultiRateModel(nn.Module):
    """A converted user model: ``forward`` is the user's; β is set with ``with mr.beta(b): out = mr(x)``.

    ``model`` is the user's module with ``ScopedLayer``s in place of the gated layers; attributes not
    found on the wrapper (``mr.encode``, ...) are read from it. Build one with ``make_multirate``.
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

    def u_of(self, beta: float | Tensor) -> Tensor:
        """β (a float, or (B,) / (B, 1)) -> u of shape (1, 1) or (B, 1) on the model's device."""
        reference = next(self.parameters(), None)
        return self.beta_range.u_of(beta, reference.device if reference is not None else None)

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

    @property
    def current_u(self) -> Tensor | None:
        """u of the active β context ((1, 1) or (B, 1)), or ``None`` outside one."""
        return self.scope.u

    @property
    def gated_layers(self) -> tuple[str, ...]:
        """Qualified names (inside ``model``) of the conditioned layers, in registration order."""
        return tuple(name for name, m in self.model.named_modules() if isinstance(m, ScopedLayer))

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("model")
            if inner is None:
                raise
            return getattr(inner, name)


def _aliases(model: nn.Module) -> dict[int, tuple[nn.Module, list[str]]]:
    """Every gateable layer below the root, once per object, with all the names it is registered under."""
    found: dict[int, tuple[nn.Module, list[str]]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if name and isinstance(module, GATEABLE):
            found.setdefault(id(module), (module, []))[1].append(name)
    return found


def _entry_matches(entry: str, name: str) -> bool:
    if any(ch in entry for ch in "*?["):
        return fnmatch.fnmatchcase(name, entry)
    return name == entry or name.startswith(entry + ".")


def _select(selector: Selector, layers: dict[int, tuple[nn.Module, list[str]]], argument: str) -> set[int]:
    """Ids of the layers a selector picks; a name or glob matching no layer is an error (typos)."""
    entries = [selector] if isinstance(selector, str) or callable(selector) else list(selector)
    chosen: set[int] = set()
    for entry in entries:
        if isinstance(entry, str):
            hits = {key for key, (_, names) in layers.items() if any(_entry_matches(entry, n) for n in names)}
            if not hits:
                known = sorted(names[0] for _, names in layers.values())
                raise ValueError(f"{argument} entry {entry!r} matches no Linear/Conv/ConvTranspose layer; "
                                 f"the model's layers are {known}")
            chosen |= hits
        elif callable(entry):
            chosen |= {key for key, (module, names) in layers.items() if any(entry(n, module) for n in names)}
        else:
            raise TypeError(f"{argument} entries must be names, globs or rules (name, module) -> bool, "
                            f"got {entry!r}")
    return chosen


def _following_batchnorm(model: nn.Module, name: str, layer: nn.Module) -> tuple[str, nn.Module] | None:
    """The BatchNorm registered right after ``name`` in the same parent with matching width, if any."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    children = list(parent.named_children())
    for index, (child_name, _) in enumerate(children[:-1]):
        if child_name == child:
            next_name, candidate = children[index + 1]
            if isinstance(candidate, _BatchNorm) and candidate.num_features == output_units(layer):
                return (f"{parent_name}.{next_name}" if parent_name else next_name), candidate
    return None


def _replace(model: nn.Module, target: nn.Module, replacement: nn.Module) -> None:
    """Register ``replacement`` wherever ``target`` is registered below the root of ``model``."""
    for _, module in list(model.named_modules(remove_duplicate=False)):
        for child_name, child in list(module._modules.items()):  # named_children() hides aliases
            if child is target:
                setattr(module, child_name, replacement)


def make_multirate(model: nn.Module, beta_range: BetaRange = BetaRange(), *, exclude: Selector,
                   spec: ModelConditioning | ConditioningSpec = ModelConditioning(),
                   decoder: Selector | None = None, gate_batchnorm: bool = True,
                   inplace: bool = False) -> MultiRateModel:
    """Turn a user's VAE into an MR-VAE: every Linear / Conv / ConvTranspose layer not in ``exclude``
    gets per-unit conditioning (``spec``); the original weights are kept.

    ``exclude`` is required (pass ``()`` to gate every layer); ``paper_exclude`` gives the paper's rule
    (latent heads and output layer ungated). With a ``ModelConditioning`` whose encoder and decoder
    specs differ, ``decoder`` names the decoder's layers. ``gate_batchnorm`` moves a gate behind a
    BatchNorm registered right after its layer. The user's module is deep-copied unless ``inplace``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"make_multirate needs an nn.Module, got {type(model).__name__}")
    if not isinstance(beta_range, BetaRange):
        raise TypeError(f"beta_range must be a BetaRange, got {beta_range!r}")
    if any(isinstance(m, BetaConditioned) for m in model.modules()):
        raise TypeError(f"{type(model).__name__} already contains mrvae conditioned layers; use it as it is "
                        "(its forward takes u) instead of converting it")
    if isinstance(spec, ModelConditioning):
        encoder_spec, decoder_spec = spec.encoder(), spec.decoder()
        if encoder_spec != decoder_spec and spec.kind is Conditioning.GATE and decoder is None:
            raise ValueError(f"spec has encoder_gate={spec.encoder_gate.value} and decoder_gate="
                             f"{spec.decoder_gate.value}: pass decoder=... naming the decoder's layers")
    elif isinstance(spec, ConditioningSpec):
        if decoder is not None:
            raise ValueError("decoder=... only applies with a ModelConditioning spec; a ConditioningSpec "
                             f"is used for every layer, got decoder={decoder!r}")
        encoder_spec = decoder_spec = spec
    else:
        raise TypeError(f"spec must be a ModelConditioning or a ConditioningSpec, got {spec!r}")

    target = model if inplace else copy.deepcopy(model)
    layers = _aliases(target)
    excluded = _select(exclude, layers, "exclude")
    in_decoder = _select(decoder, layers, "decoder") if decoder is not None else set()
    scope = BetaScope()
    if encoder_spec.kind is not Conditioning.NONE:
        wrapped: set[int] = set()
        for key, (layer, names) in layers.items():
            if key in excluded:
                continue
            gated_name, gated = names[0], layer
            follower = _following_batchnorm(target, names[0], layer) if gate_batchnorm else None
            if follower is not None:
                gated_name, gated = follower
            if id(gated) in wrapped:
                continue
            wrapped.add(id(gated))
            layer_spec = decoder_spec if key in in_decoder else encoder_spec
            _replace(target, gated, ScopedLayer(gated, layer_spec, scope, gated_name))
    return MultiRateModel(target, beta_range, scope)


def gateable_layers(model: nn.Module) -> list[str]:
    """Qualified names of the Linear / Conv / ConvTranspose layers of ``model``, registration order."""
    return [names[0] for _, names in _aliases(model).values()]


def execution_order(model: nn.Module, example_args: Sequence[Any]) -> list[str]:
    """Names of the gateable layers in the order ``model(*example_args)`` calls them (eval mode, no
    gradient; the model's training flags are restored and nothing is updated)."""
    layers = _aliases(model)
    order: list[str] = []
    handles = [layer.register_forward_hook(lambda m, i, o, name=names[0]: order.append(name))
               for layer, names in layers.values()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(*example_args)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            module.training = mode
    return order


def last_layer(model: nn.Module, example_args: Sequence[Any] | None = None) -> str:
    """Name of the output layer: the last gateable layer called on ``example_args`` if given, else the
    last one registered (right for nn.Sequential and for attributes declared in call order)."""
    names = execution_order(model, example_args) if example_args is not None else gateable_layers(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear/Conv/ConvTranspose layer")
    return names[-1]


def paper_exclude(model: nn.Module, latent_heads: Sequence[str], output_layer: str | None = None,
                  example_args: Sequence[Any] | None = None) -> list[str]:
    """The paper's ungated layers (PAPER.md §2): the named latent mean / log-variance heads and the
    output layer (``output_layer``, or ``last_layer(model, example_args)``). Pass the result as
    ``exclude``; add a conv decoder's first ``Linear(z -> feature map)`` yourself if you have one."""
    if isinstance(latent_heads, str):
        raise TypeError(f"latent_heads must be a list of layer names, got the string {latent_heads!r}")
    known = set(gateable_layers(model))
    for head in latent_heads:
        if head not in known:
            raise ValueError(f"latent head {head!r} is not a Linear/Conv/ConvTranspose layer of "
                             f"{type(model).__name__}; its layers are {sorted(known)}")
    output = output_layer if output_layer is not None else last_layer(model, example_args)
    if output not in known:
        raise ValueError(f"output_layer {output!r} is not one of the model's layers {sorted(known)}")
    return [*latent_heads, output] if output not in latent_heads else list(latent_heads)


def beta_context(model: MultiRateModel | ConvertedVAE, beta: float | Tensor):
    """``with beta_context(model, β): ...`` is ``with model.beta(β): ...`` (float, (B,) or (B, 1) β)."""
    if not isinstance(model, (MultiRateModel, ConvertedVAE)):
        raise TypeError(f"beta_context needs a model from make_multirate (or a ConvertedVAE), "
                        f"got {type(model).__name__}")
    return model.beta(beta)


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

    def u_of(self, beta: float | Tensor) -> Tensor:
        """β -> u over this model's ``beta_range`` (see ``MultiRateModel.u_of``)."""
        return self.multirate.u_of(beta)

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
