"""Every snippet in README.md and docs/*.md runs: Python blocks are executed (a file's blocks in order, in one
namespace, in a fresh folder), and every `mrvae ...` line of a bash block is parsed by the real CLI parser."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import torch

from mrvae.cli import _expand_shortcuts
from mrvae.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def commands(page: Path) -> list[str]:
    """The ``mrvae ...`` commands of a page's bash blocks (continuation lines joined, comments dropped)."""
    found = []
    for block in blocks(page, "bash"):
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            for part in re.split(r"&&|;", line):
                words = shlex.split(part.strip()) if part.strip() else []
                while words and ("=" in words[0] and not words[0].startswith("-")):
                    words = words[1:]  # environment assignments
                if words[:1] == ["torchrun"]:
                    words = ["mrvae", *words[words.index("mrvae.cli") + 1:]] if "mrvae.cli" in words else []
                if words[:1] == ["mrvae"]:
                    found.append(words)
    return found


PYTHON_PAGES = [p for p in PAGES if blocks(p, "python")]
COMMAND_PAGES = [p for p in PAGES if commands(p)]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: p.name)
def test_python_snippets_run(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    namespace: dict = {"__name__": f"snippets_of_{page.stem}"}
    for index, code in enumerate(blocks(page, "python")):
        exec(compile(code, f"{page.name} python block {index + 1}", "exec"), namespace)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("page", COMMAND_PAGES, ids=lambda p: p.name)
def test_cli_commands_parse(page):
    parser = build_parser()
    for words in commands(page):
        argv = _expand_shortcuts(words[1:])
        if argv[:1] == ["data"] or "--help" in argv:
            continue
        parser.parse_args(argv)  # raises on an unknown flag, a bad choice or a missing argument
