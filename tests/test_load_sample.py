"""mrvae.load (run folder, checkpoint, export), the β-taking methods, exports rebuilt without a builder,
`mrvae sample` (grid, strip, text, refusals), and the Python / CLI snippets of docs/loading.md."""

from __future__ import annotations

import re
import shlex
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import mrvae
from mrvae import BetaRange, LoadedVAE
from mrvae.cli import main
from mrvae.cli.sample_command import stack_rows
from mrvae.config import Method, ModelConfig, RunConfig, to_dict
from mrvae.convert import ConvertedVAE, MultiRateModel, export_checkpoint, load_exported, make_multirate
from mrvae.convert.scope import BetaNotSetError
from mrvae.data import load_data
from mrvae.data.base import DataInfo
from mrvae.evaluation.evaluate import evaluate_at
from mrvae.models import LSTMVAE, TCVAE
from mrvae.models.registry import build_model
from mrvae.objectives import Likelihood, gaussian_rate
from mrvae.runs.methods import data_info_dict
from mrvae.runs.pictures import Display, Painter

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["run", "--train.steps", "20", "--baseline.steps", "5", "--baseline.betas", "[0.1,1]",
            "--eval.num_betas", "2", "--eval.iwae_samples", "2", "--threads", "1"]


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder holding runs/digits (a tiny `mrvae run`) and exp05 (its MR-VAE exported at β = 0.5)."""
    root = tmp_path_factory.mktemp("load")
    assert main([*TINY_RUN, "--out", str(root / "runs" / "digits")]) == 0
    assert main(["export", str(root / "runs" / "digits"), "--beta", "0.5", "--out", str(root / "exp05")]) == 0
    return root


@pytest.fixture(scope="module")
def x():
    return load_data("digits").test.data[:6]


def test_load_gives_a_model_with_its_beta_range_from_a_run_a_checkpoint_and_an_export(folder, x):
    run = folder / "runs" / "digits"
    for path, beta_range in ((run, BetaRange(0.01, 10.0)), (run / "checkpoints" / "mrvae.pt", BetaRange(0.01, 10.0)),
                             (folder / "exp05", BetaRange(0.5, 0.5))):
        m = mrvae.load(path)
        assert isinstance(m, LoadedVAE) and m.beta_range == beta_range and m.method is Method.MRVAE
        assert not m.model.training and m.info.shape == (1, 8, 8) and m.config.train.steps == 20
        assert m.sample(4, beta=0.5).shape == (4, 1, 8, 8)
        recon = m.reconstruct(x, beta=0.5)
        assert recon.shape == x.shape and 0 <= float(recon.min()) and float(recon.max()) <= 1
    beta_vae = mrvae.load(run / "checkpoints" / "beta-vae" / "beta=0.1.pt")
    assert beta_vae.beta_range == BetaRange(0.1, 0.1) and beta_vae.method is Method.BETA_VAE


def test_reconstruct_encode_and_decode_match_a_computation_by_hand(folder, x):
    m = mrvae.load(folder / "runs" / "digits")
    vae = m.model
    betas = torch.tensor([[0.01], [0.1], [0.5], [1.0], [3.0], [10.0]])
    for beta in (0.5, betas, betas[:, 0]):
        u = vae.u_of(beta)
        with torch.no_grad():
            mean, log_var = vae.encode(x, u)
            want = vae.mean_output(vae.decode(mean, u))
            got_mean, got_log_var = m.encode(x, beta)
            assert torch.equal(got_mean, mean) and torch.equal(got_log_var, log_var)
            assert torch.equal(m.decode(mean, beta), torch.sigmoid(vae.decode(mean, u)))
        assert torch.equal(m.reconstruct(x, beta), want)
    per_example = m.reconstruct(x, betas)
    for i, b in enumerate(betas[:, 0].tolist()):
        assert torch.allclose(per_example[i], m.reconstruct(x[i:i + 1], b)[0], atol=1e-6)


def test_sample_decodes_seeded_prior_draws_at_beta(folder):
    m = mrvae.load(folder / "runs" / "digits")
    z = torch.randn(5, m.model.latent_dim, generator=seeded(3))
    with torch.no_grad():
        want = torch.sigmoid(m.model.decode(z, m.model.u_of(2.0)))
    assert torch.equal(m.sample(5, 2.0, seeded(3)), want)
    assert torch.equal(m.sample(5, 2.0, seeded(3)), m.sample(5, 2.0, seeded(3)))
    assert not torch.equal(m.sample(5, 2.0, seeded(3)), m.sample(5, 2.0, seeded(4)))
    assert not torch.equal(m.sample(5, 0.01, seeded(3)), m.sample(5, 10.0, seeded(3)))  # β changes the decoder


def test_an_export_is_the_mrvae_at_its_beta(folder, x):
    mr, exported = mrvae.load(folder / "runs" / "digits"), mrvae.load(folder / "exp05")
    assert torch.allclose(exported.sample(8, 0.5, seeded()), mr.sample(8, 0.5, seeded()), atol=1e-5)
    assert torch.allclose(exported.reconstruct(x, 0.5), mr.reconstruct(x, 0.5), atol=1e-5)
    for got, want in zip(exported.rate_distortion(x, 0.5, seeded()), mr.rate_distortion(x, 0.5, seeded())):
        assert torch.allclose(got, want, atol=1e-4)
    plain = load_exported(folder / "exp05")  # no builder: rebuilt from the recorded run config and data info
    assert type(plain) is type(mr.model) and plain.beta_range == BetaRange(0.5, 0.5)
    assert torch.equal(plain.sample(8, 0.5, seeded()), exported.sample(8, 0.5, seeded()))


def test_rate_distortion_matches_the_evaluator_and_the_closed_form_rate(folder):
    m = mrvae.load(folder / "runs" / "digits")
    test = load_data("digits").test
    with torch.no_grad():  # the evaluator's noise: batch 0 of eval seed 0
        rate, distortion = m.rate_distortion(test.data, 0.3, seeded(0))
    reference = evaluate_at(m.model, test, 0.3)
    assert rate.shape == distortion.shape == (len(test),)
    assert float(rate.mean()) == pytest.approx(reference["rate"], rel=1e-5)
    assert float(distortion.mean()) == pytest.approx(reference["distortion"], rel=1e-5)
    mean, log_var = m.encode(test.data, 0.3)
    assert torch.allclose(rate, gaussian_rate(mean, log_var))


def test_beta_outside_the_range_is_a_clear_value_error(folder, x):
    m, exported = mrvae.load(folder / "runs" / "digits"), mrvae.load(folder / "exp05")
    calls = (lambda b: m.sample(2, b), lambda b: m.reconstruct(x, b), lambda b: m.encode(x, b),
             lambda b: m.decode(torch.zeros(1, 16), b), lambda b: m.rate_distortion(x, b))
    for call in calls:
        with pytest.raises(ValueError, match=r"β = 20 lies outside the model's β range \[0.01, 10\]"):
            call(20.0)
    with pytest.raises(ValueError, match=r"β = 0.001 lies outside"):
        m.reconstruct(x, torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.001]))
    assert m.sample(2, torch.tensor([0.01, 10.0])).shape == (2, 1, 8, 8)  # float32 ends of the range are inside
    with pytest.raises(ValueError, match=r"β = 0.4 is not this model's β: it holds β = 0.5 only"):
        exported.sample(2, 0.4)
    with pytest.raises(ValueError, match="β must be > 0"):
        m.sample(2, -1.0)
    with pytest.raises(ValueError, match="number of samples must be an int >= 1"):
        m.sample(0, 0.5)


def test_load_errors_name_the_path_and_the_fix(folder, tmp_path):
    with pytest.raises(ValueError, match="does not exist: give a run folder, a checkpoint"):
        mrvae.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="holds no mrvae or yoto checkpoint"):
        mrvae.load(tmp_path)
    run = folder / "runs" / "digits"
    with pytest.raises(ValueError, match="one file per β"):
        mrvae.load(run, method="beta-vae")
    with pytest.raises(ValueError, match="build= applies to export folders only"):
        mrvae.load(run, build=lambda config: nn.Linear(1, 1))
    with pytest.raises(ValueError, match="method= picks a checkpoint of a run folder"):
        mrvae.load(run / "checkpoints" / "mrvae.pt", method="mrvae")
    with pytest.raises(ValueError, match="unknown device"):
        mrvae.load(run, device="abacus")


def test_a_library_export_records_what_rebuilding_needs(tmp_path, folder):
    info = DataInfo("toy", (1, 4, 4), Likelihood.BERNOULLI)
    config = RunConfig(model=ModelConfig(arch="tcvae", hidden=(8,), latent_dim=3))
    torch.manual_seed(0)
    model = build_model(config.model, info, "gate", 123, BetaRange(0.1, 10.0))
    export_checkpoint(model, 2.0, tmp_path / "tc", {"run_config": to_dict(config), "data_info": data_info_dict(info)})
    plain = load_exported(tmp_path / "tc")
    assert isinstance(plain, TCVAE) and plain.dataset_size == 123 and plain.beta_range == BetaRange(2.0, 2.0)
    z = torch.randn(3, 3, generator=seeded())
    with torch.no_grad():
        assert torch.allclose(plain.decode(z, None), model.decode(z, model.u_of(2.0)), atol=1e-5)
    export_checkpoint(model, 2.0, tmp_path / "own", {"latent_dim": 3})
    with pytest.raises(ValueError, match="lacks run_config and data_info .* pass build="):
        load_exported(tmp_path / "own")
    m = mrvae.load(folder / "runs" / "digits")
    m.export(0.1, tmp_path / "again")
    assert torch.allclose(mrvae.load(tmp_path / "again").sample(3, 0.1, seeded()), m.sample(3, 0.1, seeded()),
                          atol=1e-5)


class UserVAE(nn.Module):
    """A user's VAE with its own encode / decode and a latent_dim attribute; forward is deterministic."""

    def __init__(self, latent_dim: int = 3) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.fc1, self.fc21, self.fc22 = nn.Linear(16, 12), nn.Linear(12, latent_dim), nn.Linear(12, latent_dim)
        self.fc3, self.fc4 = nn.Linear(latent_dim, 12), nn.Linear(12, 16)

    def encode(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        return self.fc21(h), self.fc22(h)

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, log_var = self.encode(x)
        return self.decode(mu), mu, log_var


def _loss_terms(output, x):
    probs, mu, log_var = output
    return F.binary_cross_entropy(probs, x.flatten(1), reduction="none").sum(1), gaussian_rate(mu, log_var)


def test_a_converted_model_takes_beta_in_its_own_encode_decode_sample_and_reconstruct():
    torch.manual_seed(0)
    mr = make_multirate(UserVAE(), BetaRange(0.01, 10.0), exclude=["fc21", "fc22", "fc4"])
    x = torch.rand(4, 1, 4, 4)
    with mr.beta(0.5):
        mu, log_var = mr.model.encode(x)
        want_recon = mr.model.decode(mu)
        assert torch.equal(mr.encode(x)[0], mu)  # without β: the active context's
        z = torch.randn(5, 3, generator=seeded(1))
        want_sample = mr.model.decode(z)
    assert torch.equal(mr.encode(x, 0.5)[1], log_var) and torch.equal(mr.reconstruct(x, 0.5), want_recon)
    assert torch.equal(mr.sample(5, 0.5, seeded(1)), want_sample)
    assert not torch.equal(mr.decode(z, 0.01), mr.decode(z, 10.0))
    with pytest.raises(BetaNotSetError):
        mr.encode(x)
    with pytest.raises(ValueError, match=r"β = 50 lies outside the model's β range"):
        mr.reconstruct(x, 50.0)
    vae = ConvertedVAE(mr, _loss_terms)
    rate, distortion = vae.rate_distortion(x, torch.full((4, 1), 0.5))
    with mr.beta(0.5):
        want_d, want_r = _loss_terms(mr(x), x)
    assert torch.equal(rate, want_r) and torch.equal(distortion, want_d)
    assert torch.equal(vae.sample(5, 0.5, seeded(1)), want_sample)
    del mr.model.latent_dim
    with pytest.raises(ValueError, match="pass latent_dim="):
        mr.sample(2, 0.5)
    assert mr.sample(2, 0.5, latent_dim=3).shape == (2, 16)


def test_a_converted_export_needs_a_builder_and_says_why(tmp_path):
    torch.manual_seed(1)
    mr = make_multirate(UserVAE(), BetaRange(0.01, 10.0), exclude=["fc21", "fc22", "fc4"])
    export_checkpoint(mr, 0.2, tmp_path, {"latent_dim": 3})
    for attempt in (lambda: load_exported(tmp_path), lambda: mrvae.load(tmp_path)):
        with pytest.raises(ValueError, match="own class .*UserVAE: pass build=.*never imports a class named in a file"):
            attempt()
    loaded = mrvae.load(tmp_path, build=lambda config: UserVAE(**config))
    assert isinstance(loaded, MultiRateModel) and loaded.beta_range == BetaRange(0.2, 0.2)
    x = torch.rand(3, 1, 4, 4)
    assert torch.allclose(loaded.sample(4, 0.2, seeded()), mr.sample(4, 0.2, seeded()), atol=1e-5)
    assert torch.allclose(loaded.reconstruct(x, 0.2), mr.reconstruct(x, 0.2), atol=1e-5)
    with pytest.raises(ValueError, match="holds β = 0.2 only"):
        loaded.sample(2, 0.3)


def test_text_models_sample_token_ids_greedily():
    torch.manual_seed(0)
    lstm = LSTMVAE(vocab_size=9, latent_dim=3, embedding_dim=4, hidden_dim=5, beta_range=BetaRange(0.1, 1.0))
    m = LoadedVAE(lstm, info=DataInfo("text", (7,), Likelihood.CATEGORICAL, vocab_size=9)).eval()
    ids = m.sample(4, 0.5, seeded(2))
    z = torch.randn(4, 3, generator=seeded(2))
    assert ids.dtype == torch.long and ids.shape == (4, 7) and bool((ids[:, 0] == lstm.bos_index).all())
    assert torch.equal(ids, lstm.generate(z, lstm.u_of(0.5), 7))
    tokens = ids.clone()
    tokens[:, -1] = lstm.eos_index
    tokens[tokens == lstm.pad_index] = lstm.eos_index
    assert m.reconstruct(tokens, 0.5).shape == (4, 6, 9)


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_sample_cli_writes_a_grid_at_one_beta(folder, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", str(folder / "runs" / "digits"), "--beta", "0.5", "--n", "10", "--out", str(out)]) == 0
    assert png_size(out) == (4 * 40 + 3 * 4, 3 * 40 + 2 * 4)  # 10 tiles of 40 px in rows of 4, 4 px apart
    assert "10 samples at β = 0.5 written to" in capsys.readouterr().out
    pixels = torch.from_numpy(np.array(Image.open(out)))
    m = mrvae.load(folder / "runs" / "digits")
    first = (m.sample(10, 0.5, seeded(0))[0, 0] * 255).round()
    assert torch.equal(pixels[:40:5, :40:5, 0].float(), first)  # the first tile, ×5 pixel repetition
    assert bool((pixels[:, 40:44, 1] == 0).all())  # a transparent gap


def test_sample_cli_strip_uses_the_same_draws_in_every_row(folder, tmp_path):
    out = tmp_path / "strip.png"
    betas = ["0.01", "0.1", "1", "10"]
    assert main(["sample", str(folder / "runs" / "digits"), "--betas", *betas, "--out", str(out), "--seed", "5"]) == 0
    assert png_size(out) == (8 * 40 + 7 * 4, 4 * 40 + 3 * 4)
    m = mrvae.load(folder / "runs" / "digits")
    rows = [m.sample(8, float(b), seeded(5)) for b in betas]
    paint = Painter.for_examples(Display.TILES, torch.cat(rows))
    want = stack_rows([paint(r) for r in rows])
    assert (Image.open(out).size, bytes(Image.open(out).tobytes())) == ((want.shape[1], want.shape[0]), want.tobytes())


def test_sample_cli_refuses_to_overwrite_and_bad_input(folder, tmp_path, capsys):
    run, out = str(folder / "runs" / "digits"), tmp_path / "grid.png"
    out.write_bytes(b"keep me")
    assert main(["sample", run, "--beta", "0.5", "--out", str(out)]) == 2
    assert out.read_bytes() == b"keep me" and "already exists; pass --overwrite true" in capsys.readouterr().err
    assert main(["sample", run, "--beta", "0.5", "--out", str(out), "--overwrite", "true"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_size(out) == (8 * 40 + 7 * 4,) * 2
    capsys.readouterr()
    bad = ([], ["--beta", "0.5", "--betas", "1", "2"], ["--beta", "50"], ["--beta", "0.5", "--n", "0"],
           ["--betas", "0.1", "-1"])
    for extra in bad:
        assert main(["sample", run, *extra, "--out", str(tmp_path / "new.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mrvae: error: ") and err.count("\n") == 1, err
    assert main(["sample", str(tmp_path / "missing"), "--beta", "0.5", "--out", str(tmp_path / "new.png")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "new.png").exists()


def test_sample_cli_prints_sentences_of_a_text_model(tmp_path, capsys):
    (tmp_path / "data" / "text").mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (tmp_path / "data" / "text" / f"{split}.txt").write_text("the cat sat\na dog ran on the mat\n")
    run = tmp_path / "text-run"
    assert main(["train", "--data", "text", "--data.root", str(tmp_path / "data"), "--model.arch", "lstm",
                 "--model.latent_dim", "4", "--model.embedding_dim", "8", "--model.lstm_hidden", "8",
                 "--train.steps", "2", "--train.batch_size", "2", "--train.warmup_steps", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--betas", "0.1", "1", "--n", "3", "--out", str(tmp_path / "s.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["β 0.1"] * 3 + ["β 1"] * 3
    words = {w for line in lines for w in line.split(": ", 1)[1].split()}
    assert words <= {"the", "cat", "sat", "a", "dog", "ran", "on", "mat", "<unk>"}
    assert (tmp_path / "s.txt").read_text().splitlines() == lines
    (tmp_path / "data" / "text" / "train.txt").unlink()  # no vocabulary at hand: token ids
    assert main(["sample", str(run), "--beta", "0.5", "--n", "2"]) == 0
    captured = capsys.readouterr()
    assert all(re.fullmatch(r"β 0\.5:( \d+)*", line) for line in captured.out.splitlines())
    assert "printing token ids" in captured.err


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def test_the_loading_page_runs_and_so_do_its_sample_commands(tmp_path, monkeypatch, capsys):
    """docs/loading.md's Python blocks in a fresh folder (in order, one namespace), then its `mrvae sample` lines."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in _blocks(ROOT / "docs" / "loading.md", "python"):
        exec(compile(block, "docs/loading.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "BetaRange(low=0.01, high=10.0)" in out and "BetaRange(low=0.5, high=0.5)" in out
    assert out.rstrip().endswith("True")
    commands = [line for b in _blocks(ROOT / "docs" / "loading.md", "bash") for line in b.splitlines()
                if line.startswith("mrvae sample ")]
    assert len(commands) == 2
    for line in commands:
        assert main(shlex.split(line)[1:]) == 0
    assert png_size(tmp_path / "grid.png") == (8 * 40 + 7 * 4,) * 2
    assert png_size(tmp_path / "strip.png") == (8 * 40 + 7 * 4, 4 * 40 + 3 * 4)


def test_the_exp05_example_of_the_export_page_loads_without_a_builder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exported = [b for b in _blocks(ROOT / "docs" / "convert_export.md", "python") if '"exp05"' in b]
    assert len(exported) == 1
    exec(compile(exported[0], "docs/convert_export.md", "exec"), {})
    assert "MLPVAE 0.5 BetaRange(low=0.5, high=0.5)" in capsys.readouterr().out
