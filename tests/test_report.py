"""The HTML run report: embedded images decode, table numbers equal the JSON files, nothing external, deterministic."""

import base64
import io
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from matplotlib import image as mpimg

from mrvae.cli import main
from mrvae.evaluation.curves import RDCurve
from mrvae.data.base import DataInfo
from mrvae.objectives import Likelihood
from mrvae.runs.folder import RunDir
from mrvae.runs.methods import load_trained
from mrvae.runs.pictures import (GAP_PX, MIN_TILE_PX, Display, display_for, encode_png, heatmap, tile_strip,
                                 write_pictures)
from mrvae.report.build import build_report
from mrvae.report.images import data_uri

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HALF_ULP = 0.0005 + 1e-9  # numbers are printed with 3 decimals
NUM_BETAS = 4
TINY_DIGITS = ["--data", "digits", "--model.hidden", "[16]", "--model.latent_dim", "4", "--train.steps", "8",
               "--train.batch_size", "32", "--train.warmup_steps", "2", "--baseline.steps", "4",
               "--baseline.betas", "[0.1,1.0]", "--eval.num_betas", str(NUM_BETAS), "--eval.iwae_samples", "2",
               "--methods", "mrvae,yoto,beta-vae"]


class Page(HTMLParser):
    """Every start tag with its attributes, the text of each table cell, and the text of style/script."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.cells: list[tuple[dict[str, str], str]] = []
        self.inline: dict[str, str] = {"style": "", "script": ""}
        self._cell: dict[str, str] | None = None
        self._text: list[str] = []
        self._inline: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag in ("td", "th"):
            self._cell, self._text = attributes, []
        if tag in self.inline:
            self._inline = tag

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append((self._cell, "".join(self._text).strip()))
            self._cell = None
        if tag == self._inline:
            self._inline = None

    def handle_data(self, data):
        if self._cell is not None:
            self._text.append(data)
        if self._inline is not None:
            self.inline[self._inline] += data

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def cell(self, table: str, method: str, column: str, index: int) -> str:
        found = [text for a, text in self.cells if a.get("data-table") == table and a.get("data-method") == method
                 and a.get("data-column") == column and a.get("data-index") == str(index)]
        assert len(found) == 1, f"{len(found)} cells {table}/{method}/{column}/{index}"
        return found[0]


def decode_png(uri: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:40]
    raw = base64.b64decode(uri[len(prefix):], validate=True)
    assert raw[:8] == PNG_SIGNATURE
    return mpimg.imread(io.BytesIO(raw), format="png")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "digits"
    assert main(["run", *TINY_DIGITS, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def page(digits_run):
    return Page((digits_run / "report.html").read_text(encoding="utf-8"))


def test_run_writes_the_report_and_every_image_decodes(digits_run, page):
    images = page.find("img")
    # 4 figures; the examples strip; viewer: 3 methods × 2; static grids: 2 models × 4 βs × 2 + 2 β-VAEs × 2
    assert len(images) == 4 + 1 + 6 + 2 * NUM_BETAS * 2 + 2 * 2
    for attributes in images:
        pixels = decode_png(attributes["src"])
        assert pixels.ndim in (2, 3) and min(pixels.shape[:2]) >= 8
    # digits (1, 8, 8) are drawn as grey tiles upscaled to MIN_TILE_PX, 8 to a strip with 2 px gaps
    strip = decode_png(page.find("img", id="img-mrvae-recon-0")[0]["src"])
    assert strip.shape[:2] == (MIN_TILE_PX, 8 * MIN_TILE_PX + 7 * GAP_PX)
    gap = strip[:, MIN_TILE_PX:MIN_TILE_PX + GAP_PX, 3]
    assert (gap == 0).all() and (strip[:, :MIN_TILE_PX, 3] == 1).all(), "tiles opaque, gaps transparent"
    assert {a["id"] for a in page.find("section")} == {"curves", "table", "pictures", "numbers", "run"}


def _run_data(run_dir):
    from mrvae.config import load_yaml
    from mrvae.data import load_data

    config = load_yaml(run_dir / "config.yaml")
    return config, load_data("digits", seed=config.data.seed)


@torch.no_grad()
def _decode(model, x, z, beta, beta_range):
    """A second computation of the pictures' decodings: u from the run's β range (not ``model.u_of``)."""
    u = beta_range.standardise(torch.full((x.shape[0], 1), float(beta))).to(torch.float32)
    mean, _ = model.encode(x, u)
    return model.mean_output(model.decode(mean, u)), model.mean_output(model.decode(z, u))


def test_pictures_are_the_models_decodings(digits_run, page):
    """A second computation: decode the same examples through the checkpoint and compare the pixels of
    the files the run wrote (and the page shows)."""
    config, data = _run_data(digits_run)
    order = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(0))[:8]
    x = data.test.data[order]
    trained = load_trained(digits_run / "checkpoints" / "yoto.pt")
    z = torch.randn(8, trained.model.latent_dim, generator=torch.Generator().manual_seed(1))
    betas = config.train.beta_range.grid(NUM_BETAS).tolist()
    pictures = digits_run / "pictures"
    index = json.loads((pictures / "index.json").read_text())
    (yoto,) = [s for s in index["series"] if s["method"] == "yoto"]
    assert yoto["betas"] == pytest.approx(betas) and index["seed"] == 0 and index["num_examples"] == 8

    def grey_and_alpha(uri):  # matplotlib reads a grey + alpha PNG as RGBA
        pixels = decode_png(uri)
        np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])
        return pixels[..., [0, 3]]

    assert page.find("img", alt="test examples")[0]["src"] == data_uri((pictures / "examples.png").read_bytes())
    shown_examples = grey_and_alpha(page.find("img", alt="test examples")[0]["src"])
    np.testing.assert_allclose(shown_examples, tile_strip(x, 0.0, 1.0) / 255.0, atol=1e-6)
    for index in (0, NUM_BETAS - 1):
        recon, sample = _decode(trained.model, x, z, betas[index], config.train.beta_range)
        for kind, expected in (("recon", recon), ("sample", sample)):
            src = page.find("img", id=f"img-yoto-{kind}-{index}")[0]["src"]
            assert src == data_uri((pictures / "yoto" / f"{kind}-{index}.png").read_bytes())
            np.testing.assert_allclose(grey_and_alpha(src), tile_strip(expected, 0.0, 1.0) / 255.0, atol=1e-6)
    low = page.find("img", id="img-yoto-recon-0")[0]["src"]
    assert low != page.find("img", id=f"img-yoto-recon-{NUM_BETAS - 1}")[0]["src"], "β changes the decoding"


def test_table_numbers_equal_the_json_files(digits_run, page):
    comparison = json.loads((digits_run / "comparison.json").read_text())
    for method, rows in comparison["rows"].items():
        for i, row in enumerate(rows):
            for column in ("rate", "distortion", "beta_objective"):
                assert float(page.cell("comparison", method, column, i)) == pytest.approx(row[column], abs=HALF_ULP)
    reference = comparison["rows"]["beta-vae"]
    for method in ("mrvae", "yoto"):
        for i, (a, b) in enumerate(zip(comparison["rows"][method], reference)):
            gap = (a["beta_objective"] - b["beta_objective"]) / abs(b["beta_objective"]) * 100
            assert float(page.cell("comparison", method, "gap_percent", i)) == pytest.approx(gap, abs=0.005 + 1e-9)
    for name in ("mrvae", "yoto", "beta-vae"):
        curve = RDCurve.load(digits_run / "curves" / f"{name}.json")
        for i in range(len(curve.betas)):
            for key in ("rate", "distortion", "beta_objective", "neg_elbo"):
                assert float(page.cell("curve", name, key, i)) == pytest.approx(curve.results[key][i], abs=HALF_ULP)
            assert int(page.cell("curve", name, "active_units", i)) == curve.results["active_units"][i]
        assert float(page.cell("run", name, "iwae_nll", 0)) == pytest.approx(curve.summary["iwae_nll"], abs=HALF_ULP)
        assert float(page.cell("run", name, "run_wall_time_s", 0)) == pytest.approx(comparison["wall_time_s"][name],
                                                                              abs=0.05 + 1e-9)
    beta_heads = [float(a["data-beta"]) for a, _ in page.cells if "data-beta" in a]
    assert beta_heads[:2] == comparison["betas"]


def test_nothing_external_is_referenced(page):
    assert not page.find("link") and not page.find("iframe") and not page.find("object")
    for tag, attributes in page.tags:
        for name in ("src", "href", "srcset", "poster", "data", "action"):
            value = attributes.get(name)
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), (tag, name, value[:60])
    assert all("src" not in a for a in page.find("script"))
    for text in page.inline.values():
        assert "url(" not in text and "@import" not in text and "http" not in text and "fetch(" not in text


def test_slider_covers_the_grid_and_names_the_images_it_shows(page):
    (slider,) = page.find("input", id="beta-slider")
    assert slider["type"] == "range" and slider["min"] == "0" and slider["max"] == str(NUM_BETAS - 1)
    labels = json.loads(slider["data-labels"])
    assert labels == ["0.01", "0.1", "1", "10"]
    assert json.loads(slider["data-nearest"]) == [0, 0, 1, 1]  # β-VAEs at 0.1 and 1
    ids = {a["id"] for a in page.find("img") if "id" in a}
    for attributes in page.find("img"):
        if "data-series" in attributes:
            count = 2 if "data-nearest" in attributes else NUM_BETAS
            assert {f"img-{attributes['data-series']}-{i}" for i in range(count)} <= ids


def test_same_seed_same_bytes_other_seed_other_examples(digits_run, page, tmp_path, capsys):
    assert main(["report", str(digits_run), "--out", str(tmp_path / "again.html")]) == 0
    assert f"report written to {tmp_path / 'again.html'}" in capsys.readouterr().out
    assert (tmp_path / "again.html").read_bytes() == (digits_run / "report.html").read_bytes()
    copy = tmp_path / "copy"
    shutil.copytree(digits_run, copy)
    config, data = _run_data(copy)
    write_pictures(RunDir(copy), config, data)  # the run's own choice again: the same bytes
    for path in sorted((digits_run / "pictures").rglob("*")):
        if path.is_file():
            assert (copy / path.relative_to(digits_run)).read_bytes() == path.read_bytes(), path
    write_pictures(RunDir(copy), config, data, num_examples=3, seed=5)
    assert main(["report", str(copy), "--out", str(tmp_path / "other.html")]) == 0
    other = Page((tmp_path / "other.html").read_text(encoding="utf-8"))
    examples = decode_png(other.find("img", alt="test examples")[0]["src"])
    assert examples.shape[:2] == (MIN_TILE_PX, 3 * MIN_TILE_PX + 2 * GAP_PX)
    assert other.find("img", alt="test examples")[0]["src"] != page.find("img", alt="test examples")[0]["src"]


def test_broken_curve_file_is_noted_and_errors_are_clear(digits_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(digits_run, copy)
    (copy / "curves" / "zz.json").write_text("{not json")
    (copy / "comparison.json").unlink()
    html = build_report(copy).read_text(encoding="utf-8")
    assert "curves/zz.json skipped" in html and "has no comparison.json" in html
    with pytest.raises(ValueError, match="no config.yaml"):
        build_report(tmp_path / "empty")
    with pytest.raises(ValueError, match="num_examples must be >= 1, got 0"):
        write_pictures(RunDir(copy), *_run_data(copy), num_examples=0)
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_a_run_folder_without_pictures_still_renders(digits_run, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(digits_run, copy)
    (copy / "pictures" / "yoto" / "recon-0.png").unlink()
    html = build_report(copy).read_text(encoding="utf-8")
    assert "pictures/index.json could not be read" in html and "FileNotFoundError" in html
    assert len(Page(html).find("img")) == 4, "the four figures, no pictures"
    shutil.rmtree(copy / "pictures")
    html = build_report(copy).read_text(encoding="utf-8")
    old = Page(html)
    assert "has no pictures/index.json" in html and not old.find("input", id="beta-slider")
    assert len(old.find("img")) == 4, "the four figures, no pictures"
    assert {a["id"] for a in old.find("section")} == {"curves", "table", "pictures", "numbers", "run"}


def test_the_report_reads_files_and_imports_no_model_code():
    """'Results are files': no module of mrvae.report imports training, runs, models, convert or checkpoints."""
    import ast
    from pathlib import Path

    import mrvae.report

    forbidden = ("training", "runs", "models", "convert", "checkpoint", "torch")
    folder = Path(mrvae.report.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert {m.name for m in modules} >= {"build.py", "figures.py", "images.py", "page.py"}
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                assert not any(part in forbidden for part in name.split(".")), f"{module.name} imports {name}"
    assert (folder / "report.html").is_file(), "the page template ships beside the modules"


def test_display_follows_the_data_shape():
    assert display_for(DataInfo("digits", (1, 8, 8), Likelihood.BERNOULLI))[0] is Display.TILES
    assert display_for(DataInfo("cifar10", (3, 32, 32), Likelihood.GAUSSIAN))[0] is Display.TILES
    flat, note = display_for(DataInfo("synthetic", (16,), Likelihood.GAUSSIAN))
    assert flat is Display.HEATMAP and "heatmap" in note
    text, note = display_for(DataInfo("ptb", (40,), Likelihood.CATEGORICAL, vocab_size=100))
    assert text is Display.NONE and "text" in note
    assert display_for(DataInfo("odd", (2, 3, 4, 5), Likelihood.GAUSSIAN))[0] is Display.NONE


def test_png_encoder_round_trips_and_heatmap_colours():
    generator = np.random.default_rng(0)
    for shape in ((5, 7), (4, 6, 3), (3, 5, 4)):
        pixels = generator.integers(0, 256, size=shape, dtype=np.uint8)
        read = mpimg.imread(io.BytesIO(encode_png(pixels)), format="png")
        assert read.shape == shape
        np.testing.assert_allclose(read * 255, pixels, atol=1e-3)
    with pytest.raises(ValueError, match=r"uint8 array, got float64 \(2, 2\)"):
        encode_png(np.zeros((2, 2)))
    rgb = heatmap(torch.tensor([[-2.0, 0.0, 2.0]]), vmax=2.0)
    cell = rgb.shape[1] // 3
    blue, white, red = rgb[0, 0], rgb[0, cell + 1], rgb[0, -1]
    assert blue[2] > blue[0] + 50 and red[0] > red[2] + 50 and white.min() > 200
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) images with C 1 or 3, got shape \(2, 2, 4, 4\)"):
        tile_strip(torch.zeros(2, 2, 4, 4), 0.0, 1.0)
