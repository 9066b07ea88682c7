"""Bad inputs give one line and exit 2 (no traceback), and a failed start leaves --out as it found it: bad
settings and missing data, broken or tagged config files, malformed checkpoints (for --resume, curve and
export), a full disk, outputs in the way; non-finite weights and other training settings refused by name."""

import dataclasses
import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from mrvae.cli import main
from mrvae.training.checkpoint import load_checkpoint, save_checkpoint

TINY = ["--data", "synthetic", "--model.hidden", "[16]", "--model.latent_dim", "3", "--train.batch_size", "32",
        "--train.warmup_steps", "2", "--train.log_every", "3", "--train.checkpoint_every", "3", "--train.device",
        "cpu", "--threads", "1", "--eval.num_betas", "2", "--eval.iwae_samples", "2", "--baseline.betas", "[0.1,1]"]
TRAIN = ["train", *TINY, "--train.steps", "8"]
RUN = ["run", *TINY, "--train.steps", "6"]


def one_error_line(capsys) -> str:
    """The single line a refused command printed on stderr besides progress lines ("[tag] ..."); checked:
    one line, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("mrvae: ") and err.endswith(lines[0] + "\n"), err
    return lines[0]


def listing(folder: Path) -> list[str] | None:
    """Everything under ``folder`` (relative paths), or None when it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else None


# --- a start that fails validation leaves nothing behind -------------------------------------------------

BETA_VAE = [*TRAIN, "--method", "beta-vae", "--beta", "0.5"]
BAD_STARTS = {  # name: (bad command, what the one line must say, the corrected command)
    "unknown data set": (["train", *TINY, "--data", "nope"], "unknown data set 'nope'", TRAIN),
    "fashion-mnist files missing": ([*TRAIN, "--data", "fashion-mnist", "--data.root", "/nonexistent"],
                                    "/nonexistent/fashion-mnist/train-images-idx3-ubyte", TRAIN),
    "mnist files missing": ([*TRAIN, "--data", "mnist", "--data.root", "{root}"], "missing (mnist)", TRAIN),
    "unknown architecture": ([*TRAIN, "--model.arch", "nope"], "nope", TRAIN),
    "batch larger than the data": ([*TRAIN, "--train.batch_size", "100000"], "larger than the training split",
                                   TRAIN),
    "beta-vae at β 0": ([*TRAIN, "--method", "beta-vae", "--beta", "0"], "--beta", BETA_VAE),
    "beta-vae at β < 0": ([*TRAIN, "--method", "beta-vae", "--beta", "-1"], "--beta", BETA_VAE),
    "beta-vae at β 1e300": ([*TRAIN, "--method", "beta-vae", "--beta", "1e300"], "1e+300", BETA_VAE),
    "beta-vae at β 1e-300": ([*TRAIN, "--method", "beta-vae", "--beta", "1e-300"], "1e-300", BETA_VAE),
    "beta-vae without β": ([*TRAIN, "--method", "beta-vae"], "needs --beta", BETA_VAE),
    "baseline βs outside the range": ([*RUN, "--baseline.betas", "[0.001,1]"], "outside the multi-rate range", RUN),
    "baseline β 1e300 (run)": ([*RUN, "--baseline.betas", "[0.1,1e300]"], "1e+300", RUN),
    "baseline β 1e300 (baseline)": (["baseline", *TINY, "--train.steps", "6", "--baseline.betas", "[1e300]"],
                                    "1e+300", ["baseline", *TINY, "--train.steps", "6"]),
    "training range up to 1e300": ([*TRAIN, "--train.beta_high", "1e300"], "1e+300", TRAIN),
    "lr nan": ([*TRAIN, "--train.lr", "nan"], "lr", TRAIN),
}


@pytest.fixture
def no_debian_fashion_mnist(monkeypatch):
    """This machine may have Debian's Fashion-MNIST package, which the loader falls back to: drop it."""
    from mrvae.data.catalog import CATALOG

    monkeypatch.setitem(CATALOG, "fashion-mnist", dataclasses.replace(CATALOG["fashion-mnist"], fallbacks=()))


@pytest.mark.parametrize("existed", [False, True], ids=["new-out", "empty-out"])
@pytest.mark.parametrize("case", list(BAD_STARTS))
def test_a_start_that_fails_validation_leaves_nothing_and_the_corrected_command_works(
        case, existed, tmp_path, capsys, no_debian_fashion_mnist):
    bad, says, corrected = BAD_STARTS[case]
    (tmp_path / "empty-root").mkdir()
    bad = [word.replace("{root}", str(tmp_path / "empty-root")) for word in bad]
    out = tmp_path / "out"
    if existed:
        out.mkdir()
    assert main([*bad, "--out", str(out)]) == 2
    assert says in one_error_line(capsys)
    assert listing(out) == ([] if existed else None)
    assert main([*corrected, "--out", str(out)]) == 0, capsys.readouterr().err


def _full_disk(monkeypatch):
    import shutil as shutil_module
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10**9, 10**9 - 50_000, 50_000))


def _enospc_at_first_checkpoint(monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", no_space)


def _nan_at_step_1(monkeypatch):
    from mrvae.models.base import VAE

    original = VAE.objective

    def objective(self, x, beta, u, generator=None):
        loss, out = original(self, x, beta, u, generator)
        out.distortion = out.distortion * float("nan")
        return out.distortion + beta[:, 0] * out.rate, out

    monkeypatch.setattr(VAE, "objective", objective)


@pytest.mark.parametrize("existed", [False, True], ids=["new-out", "empty-out"])
@pytest.mark.parametrize("fault,code,says", [
    (_full_disk, 2, "not enough free disk space for checkpoints"),
    (_enospc_at_first_checkpoint, 2, "No space left on device"),
    (_nan_at_step_1, 3, "non-finite distortion at step 0"),
], ids=["full-disk-at-start", "enospc-first-checkpoint", "nan-at-step-1"])
def test_a_start_that_fails_in_the_folder_before_a_checkpoint_leaves_it_as_found(
        fault, code, says, existed, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    if existed:
        out.mkdir()
    with monkeypatch.context() as patch:
        fault(patch)
        assert main([*TRAIN, "--out", str(out)]) == code
    line = one_error_line(capsys)
    assert says in line
    if code == 3:  # nothing was written, and the message says so (not "the last checkpoint was kept")
        assert "no checkpoint had been written yet" in line and "kept" not in line
    assert listing(out) == ([] if existed else None)
    assert main([*TRAIN, "--out", str(out)]) == 0, capsys.readouterr().err  # the same command, once fixed


# --- a full disk in the middle of training ----------------------------------------------------------------

def test_a_full_disk_mid_training_is_one_line_keeps_the_last_checkpoint_and_resume_finishes(
        tmp_path, monkeypatch, capsys):
    out, straight = tmp_path / "out", tmp_path / "straight"
    assert main([*TRAIN, "--out", str(straight)]) == 0
    original, calls = torch.save, []

    def save_then_fill_the_disk(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:  # the first checkpoint (step 3) is written; the second (step 6) finds the disk full
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(obj, handle, *args, **kwargs)

    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", save_then_fill_the_disk)
        assert main([*TRAIN, "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "No space left on device" in line and "mrvae.pt" in line, line
    assert load_checkpoint(out / "checkpoints" / "mrvae.pt")["step"] == 3
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert main([*TRAIN, "--out", str(out), "--resume", "true"]) == 0
    got, want = load_checkpoint(out / "checkpoints" / "mrvae.pt"), load_checkpoint(straight / "checkpoints" / "mrvae.pt")
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), name


def test_a_full_disk_for_a_metrics_line_or_the_config_is_one_line(tmp_path, monkeypatch, capsys):
    import builtins

    from mrvae.training import reporting

    class FullFile:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(reporting, "open", FullFile, raising=False)
        assert main([*TRAIN, "--out", str(tmp_path / "metrics")]) == 2
    assert f"{tmp_path / 'metrics' / 'metrics.jsonl'}: No space left on device" in one_error_line(capsys)
    real_open = builtins.open

    def no_room_for_config(file, mode="r", *args, **kwargs):
        if "config.yaml" in str(file) and "w" in mode:
            return FullFile()
        return real_open(file, mode, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", no_room_for_config)
        assert main([*TRAIN, "--out", str(tmp_path / "config")]) == 2
    assert f"{tmp_path / 'config' / 'config.yaml'}: No space left on device" in one_error_line(capsys)
    assert not (tmp_path / "config").exists()


# --- config.yaml found on --resume ---------------------------------------------------------------------

BROKEN_CONFIGS = {
    "empty": b"",
    "yaml syntax error": b"train: {steps: [1, 2\n",
    "python object tag": b"!!python/object/apply:os.system ['touch {marker}']\n",
    "python object tag in a value": b"train: !!python/object:os.system {}\n",
    "a list": b"- 1\n- 2\n",
    "unknown key": b"trian: {steps: 8}\n",
    "bad value": b"train: {steps: -3}\n",
    "not utf-8": b"\xff\xfe\x00garbage",
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished tiny `mrvae train` folder (copied by the tests that damage it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("case", list(BROKEN_CONFIGS))
def test_a_broken_or_tagged_config_on_resume_is_one_line_and_changes_nothing(case, trained_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    marker = tmp_path / "executed"
    (out / "config.yaml").write_bytes(BROKEN_CONFIGS[case].replace(b"{marker}", str(marker).encode()))
    before = {path: (out / path).read_bytes() for path in listing(out) if (out / path).is_file()}
    capsys.readouterr()
    assert main([*TRAIN, "--out", str(out), "--resume", "true"]) == 2
    line = one_error_line(capsys)
    assert f"{out / 'config.yaml'}" in line
    assert "--config" not in line and "resume with" not in line  # never suggests resuming from that file
    assert not marker.exists()
    assert {path: (out / path).read_bytes() for path in before} == before  # nothing removed or rewritten


# --- malformed checkpoints: --resume, curve, export ---------------------------------------------------

def _drop(key):
    return lambda state: state.pop(key)


def _set(*keys, value):
    def mutate(state):
        target = state
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return mutate


def _first_weight(state):
    return next(iter(state["model"]))


MALFORMED = {  # name: (how to damage the state, refused by --resume, refused by curve / export)
    "no model": (_drop("model"), True, True),
    "no optimizer": (_drop("optimizer"), True, False),
    "no train_config": (_drop("train_config"), True, False),
    "no scheduler": (_drop("scheduler"), True, False),
    "no rng": (_drop("rng"), True, False),
    "no run_config": (_drop("run_config"), False, True),
    "unknown train setting": (_set("train_config", "frobnicate", value=3), True, False),
    "bad torch rng state": (_set("rng", "torch", value=torch.zeros(3, dtype=torch.uint8)), True, False),
    "bad generator state": (_set("rng", "train_generator", value=torch.zeros(5)), True, False),
    "rng state a string": (_set("rng", "torch", value="seed"), True, False),
    "rank rng empty": (_set("rank_rng", value=[]), True, False),
    "model a list": (_set("model", value=[1, 2]), True, True),
    "a weight of another shape": (lambda s: s["model"].__setitem__(_first_weight(s), torch.zeros(2, 2)), True, True),
    "optimizer without param groups": (_set("optimizer", "param_groups", value=[]), True, False),
    "step not a number": (_set("step", value="ten"), True, False),
    "metrics state of another shape": (_set("metrics_state", "sums", value=torch.zeros(7)), True, False),
    "method unknown": (_set("method", value="nope"), False, True),
    "data_info missing": (_drop("data_info"), False, True),
    "beta_range inverted": (_set("beta_range", value=[10.0, 0.01]), False, True),
    "run_config a string": (_set("run_config", value="x"), False, True),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_checkpoint_is_one_line_for_resume_curve_and_export(case, trained_run, tmp_path, capsys):
    mutate, resume_refuses, load_refuses = MALFORMED[case]
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    checkpoint = out / "checkpoints" / "mrvae.pt"
    state = load_checkpoint(checkpoint)
    state.pop("format_version")
    mutate(state)
    save_checkpoint(state, checkpoint)
    damaged = checkpoint.read_bytes()
    capsys.readouterr()
    if resume_refuses:
        assert main([*TRAIN, "--out", str(out), "--resume", "true"]) == 2
        assert str(checkpoint) in one_error_line(capsys)
        assert checkpoint.read_bytes() == damaged
    if load_refuses:
        assert main(["curve", str(out), "--out", str(tmp_path / "curve.json")]) == 2
        assert str(checkpoint) in one_error_line(capsys)
        assert main(["export", str(out), "--beta", "1", "--out", str(tmp_path / "export")]) == 2
        assert str(checkpoint) in one_error_line(capsys)
        assert not (tmp_path / "curve.json").exists() and not (tmp_path / "export").exists()


def test_curve_and_export_refuse_non_finite_weights_naming_the_file(trained_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    checkpoint = out / "checkpoints" / "mrvae.pt"
    state = load_checkpoint(checkpoint)
    state.pop("format_version")
    state["model"][_first_weight(state)].view(-1)[0] = float("nan")
    save_checkpoint(state, checkpoint)
    capsys.readouterr()
    for command in (["curve", str(out), "--out", str(tmp_path / "c.json")],
                    ["curve", str(checkpoint), "--target_rate", "1"],
                    ["export", str(out), "--beta", "1", "--out", str(tmp_path / "export")]):
        assert main(command) == 2
        line = one_error_line(capsys)
        assert str(checkpoint) in line and "non-finite weights" in line, line
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "export").exists()


def test_resuming_a_checkpoint_of_another_lr_and_seed_through_fit_names_both(tmp_path):
    from mrvae.beta import BetaRange
    from mrvae.config import ModelConfig, TrainConfig
    from mrvae.data import load_data
    from mrvae.models.registry import build_model
    from mrvae.training.checkpoint import CheckpointError
    from mrvae.training.loop import FitFiles, fit

    data = load_data("synthetic")
    first = TrainConfig(steps=4, batch_size=32, warmup_steps=1, lr=1e-3, seed=1, device="cpu")
    other = dataclasses.replace(first, lr=2e-3, seed=2, steps=8)  # steps may change, lr and seed may not

    def model():
        torch.manual_seed(0)
        return build_model(ModelConfig(latent_dim=3, hidden=(16,)), data.info, "gate", beta_range=BetaRange())

    fit(model(), data, first, FitFiles(tmp_path / "c.pt"))
    saved = (tmp_path / "c.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"other settings: lr 0\.001 -> 0\.002; seed 1 -> 2;"):
        fit(model(), data, other, FitFiles(tmp_path / "c.pt", resume=True))
    assert (tmp_path / "c.pt").read_bytes() == saved
    result = fit(model(), data, dataclasses.replace(first, steps=8), FitFiles(tmp_path / "c.pt", resume=True))
    assert result.step == 8


# --- outputs in the way -----------------------------------------------------------------------------------

def test_export_and_curve_into_a_path_under_a_file_are_one_line(trained_run, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    capsys.readouterr()
    for command in (["export", str(trained_run), "--beta", "1", "--out", str(a_file)],
                    ["export", str(trained_run), "--beta", "1", "--out", str(a_file / "sub")],
                    ["curve", str(trained_run), "--out", str(a_file / "x.json")]):
        assert main(command) == 2
        assert str(a_file) in one_error_line(capsys)
    assert a_file.read_text() == "keep me"


def test_a_checkpoint_older_than_a_setting_resumes_when_the_setting_keeps_its_default(tmp_path):
    from mrvae.beta import BetaRange
    from mrvae.config import ModelConfig, TrainConfig
    from mrvae.data import load_data
    from mrvae.models.registry import build_model
    from mrvae.training.checkpoint import CheckpointError
    from mrvae.training.loop import FitFiles, fit

    data = load_data("synthetic")
    first = TrainConfig(steps=4, batch_size=32, warmup_steps=1, device="cpu")

    def model():
        torch.manual_seed(0)
        return build_model(ModelConfig(latent_dim=3, hidden=(16,)), data.info, "gate", beta_range=BetaRange())

    fit(model(), data, first, FitFiles(tmp_path / "c.pt"))
    state = torch.load(tmp_path / "c.pt", weights_only=False)
    del state["train_config"]["weight_decay"]  # as a version before the setting wrote it
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"other settings: weight_decay 0\.0 -> 0\.1;"):
        fit(model(), data, dataclasses.replace(first, weight_decay=0.1, steps=8), FitFiles(tmp_path / "c.pt", resume=True))
    result = fit(model(), data, dataclasses.replace(first, steps=8), FitFiles(tmp_path / "c.pt", resume=True))
    assert result.step == 8
