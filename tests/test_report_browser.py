"""The report in headless Chromium (driven through chromedriver's W3C WebDriver HTTP API, standard library only):
the β slider and the arrow keys change the shown β and images; a screenshot is kept as a test artefact.

Skips when Chromium or chromedriver is not installed (Debian: ``apt-get install chromium chromium-driver``).
The browser runs with networking disabled (a dead proxy for every host but loopback).
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mrvae.cli import main

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)
CHROMEDRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and Path(p).exists()),
                    None)
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)")

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
ARROW_RIGHT, ARROW_LEFT = "\ue014", "\ue012"
TINY = ["--data", "digits", "--model.hidden", "[16]", "--model.latent_dim", "4", "--train.steps", "6",
        "--train.batch_size", "32", "--train.warmup_steps", "2", "--baseline.steps", "3", "--baseline.betas", "[1.0]",
        "--eval.num_betas", "5", "--eval.iwae_samples", "0", "--methods", "mrvae,beta-vae"]
STATE = """
const slider = document.getElementById("beta-slider");
const shown = document.querySelector('img[data-series="mrvae-recon"]');
return {index: slider.value, text: document.getElementById("beta-value").textContent, src: shown.src,
        expected: document.getElementById("img-mrvae-recon-" + slider.value).src,
        at: document.querySelector("[data-at-beta]").textContent,
        images: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length,
        resources: performance.getEntriesByType("resource").map(e => e.name)};
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebDriver:
    """The few WebDriver commands the test needs, over HTTP to a local chromedriver."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"WebDriver {method} {path}: {exc.read()[:500]!r}") from exc

    def wait_ready(self, seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/status").get("ready"):
                    return
            except (urllib.error.URLError, ConnectionError, AssertionError):
                pass
            time.sleep(0.1)
        raise AssertionError("chromedriver did not start")

    def start(self, profile: Path) -> None:
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-extensions", f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>", "--window-size=1280,900", "--hide-scrollbars"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                 "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def __call__(self, method: str, path: str, body: dict | None = None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def script(self, source: str, *args):
        return self("POST", "/execute/sync", {"script": source, "args": list(args)})


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "run"
    assert main(["run", *TINY, "--out", str(out)]) == 0
    return out / "report.html"


@pytest.fixture
def browser(tmp_path):
    port = _free_port()
    log = open(tmp_path / "chromedriver.log", "wb")
    process = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT)
    driver = WebDriver(port)
    try:
        driver.wait_ready()
        driver.start(tmp_path / "profile")
        yield driver
    finally:
        if driver.session:
            try:
                driver("DELETE", "")
            except (AssertionError, OSError):
                pass
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MRVAE_TEST_ARTEFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_slider_and_arrow_keys_change_beta_and_images(report, browser, tmp_path):
    browser("POST", "/url", {"url": report.resolve().as_uri()})
    first = browser.script(STATE)
    assert first["images"] == 0, "every embedded image decodes in the browser"
    assert first["resources"] == [], "the page loads nothing besides itself"
    labels = json.loads(browser.script("return document.getElementById('beta-slider').dataset.labels"))
    assert labels == ["0.01", "0.0562", "0.316", "1.78", "10"]
    assert first["index"] == "3" and first["text"] == "β = 1.78" and first["src"] == first["expected"]

    slider = browser("POST", "/element", {"using": "css selector", "value": "#beta-slider"})[ELEMENT]
    browser("POST", f"/element/{slider}/value", {"text": ARROW_RIGHT})  # a real key press on the slider
    moved = browser.script(STATE)
    assert moved["index"] == "4" and moved["text"] == "β = 10" and moved["at"] == "at β = 10"
    assert moved["src"] == moved["expected"] != first["src"]

    browser.script("document.activeElement.blur();")  # arrow keys anywhere on the page move it too
    keys = [{"type": "keyDown", "value": ARROW_LEFT}, {"type": "keyUp", "value": ARROW_LEFT}] * 4
    browser("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard", "actions": keys}]})
    left = browser.script(STATE)
    assert left["index"] == "0" and left["text"] == "β = 0.01" and left["src"] == left["expected"]
    assert browser.script("return Array.from(document.querySelectorAll('tr.current'), r => r.dataset.index)") == ["0"]

    browser.script("const s = document.getElementById('beta-slider'); s.value = 2;"
                   "s.dispatchEvent(new Event('input'));")
    middle = browser.script(STATE)
    assert middle["text"] == "β = 0.316" and middle["src"] == middle["expected"] != left["src"]
    nearest = browser.script("return document.getElementById('nearest-beta').textContent")
    assert nearest == "trained at β = 1 (nearest)"

    browser.script("document.getElementById('pictures').scrollIntoView();")
    png = base64.b64decode(browser("GET", "/screenshot"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    path = _artefacts(tmp_path) / "report_browser_screenshot.png"
    path.write_bytes(png)
    print(f"screenshot: {path}")
