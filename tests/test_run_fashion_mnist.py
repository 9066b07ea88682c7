"""`mrvae run --data fashion-mnist` end to end on the real files (tiny settings); skipped without them."""

import json
import os
from pathlib import Path

import pytest

from mrvae.cli import main
from mrvae.evaluation.curves import RDCurve
from mrvae.data.catalog import CATALOG, DEBIAN_FASHION_MNIST_DIR

FOLDER = Path(os.environ.get("MRVAE_FASHION_MNIST_DIR", str(DEBIAN_FASHION_MNIST_DIR)))
pytestmark = pytest.mark.skipif(not CATALOG["fashion-mnist"].complete_in(FOLDER),
                                reason=f"Fashion-MNIST IDX files not found in {FOLDER}")


def test_run_on_fashion_mnist(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    (root / "fashion-mnist").symlink_to(FOLDER, target_is_directory=True)
    out = tmp_path / "run"
    code = main(["run", "--data", "fashion-mnist", "--data.root", str(root), "--model.hidden", "[32]",
                 "--model.latent_dim", "4", "--train.steps", "30", "--train.warmup_steps", "5",
                 "--baseline.steps", "10", "--baseline.betas", "[0.1,1.0]", "--eval.num_betas", "3",
                 "--eval.iwae_samples", "2", "--out", str(out)])
    assert code == 0
    curve = RDCurve.load(out / "curves" / "mrvae.json")
    assert curve.config["data"]["name"] == "fashion-mnist" and len(curve.betas) == 3
    # 784 binarised pixels: an untrained-ish model's distortion is hundreds of nats, but finite
    assert all(100 < d < 784 for d in curve.results["distortion"])
    table = json.loads((out / "comparison.json").read_text())
    assert set(table["rows"]) == {"mrvae", "beta-vae"}
    assert "fashion-mnist" in capsys.readouterr().err
