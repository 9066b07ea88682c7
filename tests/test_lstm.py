"""LSTM text VAE: token conventions, summed cross-entropy, padding invariance, gate placement, training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mrvae.beta import BetaRange
from mrvae.data.text import BOS_INDEX, EOS_INDEX, PAD_INDEX
from mrvae.gates import UnitGate
from mrvae.layers import ModelConditioning
from mrvae.models.lstm import LSTMVAE
from mrvae.objectives import Likelihood

VOCAB, PAD, BOS, EOS = 30, PAD_INDEX, BOS_INDEX, EOS_INDEX  # the model's defaults: the data module's ids


def small(kind: str = "gate", **kwargs) -> LSTMVAE:
    return LSTMVAE(VOCAB, latent_dim=5, embedding_dim=12, hidden_dim=16,
                   conditioning=ModelConditioning(kind=kind), **kwargs)


def batch() -> torch.Tensor:
    return torch.tensor([[BOS, 5, 9, 7, 11, EOS, PAD],
                         [BOS, 8, EOS, PAD, PAD, PAD, PAD],
                         [BOS, 3, 4, 5, 6, 7, EOS]])


def test_distortion_is_the_summed_cross_entropy_of_the_next_tokens():
    torch.manual_seed(0)
    model = small()
    x = batch()
    u = torch.tensor([[-1.0], [0.3], [1.2]])
    out = model(x, u, torch.Generator().manual_seed(0))
    assert out.output.shape == (3, 6, VOCAB) and out.z.shape == (3, 5)
    log_probs = torch.log_softmax(out.output, dim=-1)
    for b in range(3):
        expected = -sum(log_probs[b, t, int(x[b, t + 1])] for t in range(6) if int(x[b, t + 1]) != PAD)
        torch.testing.assert_close(out.distortion[b], expected)
    torch.testing.assert_close(model.reconstruction_distortion(out.z, u, x), out.distortion)
    assert model.likelihood is Likelihood.CATEGORICAL
    torch.testing.assert_close(model.mean_output(out.output).sum(-1), torch.ones(3, 6))


def test_padding_changes_nothing():
    torch.manual_seed(1)
    model = small()
    x = batch()
    longer = torch.cat([x, torch.full((3, 4), PAD)], dim=1)
    u = torch.tensor([[0.5], [-0.5], [1.0]])
    for a, b in zip(model.encode(x, u), model.encode(longer, u)):
        torch.testing.assert_close(a, b)
    z = torch.randn(3, 5)
    torch.testing.assert_close(model.distortion(model.decode(z, u, x), x),
                               model.distortion(model.decode(z, u, longer), longer))
    # the decoder is causal: logits at position t do not depend on later tokens
    changed = x.clone()
    changed[2, 5] = 9
    torch.testing.assert_close(model.decode(z, u, x)[:, :5], model.decode(z, u, changed)[:, :5])


def test_gates_on_embeddings_and_projections_only():
    model = small()
    gates = {name for name, m in model.named_modules() if isinstance(m, UnitGate)}
    assert gates == {"encoder_embedding.gate", "encoder_hidden.gate",
                     "decoder_embedding.gate", "decoder_hidden.gate"}
    gate_params = sum(p.numel() for n, p in model.named_parameters() if ".gate." in n)
    assert gate_params == 2 * (12 + 16 + 12 + 16)
    plain_count = sum(p.numel() for p in small("none").parameters())
    assert sum(p.numel() for p in model.parameters()) - plain_count == gate_params
    for lstm in (model.encoder_lstm, model.decoder_lstm):
        assert isinstance(lstm, nn.LSTM) and not any(isinstance(m, UnitGate) for m in lstm.modules())
    z = torch.randn(3, 5)
    low, high = torch.full((3, 1), -1.7), torch.full((3, 1), 1.7)
    assert not torch.allclose(model.decode(z, low, batch()), model.decode(z, high, batch()))
    assert not torch.allclose(model.encode(batch(), low)[0], model.encode(batch(), high)[0])


def test_none_has_no_gates_and_film_starts_as_none():
    torch.manual_seed(2)
    plain, film = small("none"), small("film")
    assert not any(".gate." in n or ".film." in n for n, _ in plain.named_parameters())
    plain.load_state_dict({k: v for k, v in film.state_dict().items() if k in plain.state_dict()})
    u = torch.tensor([[1.3], [-0.2], [-1.6]])
    for a, b in zip(plain.encode(batch(), None), film.encode(batch(), u)):
        torch.testing.assert_close(a, b)
    z = torch.randn(3, 5)
    torch.testing.assert_close(plain.decode(z, None, batch()), film.decode(z, u, batch()))


@pytest.mark.parametrize("kind", ["gate", "film", "none"])
def test_adam_steps_reduce_the_loss(kind):
    torch.manual_seed(3)
    model = small(kind)
    x = batch()
    beta_range = BetaRange()
    beta = beta_range.sample(3, torch.Generator().manual_seed(0))
    u = beta_range.standardise(beta)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss() -> torch.Tensor:
        return model.objective(x, beta, u, torch.Generator().manual_seed(1))[0].mean()

    first = loss().item()
    for _ in range(25):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    assert loss().item() < 0.7 * first


def test_generate_follows_the_token_conventions():
    torch.manual_seed(4)
    model = small()
    z, u = torch.randn(4, 5), torch.zeros(4, 1)
    with torch.no_grad():
        model.output_layer.bias[EOS] = 3.0  # make EOS likely so some rows end early
    greedy = model.generate(z, u, 9)
    assert greedy.shape == (4, 9) and bool((greedy[:, 0] == BOS).all())
    torch.testing.assert_close(greedy, model.generate(z, u, 9))
    sampled = model.generate(z, u, 9, torch.Generator().manual_seed(0))
    torch.testing.assert_close(sampled, model.generate(z, u, 9, torch.Generator().manual_seed(0)))
    for row in torch.cat([greedy, sampled]).tolist():
        ends = [t for t, tok in enumerate(row) if tok == EOS]
        stop = ends[0] if ends else len(row)
        assert PAD not in row[:stop + 1] and all(tok == PAD for tok in row[stop + 1:])
    model.check_tokens(sampled)  # generated rows are valid inputs


def test_errors():
    model = small()
    u = torch.zeros(3, 1)
    with pytest.raises(TypeError, match="expects torch.long token ids, got dtype torch.float32"):
        model.encode(batch().float(), u)
    with pytest.raises(ValueError, match=rf"token ids must lie in \[0, 30\), got min {BOS}, max 30"):
        model.encode(torch.tensor([[BOS, 30, EOS]]), u[:1])
    with pytest.raises(ValueError, match="padding \\(id 0\\) must only follow the tokens"):
        model.encode(torch.tensor([[BOS, PAD, 5, EOS]]), u[:1])
    with pytest.raises(ValueError, match=r"expected tokens of shape \(B, T\) with T >= 2, got \(3,\)"):
        model.encode(torch.tensor([BOS, 5, EOS]), u)
    with pytest.raises(ValueError, match="decode needs the \\(B, T\\) tokens for teacher forcing"):
        model.decode(torch.zeros(3, 5), u)
    with pytest.raises(ValueError, match="max_length must be >= 2"):
        model.generate(torch.zeros(3, 5), u, 1)
    with pytest.raises(ValueError, match=f"pad, BOS and EOS ids must differ, got 0, 0, {EOS}"):
        LSTMVAE(VOCAB, bos_index=0)
    with pytest.raises(ValueError, match=r"eos_index must be in \[0, 30\), got 30"):
        LSTMVAE(VOCAB, eos_index=30)
    with pytest.raises(ValueError, match="need vocab_size >= 2"):
        LSTMVAE(1)


def test_token_ids_default_to_the_data_module_and_match_its_batches(tmp_path):
    from mrvae.config import ModelConfig
    from mrvae.data.text import load_text
    from mrvae.models import build_model

    model = small()
    assert (model.pad_index, model.bos_index, model.eos_index) == (PAD_INDEX, BOS_INDEX, EOS_INDEX) == (0, 2, 3)
    (tmp_path / "text").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "text" / f"{split}.txt").write_text("the cat sat\na dog\n")
    data = load_text(tmp_path)
    built = build_model(ModelConfig(arch="lstm", latent_dim=3, embedding_dim=6, lstm_hidden=10), data.info, "gate")
    assert (built.encoder_embedding.base.embedding_dim, built.hidden_dim) == (6, 10)
    assert built.bos_index == data.notes["bos_index"] and built.eos_index == data.notes["eos_index"]
    built.check_tokens(data.train.data)
    generated = built.generate(torch.zeros(2, 3), torch.zeros(2, 1), 5)
    assert bool((generated[:, 0] == data.notes["bos_index"]).all())
