"""``mrvae.load``: a run folder, a checkpoint or an export folder -> a model that takes β itself.

The library's models take u (standardised log β) in ``encode(x, u)`` / ``decode(z, u)``; what ``load``
returns for them is a ``LoadedVAE``, a small wrapper whose five methods take β (a float, or a (B,) /
(B, 1) tensor) inside the model's β range::

    sample(n, β, generator)   -> (n, *data_shape) likelihood means of n prior draws (token ids for text)
    reconstruct(x, β)         -> the mean of p(x | z = posterior mean)
    encode(x, β)              -> ((B, k) mean, (B, k) log-variance) of q(z|x)
    decode(z, β)              -> the likelihood mean of p(x|z)
    rate_distortion(x, β, g)  -> ((B,) rate, (B,) distortion) in nats, one z ~ q(z|x) drawn from g

An export of a converted user model (which needs ``build=``) comes back as a ``MultiRateModel`` of the
plain model, with the same methods calling the user's own ``encode`` / ``decode``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ..beta import BetaRange
from ..config import Method, RunConfig, stored_run_config, to_dict
from ..convert.export import CONFIG_FILE, ExportPaths, ExportSource, export_checkpoint, load_exported, \
    read_export_config
from ..convert.make import make_multirate
from ..convert.scope import MultiRateModel
from ..data.base import DataInfo
from ..data.text import MAX_LENGTH
from ..layers import Conditioning, ModelConditioning
from ..models.base import VAE
from ..models.lstm import LSTMVAE
from ..training.runtime import resolve_device
from .folder import RunDir
from .methods import data_info_dict, load_trained

#: The checkpoints a run folder is loaded from, in order of preference.
RUN_METHODS = (Method.MRVAE, Method.YOTO)


class LoadedVAE(nn.Module):
    """A library VAE (``model``) with methods that take β itself, inside ``beta_range``; ``method``,
    ``config`` (the ``RunConfig``), ``info`` (the ``DataInfo``) and ``source`` (the path it was loaded
    from) where known. ``sample`` and ``reconstruct`` keep no gradients; the others do."""

    def __init__(self, model: VAE, method: Method | None = None, config: RunConfig | None = None,
                 info: DataInfo | None = None, source: Path | None = None) -> None:
        super().__init__()
        if not isinstance(model, VAE):
            raise TypeError(f"LoadedVAE wraps a mrvae VAE, got {type(model).__name__}")
        self.model = model
        self.method, self.config, self.info, self.source = method, config, info, source

    @property
    def beta_range(self) -> BetaRange:
        """The β range the model answers for (one β for a β-VAE or an export)."""
        return self.model.beta_range

    @property
    def is_text(self) -> bool:
        """Whether the model reads and writes token ids (the LSTM)."""
        return isinstance(self.model, LSTMVAE)

    def sample(self, n: int, beta: float | Tensor, generator: torch.Generator | None = None) -> Tensor:
        """n prior draws z ~ N(0, I) (from ``generator``) at β -> (n, *data_shape) likelihood means; for text,
        (n, T) token ids ``BOS ...`` decoded greedily from each z (T: the data's sequence length)."""
        if not self.is_text:
            return self.model.sample(n, beta, generator)
        u = self.model.u_in_range(beta)
        length = self.info.shape[0] if self.info is not None else MAX_LENGTH
        return self.model.generate(self.model.prior_latents(n, generator), u, length)

    def reconstruct(self, x: Tensor, beta: float | Tensor) -> Tensor:
        """(B, ...) data at β -> the mean of p(x | z = posterior mean) (``VAE.reconstruct``); for text the
        next-token probabilities (B, T-1, V), teacher forced on x."""
        return self.model.reconstruct(x, beta)

    def encode(self, x: Tensor, beta: float | Tensor) -> tuple[Tensor, Tensor]:
        """(B, ...) data at β -> (B, k) mean and (B, k) log-variance of q(z|x)."""
        return self.model.encode(x, self.model.u_in_range(beta))

    def decode(self, z: Tensor, beta: float | Tensor) -> Tensor:
        """(B, k) latents at β -> the likelihood mean of p(x|z), (B, *data_shape). Text models need the tokens
        to decode (teacher forcing): use ``sample`` or ``model.generate``."""
        return self.model.mean_output(self.model.decode(z, self.model.u_in_range(beta)))

    def rate_distortion(self, x: Tensor, beta: float | Tensor,
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(B, ...) data at β -> ((B,) rate KL(q(z|x) ‖ p(z)), (B,) distortion -log p(x|z)) in nats per
        example, with one z ~ q(z|x) drawn from ``generator`` (as the evaluator does)."""
        out = self.model(x, self.model.u_in_range(beta), generator)
        return out.rate, out.distortion

    def export(self, beta: float, out_dir: str | os.PathLike) -> ExportPaths:
        """Fold the model at β and export it (``convert.export_checkpoint``) with the run config and data
        info, so that ``load_exported(out_dir)`` and ``mrvae.load(out_dir)`` rebuild it with no builder."""
        if self.config is None or self.info is None:
            raise ValueError("this model has no run config and data info to record; use "
                             "mrvae.convert.export_checkpoint with a config of your own")
        config = {"run_config": to_dict(self.config), "data_info": data_info_dict(self.info),
                  "method": None if self.method is None else self.method.value,
                  "checkpoint": None if self.source is None else str(self.source)}
        return export_checkpoint(self.model, beta, out_dir, config)


def run_checkpoint(root: Path, method: Method | str | None = None) -> Path:
    """The checkpoint of a run folder: ``method``'s, or by default the first of MR-VAE and YOTO present."""
    run = RunDir(root)
    if method is not None:
        method = Method(method)
        if method is Method.BETA_VAE:
            raise ValueError(f"a β-VAE of the sweep is one file per β: load {root / 'checkpoints' / 'beta-vae'}"
                             "/beta=….pt itself")
        return run.checkpoint(method)
    for candidate in RUN_METHODS:
        if run.checkpoint(candidate).exists():
            return run.checkpoint(candidate)
    raise ValueError(f"{root} holds no {' or '.join(m.value for m in RUN_METHODS)} checkpoint (checkpoints/"
                     f"mrvae.pt, checkpoints/yoto.pt); give a run folder, a checkpoint file or an export folder")


def _load_export(folder: Path, build: Callable[[dict], nn.Module] | None,
                 device: torch.device) -> LoadedVAE | MultiRateModel:
    meta = read_export_config(folder)
    beta = float(meta["beta"])
    model = load_exported(folder, build).to(device)
    if isinstance(model, VAE):
        config = meta["config"]
        library = meta["source"] == ExportSource.LIBRARY.value and build is None
        method = Method(config["method"]) if library and config.get("method") else None
        return LoadedVAE(model, method, stored_run_config(config["run_config"]) if library else None,
                         DataInfo(**config["data_info"]) if library else None, folder)
    plain = ModelConditioning(kind=Conditioning.NONE)
    return make_multirate(model, BetaRange(beta, beta), exclude=(), spec=plain, inplace=True)


def load(path: str | os.PathLike, *, method: Method | str | None = None,
         build: Callable[[dict], nn.Module] | None = None,
         device: str | torch.device = "cpu") -> LoadedVAE | MultiRateModel:
    """A run folder (its MR-VAE, else YOTO checkpoint; ``method`` picks), a checkpoint file (.pt) or an
    export folder (config.json + model.safetensors) -> the model in eval mode on ``device``, knowing its β
    range, with ``sample`` / ``reconstruct`` / ``encode`` / ``decode`` (/ ``rate_distortion``) taking β.

    Library models come back as a ``LoadedVAE``; an export's β range is the exported β alone. An export
    of a converted model of your own class needs ``build(config)`` (mrvae never imports a class named in
    a file) and comes back as a ``MultiRateModel`` of the plain model, at the exported β alone.
    """
    where = Path(path)
    target = resolve_device(str(device))
    if where.is_dir() and (where / CONFIG_FILE).is_file():
        return _load_export(where, build, target)
    if build is not None:
        raise ValueError(f"build= applies to export folders only; {where} is not one (no {CONFIG_FILE})")
    if method is not None and not where.is_dir():
        raise ValueError(f"method= picks a checkpoint of a run folder; {where} is not a folder")
    if where.is_dir():
        where = run_checkpoint(where, method)
    elif not where.exists():
        raise ValueError(f"{where} does not exist: give a run folder, a checkpoint (.pt) or an export folder")
    trained = load_trained(where, target)
    return LoadedVAE(trained.model, trained.method, trained.config, trained.info, where)
