"""Which layers of a user's model get conditioned: names, globs and rules; the paper's exclusions;
layers in registration or execution order; a BatchNorm right behind a layer."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .scope import GATEABLE, output_units

#: A rule ``(qualified_name, module) -> bool`` choosing layers.
Rule = Callable[[str, nn.Module], bool]
#: Layers named exactly (``"fc21"``, or a parent such as ``"decoder"`` for everything under it), by a
#: glob (``"decoder.*"``), by a rule, or any list of these.
Selector = Union[str, Rule, Iterable[Union[str, Rule]]]


def aliases(model: nn.Module) -> dict[int, tuple[nn.Module, list[str]]]:
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


def select(selector: Selector, layers: dict[int, tuple[nn.Module, list[str]]], argument: str) -> set[int]:
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


def following_batchnorm(model: nn.Module, name: str, layer: nn.Module) -> tuple[str, nn.Module] | None:
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


def gateable_layers(model: nn.Module) -> list[str]:
    """Qualified names of the Linear / Conv / ConvTranspose layers of ``model``, registration order."""
    return [names[0] for _, names in aliases(model).values()]


def execution_order(model: nn.Module, example_args: Sequence[Any]) -> list[str]:
    """Names of the gateable layers in the order ``model(*example_args)`` calls them (eval mode, no
    gradient; the model's training flags are restored and nothing is updated)."""
    layers = aliases(model)
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
