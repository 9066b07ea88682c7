"""LSTM text VAE (PAPER.md §6, Yahoo answers): gated embeddings and projections, summed token cross-entropy.

Token conventions: a batch is a (B, T) ``torch.long`` tensor of ids in [0, vocab_size). Every row is
``BOS w_1 ... w_n EOS`` followed by ``pad_index`` up to length T (padding only at the end, at least
one non-padding token per row). The encoder reads every non-padding token; the decoder is teacher
forced on ``tokens[:, :-1]`` and predicts ``tokens[:, 1:]``, so distortion is the cross-entropy of
``w_1 ... w_n EOS`` given z, summed over tokens (padding targets ignored), in nats per sentence.

Because the decoder needs the tokens, ``decode(z, u, tokens)`` takes them as a third argument and
``forward`` / ``objective`` pass them (through ``decode_for``); ``generate`` decodes without them
(greedy or sampled).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..beta import BetaRange
from ..data.text import BOS_INDEX, EOS_INDEX, PAD_INDEX
from ..layers import ConditionedEmbedding, ConditionedLinear, ModelConditioning, Role
from ..objectives import Likelihood, categorical_distortion
from .base import VAE


class LSTMVAE(VAE):
    """LSTM encoder and decoder over tokens (defaults: embedding 256, hidden 256, latent 32; the paper's).

    Encoder: conditioned embedding -> LSTM -> last hidden state -> conditioned Linear(H, H), ReLU ->
    Linear heads (mean, log-variance). Decoder: ``(h_0, c_0)`` from a plain Linear(z -> 2H)
    (h_0 through tanh); at every step the conditioned embedding of the previous token concatenated with
    z feeds an LSTM, whose output goes through a conditioned Linear(H, H), ReLU and a plain
    Linear(H -> vocab) to logits. Conditioned: the two embeddings and the two hidden projections; the
    LSTM cells, the heads, the z -> state Linear and the vocabulary layer are not (PAPER.md §2).
    The token ids default to those ``mrvae.data.text`` writes (<pad> 0, <bos> 2, <eos> 3).
    """

    def __init__(self, vocab_size: int, latent_dim: int = 32, embedding_dim: int = 256, hidden_dim: int = 256,
                 pad_index: int = PAD_INDEX, bos_index: int = BOS_INDEX, eos_index: int = EOS_INDEX,
                 conditioning: ModelConditioning = ModelConditioning(), beta_range: BetaRange = BetaRange()) -> None:
        super().__init__(latent_dim, Likelihood.CATEGORICAL, 1.0, conditioning.kind, beta_range)
        if vocab_size < 2 or embedding_dim < 1 or hidden_dim < 1:
            raise ValueError(f"need vocab_size >= 2, embedding_dim >= 1 and hidden_dim >= 1, got "
                             f"{vocab_size}, {embedding_dim}, {hidden_dim}")
        for name, index in (("pad_index", pad_index), ("bos_index", bos_index), ("eos_index", eos_index)):
            if not 0 <= index < vocab_size:
                raise ValueError(f"{name} must be in [0, {vocab_size}), got {index}")
        if len({pad_index, bos_index, eos_index}) != 3:
            raise ValueError(f"pad, BOS and EOS ids must differ, got {pad_index}, {bos_index}, {eos_index}")
        self.vocab_size, self.hidden_dim = vocab_size, hidden_dim
        self.pad_index, self.bos_index, self.eos_index = pad_index, bos_index, eos_index
        enc, dec = Role.ENCODER, Role.DECODER
        self.encoder_embedding = ConditionedEmbedding(vocab_size, embedding_dim, pad_index, conditioning, enc)
        self.encoder_lstm = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)
        self.encoder_hidden = ConditionedLinear(hidden_dim, hidden_dim, conditioning, enc)
        self.mean_head = nn.Linear(hidden_dim, latent_dim)
        self.log_var_head = nn.Linear(hidden_dim, latent_dim)
        self.initial_state = nn.Linear(latent_dim, 2 * hidden_dim)
        self.decoder_embedding = ConditionedEmbedding(vocab_size, embedding_dim, pad_index, conditioning, dec)
        self.decoder_lstm = nn.LSTM(embedding_dim + latent_dim, hidden_dim, batch_first=True)
        self.decoder_hidden = ConditionedLinear(hidden_dim, hidden_dim, conditioning, dec)
        self.output_layer = nn.Linear(hidden_dim, vocab_size)

    def check_tokens(self, tokens: Tensor) -> Tensor:
        """Validate a (B, T) long batch (T >= 2, ids in range, padding only at the end); returns its lengths (B,)."""
        if tokens.dtype != torch.long:
            raise TypeError(f"{type(self).__name__} expects torch.long token ids, got dtype {tokens.dtype}")
        if tokens.dim() != 2 or tokens.shape[1] < 2:
            raise ValueError(f"expected tokens of shape (B, T) with T >= 2, got {tuple(tokens.shape)}")
        if bool((tokens < 0).any()) or bool((tokens >= self.vocab_size).any()):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got min {int(tokens.min())}, "
                             f"max {int(tokens.max())}")
        mask = tokens != self.pad_index
        if bool((mask[:, 1:] & ~mask[:, :-1]).any()) or not bool(mask[:, 0].all()):
            raise ValueError(f"padding (id {self.pad_index}) must only follow the tokens of each row, and every "
                             "row needs at least one token")
        return mask.sum(dim=1)

    def encode(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, T) token ids -> (B, k) mean and log-variance of q(z|x)."""
        lengths = self.check_tokens(x)
        outputs, _ = self.encoder_lstm(self.encoder_embedding(x, u))  # (B, T, H)
        last = outputs[torch.arange(x.shape[0], device=x.device), lengths - 1]  # state after the last token
        h = torch.relu(self.encoder_hidden(last, u))
        return self.mean_head(h), self.log_var_head(h)

    def _state(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h0, c0 = self.initial_state(z).chunk(2, dim=-1)
        return torch.tanh(h0).unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()

    def _step_logits(self, inputs: Tensor, z: Tensor, u: Tensor | None,
                     state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        emb = self.decoder_embedding(inputs, u)  # (B, T, E)
        z_rep = z.unsqueeze(1).expand(-1, inputs.shape[1], -1)
        outputs, state = self.decoder_lstm(torch.cat([emb, z_rep], dim=-1), state)
        return self.output_layer(torch.relu(self.decoder_hidden(outputs, u))), state

    def decode(self, z: Tensor, u: Tensor | None, tokens: Tensor | None = None) -> Tensor:
        """(B, k) latents and (B, T) tokens -> (B, T-1, V) logits of ``tokens[:, 1:]`` (teacher forcing)."""
        if tokens is None:
            raise ValueError("LSTMVAE.decode needs the (B, T) tokens for teacher forcing: call "
                             "decode(z, u, tokens), or generate(z, u, max_length) to decode without them")
        self.check_tokens(tokens)
        logits, _ = self._step_logits(tokens[:, :-1], z, u, self._state(z))
        return logits

    def distortion(self, output: Tensor, x: Tensor) -> Tensor:
        """(B, T-1, V) logits and (B, T) tokens -> (B,) cross-entropy of ``x[:, 1:]`` in nats (padding ignored)."""
        return categorical_distortion(output, x[:, 1:], self.pad_index)

    def decode_for(self, z: Tensor, u: Tensor | None, x: Tensor) -> Tensor:
        """(B, k) latents, (B, 1) u and (B, T) tokens -> (B, T-1, V) logits (teacher forced on x)."""
        return self.decode(z, u, x)

    def mean_output(self, output: Tensor) -> Tensor:
        """(B, T-1, V) logits -> next-token probabilities."""
        return torch.softmax(output, dim=-1)

    @torch.no_grad()
    def generate(self, z: Tensor, u: Tensor | None, max_length: int,
                 generator: torch.Generator | None = None) -> Tensor:
        """(B, k) latents -> (B, max_length) token ids ``BOS ...``; greedy without ``generator``, sampled with it.

        The padding id is never emitted; after a row emits EOS the rest of it is padding.
        """
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (BOS and one token), got {max_length}")
        batch = z.shape[0]
        tokens = torch.full((batch, max_length), self.pad_index, dtype=torch.long, device=z.device)
        tokens[:, 0] = self.bos_index
        done = torch.zeros(batch, dtype=torch.bool, device=z.device)
        state = self._state(z)
        for t in range(1, max_length):
            logits, state = self._step_logits(tokens[:, t - 1:t], z, u, state)
            step = logits[:, 0].clone()
            step[:, self.pad_index] = float("-inf")  # padding is never generated, only written after EOS
            if generator is None:
                nxt = step.argmax(dim=-1)
            else:
                probs = torch.softmax(step, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
            tokens[:, t] = torch.where(done, torch.full_like(nxt, self.pad_index), nxt)
            done |= nxt == self.eos_index
            if bool(done.all()):
                break
        return tokens
