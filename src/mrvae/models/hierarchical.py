"""Hierarchical (NVAE-style) VAE: top-down latent groups over several scales, residual cells with
squeeze-and-excitation, every conv a conditioned layer (none | gate | film); β multiplies the summed KL.

Latent coordinates. Group g has a Gaussian posterior q(z_g | x, z_<g) and prior p(z_g | z_<g) (N(0, I)
for the top group), both diagonal over (latent channels × side × side). The model works in the
prior's *whitened* coordinates ``w_g = (z_g - μ_p,g) / σ_p,g``: there the prior is N(0, I) and the
posterior is N(m_g, exp(v_g)), and because KL is invariant under one affine map of both arguments,
``KL(q ‖ p) = ½ Σ (m² + e^v - v - 1)`` — ``gaussian_rate(m, v)``. So ``VAEOutput.mean`` / ``log_var`` /
``z`` are the groups' (m, v, w), flattened and concatenated top group first, (B, latent_dim);
``rate`` is the sum of the groups' KL in nats; active units count whitened posterior means that vary
over x; and ``decode(z)`` of z ~ N(0, I) is an exact ancestral sample of the prior. The posterior of a
lower group depends on the upper groups' sample, so ``encode`` reports the groups along the posterior
*mean* path (every w_g = m_g), ``forward`` along a sampled path, and the IWAE bound
(``iwae_bound`` / ``log_importance_weights``) runs one top-down pass per importance sample:
``objectives.iwae_bound``, which assumes a single N(0, I)-prior latent, does not apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..beta import BetaRange
from ..layers import ConditionedConv2d, ModelConditioning, Role
from ..objectives import Likelihood, gaussian_rate
from .base import VAE, VAEOutput
from .hierarchical_cells import DownCell, Norm, ResidualCell, UpCell, normalisation

#: The posterior and prior heads' default initial weights and biases are multiplied by this.
HEAD_INIT_SCALE = 0.1

#: Log-variances (prior and whitened posterior) are soft-clamped to (-LOG_VAR_LIMIT, LOG_VAR_LIMIT).
LOG_VAR_LIMIT = 10.0


def bits_per_dim(nats: Tensor | float, dims: int) -> Tensor | float:
    """Nats per example (e.g. -ELBO or an IWAE NLL) -> bits per data dimension: nats / (dims · ln 2).

    For a Gaussian decoder on data scaled to [0, 1] this is a density's bits/dim; the dequantised
    8-bit figures of the literature add log₂ 256 = 8 (and need a discretised likelihood to compare)."""
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    return nats / (dims * math.log(2.0))


@dataclass(frozen=True)
class Hierarchy:
    """Sizes of a ``HierarchicalVAE``: ``channels`` at full resolution (doubled at every halving),
    ``groups`` = latent groups per scale, top (coarsest) scale first (its length is the number of
    scales), ``latent_channels`` per group, and the cells' normalisation ``norm`` (see ``Norm``)."""

    channels: int = 8
    groups: tuple[int, ...] = (2, 2)
    latent_channels: int = 4
    norm: Norm = Norm.BATCH

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(int(g) for g in self.groups))
        object.__setattr__(self, "norm", Norm(self.norm))
        if self.channels < 1 or self.latent_channels < 1:
            raise ValueError(f"channels and latent_channels must be >= 1, got {self.channels}, "
                             f"{self.latent_channels}")
        if not self.groups or any(g < 1 for g in self.groups):
            raise ValueError(f"groups must list >= 1 group for each of >= 1 scales, got {list(self.groups)}")

    @classmethod
    def paper_binary(cls) -> Hierarchy:
        """The paper's binary-image NVAE (PAPER.md §6): 16 channels, 2 scales of 10 groups of 20 latents."""
        return cls(channels=16, groups=(10, 10), latent_channels=20, norm=Norm.BATCH)

    @property
    def scales(self) -> int:
        return len(self.groups)


class GroupTerms(NamedTuple):
    """One latent group in a top-down pass, each (B, c, s, s): whitened posterior mean ``mean`` and
    log-variance ``log_var`` (None when decoding given latents), the whitened latent ``latent`` and the
    prior's ``prior_mean`` / ``prior_log_var`` (of z itself; 0 for the top group)."""

    mean: Tensor | None
    log_var: Tensor | None
    latent: Tensor
    prior_mean: Tensor
    prior_log_var: Tensor


def _split_gaussian(params: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2c, s, s) head output -> mean and soft-clamped log-variance, each (B, c, s, s)."""
    mean, log_var = params.chunk(2, dim=1)
    return mean, LOG_VAR_LIMIT * torch.tanh(log_var / LOG_VAR_LIMIT)


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    """Per-group (B, c, s, s) tensors -> (B, Σ c·s·s), top group first."""
    return torch.cat([t.flatten(1) for t in tensors], dim=1)


class HierarchicalVAE(VAE):
    """NVAE-style hierarchical VAE on (B, C, S, S) images (any S; padded on the bottom/right to a
    multiple of 2^scales and cropped back), see the module docstring for the latent coordinates.

    Encoder (bottom-up): conv3 stem (C -> ch), a down cell, then per scale (finest first) one residual
    cell per group, whose output feeds that group's posterior, and a down cell between scales (channels
    double at each halving). Decoder (top-down): a learned constant at the top scale; per group, the
    prior head (groups below the top), the posterior (encoder feature + 1×1 conv of the decoder state,
    Swish, conv3 head) and ``h += conv1×1(z_g)``; a residual cell between groups of a scale and an up
    cell between scales; finally an up cell to full resolution, norm, Swish and a conv3 output layer.

    Conditioned (gated for MR-VAE, FiLM for YOTO): every conv of the stem, the cells (squeeze-and-
    excitation's hidden Linear included), the combiners and the latent projections. Plain, following
    PAPER.md §2 (the μ / log σ² heads and the output layer are not gated): the posterior and prior heads,
    the excitation output and the output conv. ``Norm.BATCH`` (NVAE's choice, the default) pools
    statistics over examples with different β in training and evaluates with statistics averaged over
    β; ``Norm.NONE`` avoids that (PAPER.md §2). ``likelihood=None``: Bernoulli for one channel,
    Gaussian (variance ``sigma2``) otherwise. ``latent_dim`` is the total flattened latent size.
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), hierarchy: Hierarchy = Hierarchy(),
                 likelihood: Likelihood | str | None = None, sigma2: float = 1.0,
                 conditioning: ModelConditioning = ModelConditioning(), beta_range: BetaRange = BetaRange()) -> None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or shape[0] < 1 or shape[1] != shape[2] or shape[1] < 1:
            raise ValueError(f"input_shape must be (C, S, S) with C, S >= 1, got {tuple(input_shape)!r}")
        levels = hierarchy.scales
        padded = -(-shape[1] // 2 ** levels) * 2 ** levels
        sides = [padded // 2 ** (levels - i) for i in range(levels)]  # top scale first
        total = sum(n * hierarchy.latent_channels * s * s for n, s in zip(hierarchy.groups, sides))
        if likelihood is None:
            likelihood = Likelihood.BERNOULLI if shape[0] == 1 else Likelihood.GAUSSIAN
        super().__init__(total, likelihood, sigma2, conditioning.kind, beta_range)
        self.input_shape, self.hierarchy, self.padded_side = shape, hierarchy, padded
        self.sides = sides
        self.widths = [hierarchy.channels * 2 ** (levels - i) for i in range(levels)]  # top scale first
        self.data_dims = math.prod(shape)
        self._build_encoder(conditioning)
        self._build_decoder(conditioning)

    def _build_encoder(self, conditioning: ModelConditioning) -> None:
        h, norm, role = self.hierarchy, self.hierarchy.norm, Role.ENCODER
        self.stem = ConditionedConv2d(self.input_shape[0], h.channels, 3, 1, 1, spec=conditioning, role=role)
        tower: list[nn.Module] = [DownCell(h.channels, self.widths[-1], conditioning, role, norm)]
        for scale in reversed(range(h.scales)):  # finest first
            tower += [ResidualCell(self.widths[scale], conditioning, role, norm) for _ in range(h.groups[scale])]
            if scale > 0:
                tower.append(DownCell(self.widths[scale], self.widths[scale - 1], conditioning, role, norm))
        self.encoder_tower = nn.ModuleList(tower)

    def _build_decoder(self, conditioning: ModelConditioning) -> None:
        h, norm, lat, dec = self.hierarchy, self.hierarchy.norm, self.hierarchy.latent_channels, Role.DECODER
        plain = conditioning.unconditioned()
        self.top = nn.Parameter(torch.randn(1, self.widths[0], self.sides[0], self.sides[0]) * 0.1)
        cells: list[nn.Module] = []
        combine, post, prior, project = [], [], [], []
        for scale, count in enumerate(h.groups):
            width = self.widths[scale]
            for index in range(count):
                if scale or index:  # every group but the top one: a cell before it, and a prior head
                    cells.append(UpCell(self.widths[scale - 1], width, conditioning, dec, norm) if index == 0
                                 else ResidualCell(width, conditioning, dec, norm))
                    prior.append(ConditionedConv2d(width, 2 * lat, 3, 1, 1, spec=plain, role=dec))
                combine.append(ConditionedConv2d(width, width, 1, 1, 0, spec=conditioning, role=Role.ENCODER))
                post.append(ConditionedConv2d(width, 2 * lat, 3, 1, 1, spec=plain, role=Role.ENCODER))
                project.append(ConditionedConv2d(lat, width, 1, 1, 0, spec=conditioning, role=dec))
        self.decoder_cells, self.prior_heads = nn.ModuleList(cells), nn.ModuleList(prior)
        self.posterior_combiners, self.posterior_heads = nn.ModuleList(combine), nn.ModuleList(post)
        self.latent_projections = nn.ModuleList(project)
        self.final_cell = UpCell(self.widths[-1], h.channels, conditioning, dec, norm)
        self.final_norm = normalisation(norm, h.channels)
        self.output_layer = ConditionedConv2d(h.channels, self.input_shape[0], 3, 1, 1, spec=plain, role=dec)
        with torch.no_grad():  # heads start near the prior (rate near 0), as no KL warm-up eases the start
            for head in [*self.prior_heads, *self.posterior_heads]:
                for p in head.parameters():
                    p.mul_(HEAD_INIT_SCALE)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"HierarchicalVAE expects input of shape (B, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")

    def bottom_up(self, x: Tensor, u: Tensor | None) -> list[Tensor]:
        """(B, C, S, S) data -> the encoder features of the groups, top group first."""
        self._check(x)
        pad = self.padded_side - self.input_shape[1]
        h = self.stem(F.pad(x, (0, pad, 0, pad)) if pad else x, u)
        features = []
        for cell in self.encoder_tower:
            h = cell(h, u)
            if isinstance(cell, ResidualCell):
                features.append(h)
        return features[::-1]

    def _latent_shapes(self) -> list[tuple[int, int, int]]:
        lat = self.hierarchy.latent_channels
        return [(lat, s, s) for n, s in zip(self.hierarchy.groups, self.sides) for _ in range(n)]

    def top_down(self, u: Tensor | None, batch: int, features: Sequence[Tensor] | None = None,
                 latents: Sequence[Tensor] | None = None, generator: torch.Generator | None = None,
                 sample: bool = True) -> tuple[Tensor, list[GroupTerms]]:
        """The decoder pass -> ((B, C, S, S) output, the groups' ``GroupTerms``, top first).

        With ``features`` (from ``bottom_up``) each group's whitened latent is drawn from its posterior
        (``generator``), or is its posterior mean if ``sample`` is False; otherwise ``latents`` gives
        every group's whitened latent (B, c, s, s)."""
        if (features is None) == (latents is None):
            raise ValueError("top_down needs exactly one of features (posterior) or latents (given)")
        h = self.top.expand(batch, -1, -1, -1)
        terms: list[GroupTerms] = []
        for g, project in enumerate(self.latent_projections):
            if g > 0:
                h = self.decoder_cells[g - 1](h, u)
                prior_mean, prior_log_var = _split_gaussian(self.prior_heads[g - 1](F.silu(h), u))
            else:
                prior_mean = prior_log_var = h.new_zeros((batch,) + self._latent_shapes()[0])
            mean = log_var = None
            if features is not None:
                combined = features[g] + self.posterior_combiners[g](h, u)
                mean, log_var = _split_gaussian(self.posterior_heads[g](F.silu(combined), u))
                w = self.reparameterise(mean, log_var, generator) if sample else mean
            else:
                w = latents[g]
            z = prior_mean + torch.exp(0.5 * prior_log_var) * w
            h = h + project(z, u)
            terms.append(GroupTerms(mean, log_var, w, prior_mean, prior_log_var))
        return self._output(h, u), terms

    def _output(self, h: Tensor, u: Tensor | None) -> Tensor:
        out = self.output_layer(F.silu(self.final_norm(self.final_cell(h, u))), u)
        side = self.input_shape[1]
        return out[:, :, :side, :side]

    def _pass(self, x: Tensor, u: Tensor | None, features: Sequence[Tensor], generator: torch.Generator | None,
              sample: bool) -> VAEOutput:
        output, terms = self.top_down(u, x.shape[0], features, generator=generator, sample=sample)
        mean, log_var = _flat([t.mean for t in terms]), _flat([t.log_var for t in terms])
        return VAEOutput(output, mean, log_var, _flat([t.latent for t in terms]), gaussian_rate(mean, log_var),
                         self.distortion(output, x))

    def forward(self, x: Tensor, u: Tensor | None = None, generator: torch.Generator | None = None,
                sample: bool = True) -> VAEOutput:
        """(B, C, S, S) data, (B, 1) u -> ``VAEOutput`` with whitened (B, latent_dim) mean / log_var / z,
        rate = Σ_g KL(q_g ‖ p_g) and distortion in nats; ``sample=False`` follows the posterior means."""
        return self._pass(x, u, self.bottom_up(x, u), generator, sample)

    def encode(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, C, S, S) -> whitened posterior (B, latent_dim) mean and log-variance along the mean path."""
        _, terms = self.top_down(u, x.shape[0], self.bottom_up(x, u), sample=False)
        return _flat([t.mean for t in terms]), _flat([t.log_var for t in terms])

    def decode(self, z: Tensor, u: Tensor | None) -> Tensor:
        """(B, latent_dim) whitened latents (top group first) -> (B, C, S, S) logits or Gaussian mean.
        z ~ N(0, I) gives an ancestral sample of the prior."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"decode expects z of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        shapes = self._latent_shapes()
        parts = z.split([math.prod(s) for s in shapes], dim=1)
        latents = [p.reshape((z.shape[0],) + s) for p, s in zip(parts, shapes)]
        return self.top_down(u, z.shape[0], latents=latents)[0]

    def log_importance_weights(self, x: Tensor, u: Tensor | None, num_samples: int,
                               generator: torch.Generator | None = None) -> Tensor:
        """(B, C, S, S) data -> (num_samples, B) log p(x, z)/q(z|x) in nats, one top-down pass per sample
        (the encoder's bottom-up features are computed once)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        batch = x.shape[0]
        features = [f.repeat(num_samples, 1, 1, 1) for f in self.bottom_up(x, u)]
        u_rep = u if u is None or u.shape[0] == 1 else u.repeat(num_samples, 1)
        out = self._pass(x.repeat(num_samples, 1, 1, 1), u_rep, features, generator, True)
        eps_sq = (out.z - out.mean).square() * torch.exp(-out.log_var)
        log_prior_over_q = 0.5 * (eps_sq + out.log_var - out.z.square()).sum(dim=1)
        return (log_prior_over_q - out.distortion).reshape(num_samples, batch)

    def iwae_bound(self, x: Tensor, u: Tensor | None, num_samples: int, chunk_size: int = 64,
                   generator: torch.Generator | None = None) -> Tensor:
        """(B, C, S, S) data -> (B,) IWAE bound log (1/k) Σ_j p(x, z_j)/q(z_j|x) in nats, k = ``num_samples``
        drawn in chunks of ``chunk_size``; k = 1 gives the ELBO. Same signature as
        ``objectives.iwae_bound`` without its ``model`` argument."""
        if num_samples < 1 or chunk_size < 1:
            raise ValueError(f"num_samples and chunk_size must be >= 1, got {num_samples}, {chunk_size}")
        chunks, done = [], 0
        while done < num_samples:
            c = min(chunk_size, num_samples - done)
            chunks.append(self.log_importance_weights(x, u, c, generator))
            done += c
        return torch.logsumexp(torch.cat(chunks, dim=0), dim=0) - math.log(num_samples)

    def sample_prior(self, num: int, u: Tensor | None, generator: torch.Generator | None = None) -> Tensor:
        """``num`` ancestral samples of the model at u -> (num, C, S, S) likelihood means."""
        device = self.top.device
        z = torch.randn(num, self.latent_dim, generator=generator, device=device)
        return self.mean_output(self.decode(z, u))
