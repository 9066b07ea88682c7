"""The VAE base class every mrvae model derives from: encode, reparameterise, decode, rate and distortion."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..beta import BetaRange
from ..layers import Conditioning
from ..objectives import Likelihood, beta_objective, distortion, gaussian_rate, iwae_bound


@dataclass
class VAEOutput:
    """One forward pass: decoder ``output`` (logits or mean, shaped like x), ``mean``/``log_var``
    of q(z|x) (B, k), the sample ``z`` (B, k), and the per-example ``rate``/``distortion`` (B,) in nats."""

    output: Tensor
    mean: Tensor
    log_var: Tensor
    z: Tensor
    rate: Tensor
    distortion: Tensor


def check_beta_in_range(beta_range: BetaRange, beta: float | Tensor) -> None:
    """Raise ValueError unless every β (a float, or a (B,) / (B, 1) tensor of values > 0) lies in
    ``beta_range``: the β-taking methods (``sample``, ``reconstruct``, ...) refuse to extrapolate. β is
    compared within float32 rounding (0.01 in float32 is 0.0099999998), or a coarser tensor dtype's."""
    values, tolerance = [float(beta)] if not isinstance(beta, Tensor) else [], torch.finfo(torch.float32).eps
    if isinstance(beta, Tensor):
        flat = beta.detach().flatten()
        values = [float(flat.min()), float(flat.max())]
        tolerance = max(tolerance, torch.finfo(flat.dtype).eps) if flat.is_floating_point() else tolerance
    outside = [v for v in values if not beta_range.contains(v, tolerance)]
    if not outside:
        return
    if beta_range.is_fixed:
        raise ValueError(f"β = {outside[0]:g} is not this model's β: it holds β = {beta_range.low:g} only (a "
                         "β-VAE, or a model exported at that β); load the multi-rate checkpoint for other βs")
    raise ValueError(f"β = {outside[0]:g} lies outside the model's β range [{beta_range.low:g}, "
                     f"{beta_range.high:g}]; pick a β inside the range it was trained for")


def prior_draws(n: int, latent_dim: int, generator: torch.Generator | None = None,
                device: torch.device | None = None) -> Tensor:
    """(n, latent_dim) draws of z ~ N(0, I), drawn on ``generator``'s device (so a CPU generator gives the
    same draws whatever the model's device) and returned on ``device``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of samples must be an int >= 1, got {n!r}")
    z = torch.randn(n, latent_dim, generator=generator, device=generator.device if generator is not None else None)
    return z if device is None else z.to(device)


class NoiseSource:
    """Where ``VAE.reparameterise`` takes its ε ~ N(0, I) when given this instead of a ``torch.Generator``.

    Recording (``draws=None``): fresh draws from ``generator``, noting each draw's shape, device and dtype in
    ``shapes``. Replaying (``draws`` given, e.g. ``NoiseSource.drawn(generator, shapes)``): the draws made
    beforehand, in order. A compiled forward (``--train.compile``) replays: torch.compile cannot trace a
    ``torch.Generator``, so the trainer draws the step's noise outside the compiled graph, from the
    generator, with the shapes of an eager step: the very values an eager step would draw.
    """

    def __init__(self, generator: torch.Generator | None, draws: list[Tensor] | None = None) -> None:
        self.generator, self.draws, self.taken = generator, draws, 0
        self.shapes: list[tuple[tuple[int, ...], torch.device, torch.dtype]] = []

    @classmethod
    def drawn(cls, generator: torch.Generator | None,
              shapes: list[tuple[tuple[int, ...], torch.device, torch.dtype]]) -> NoiseSource:
        """A replaying source holding one draw per recorded (shape, device, dtype), drawn now, in order."""
        return cls(generator, [torch.randn(shape, generator=generator, device=device, dtype=dtype)
                               for shape, device, dtype in shapes])

    def standard_normal(self, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The next ε of ``shape``: drawn now (recording) or the next draw made beforehand (replaying)."""
        if self.draws is None:
            self.shapes.append((tuple(shape), device, dtype))
            return torch.randn(shape, generator=self.generator, device=device, dtype=dtype)
        eps = self.draws[self.taken]
        self.taken += 1
        if eps.shape != shape:
            raise RuntimeError(f"pre-drawn noise of shape {tuple(eps.shape)} where the model asks for {tuple(shape)}")
        return eps


class VAE(nn.Module):
    """Base class: subclasses implement ``encode(x, u)`` and ``decode(z, u)``.

    ``u`` is standardised log β, shape (B, 1) (see ``mrvae.beta.BetaRange``); a model with
    conditioning ``none`` ignores it. Every model carries the ``beta_range`` [a, b] it is trained
    for (a one-point range for a β-VAE); ``u_of(β)`` is the one conversion from β to u, and
    checkpoints and exports store the range beside the weights. ``sample(n, β)`` and
    ``reconstruct(x, β)`` take β itself and refuse β outside the range.
    """

    def __init__(self, latent_dim: int, likelihood: Likelihood | str, sigma2: float,
                 conditioning: Conditioning | str, beta_range: BetaRange = BetaRange()) -> None:
        super().__init__()
        if not isinstance(beta_range, BetaRange):
            raise TypeError(f"beta_range must be a BetaRange, got {type(beta_range).__name__}")
        self.beta_range = beta_range
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if not sigma2 > 0:
            raise ValueError(f"sigma2 (the Gaussian decoder variance) must be > 0, got {sigma2!r}")
        self.latent_dim = int(latent_dim)
        self.likelihood = Likelihood(likelihood)
        self.sigma2 = float(sigma2)
        self.conditioning = Conditioning(conditioning)

    def u_of(self, beta: float | Tensor, *, checked: bool = True) -> Tensor:
        """β (a float, or a (B,) / (B, 1) tensor, inside ``beta_range``) -> u of shape (1, 1) or (B, 1)
        on the model's device: what the conditioned layers take (``checked``: see ``BetaRange.u_of``)."""
        reference = next(self.parameters(), None)
        return self.beta_range.u_of(beta, None if reference is None else reference.device, checked=checked)

    def u_in_range(self, beta: float | Tensor) -> Tensor:
        """``u_of(β)``, refusing β outside ``beta_range`` (ValueError): the u of the β-taking methods."""
        u = self.u_of(beta)
        check_beta_in_range(self.beta_range, beta)
        return u

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n, latent_dim) draws of z ~ N(0, I) from ``generator`` on the model's device (``prior_draws``)."""
        reference = next(self.parameters(), None)
        return prior_draws(n, self.latent_dim, generator, None if reference is None else reference.device)

    @torch.no_grad()
    def sample(self, n: int, beta: float | Tensor, generator: torch.Generator | None = None) -> Tensor:
        """n prior draws z ~ N(0, I) (from ``generator``) decoded at β -> (n, *data_shape) likelihood means.

        β is a float or an (n,) / (n, 1) tensor inside ``beta_range``; no gradients are kept. Models whose
        decoder reads the data (the LSTM) generate instead (``mrvae.load(...).sample``)."""
        u = self.u_in_range(beta)
        return self.mean_output(self.decode(self.prior_latents(n, generator), u))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, beta: float | Tensor) -> Tensor:
        """(B, ...) data at β (a float or (B,) / (B, 1), inside ``beta_range``) -> the mean of p(x | z = the
        posterior mean), shaped like the decoder output; no gradients are kept."""
        u = self.u_in_range(beta)
        mean, _ = self.encode(x, u)
        return self.mean_output(self.decode_for(mean, u, x))

    def encode(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, ...) data -> (B, k) mean and (B, k) log-variance of q(z|x)."""
        raise NotImplementedError

    def decode(self, z: Tensor, u: Tensor | None) -> Tensor:
        """(B, k) latents -> decoder output shaped like x (Bernoulli logits or Gaussian mean)."""
        raise NotImplementedError

    def distortion(self, output: Tensor, x: Tensor) -> Tensor:
        """(B, ...) decoder output and data -> (B,) -log p(x|z) in nats."""
        return distortion(self.likelihood, output, x, self.sigma2)

    def decode_for(self, z: Tensor, u: Tensor | None, x: Tensor) -> Tensor:
        """(B, k) latents, (B, 1) u and the (B, ...) data they should reconstruct -> decoder output.
        ``decode(z, u)``; models whose decoder reads the data (teacher forcing) override it."""
        return self.decode(z, u)

    def reconstruction_distortion(self, z: Tensor, u: Tensor | None, x: Tensor) -> Tensor:
        """(B, k) latents, (B, 1) u and the (B, ...) data they should reconstruct -> (B,) -log p(x|z) in nats."""
        return self.distortion(self.decode_for(z, u, x), x)

    def mean_output(self, output: Tensor) -> Tensor:
        """Decoder output -> the likelihood's mean (sigmoid of logits for Bernoulli)."""
        return torch.sigmoid(output) if self.likelihood is Likelihood.BERNOULLI else output

    @staticmethod
    def reparameterise(mean: Tensor, log_var: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, k) mean, log-variance -> (B, k) sample z = mean + exp(log_var/2)·ε, ε from ``generator``
        (a ``torch.Generator``, ``None`` for torch's global one, or a ``NoiseSource``)."""
        if isinstance(generator, NoiseSource):
            eps = generator.standard_normal(mean.shape, mean.device, mean.dtype)
        else:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * log_var) * eps

    def forward(self, x: Tensor, u: Tensor | None = None, generator: torch.Generator | None = None,
                sample: bool = True) -> VAEOutput:
        """(B, ...) data, (B, 1) u -> ``VAEOutput``; ``sample=False`` decodes the mean instead of z."""
        mean, log_var = self.encode(x, u)
        z = self.reparameterise(mean, log_var, generator) if sample else mean
        output = self.decode_for(z, u, x)
        return VAEOutput(output, mean, log_var, z, gaussian_rate(mean, log_var), self.distortion(output, x))

    def iwae_bound(self, x: Tensor, u: Tensor | None, num_samples: int, chunk_size: int = 64,
                   generator: torch.Generator | None = None) -> Tensor:
        """(B, ...) data -> (B,) importance-weighted lower bound on log p(x) in nats with ``num_samples``
        samples of q(z|x) (``objectives.iwae_bound``); models with several latent groups override it."""
        return iwae_bound(self, x, u, num_samples, chunk_size, generator)

    def objective(self, x: Tensor, beta: Tensor, u: Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[Tensor, VAEOutput]:
        """(B, ...) data, (B, 1) β and u -> ((B,) training loss in nats, the forward pass).

        The β-VAE objective D + β·R; models with another multi-rate objective (β-TCVAE) override it.
        ``u`` defaults to ``u_of(beta)``; it differs from that only when the loss's β is scaled (KL
        warm-up). ``fit()`` minimises the batch mean of the returned loss.
        """
        out = self(x, self.u_of(beta) if u is None else u, generator)
        return beta_objective(out.distortion, out.rate, beta), out
