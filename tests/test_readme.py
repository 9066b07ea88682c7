"""The README's Python quick start runs, and its set-up commands match .ci/run and pyproject."""

import re

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quick_start_snippet_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has no Python quick start"
    exec(compile(blocks[0], "README quick start", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["0.01", "0.1", "1.0", "10.0"]
    rates = [float(line.split()[3]) for line in lines]
    distortions = [float(line.split()[5]) for line in lines]
    assert rates == sorted(rates, reverse=True) and distortions == sorted(distortions)  # one model, every β
    assert rates[0] > 10 * rates[-1] >= 0
    printed = re.search(r"It prints.*?```\n(.*?)```", README, flags=re.S).group(1).strip().splitlines()
    shown = [[float(w) for w in re.findall(r"-?\d+\.\d+", line)] for line in printed]
    got = [[float(w) for w in re.findall(r"-?\d+\.\d+", line)] for line in lines]
    for want_row, got_row in zip(shown, got, strict=True):  # what the README shows, to float rounding
        assert got_row == pytest.approx(want_row, rel=0.05, abs=0.3)


def test_setup_commands_pin_the_cpu_torch_and_ci_runs_the_readme_test_command():
    bash = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    commands = [line for block in bash for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert all(c.startswith("pip install torch==2.13.0 -e ") for c in commands)
    assert "mrvae run" in commands[0]
    test_command = commands[1].split("&&", 1)[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q torch==2.13.0 -e '.[test]'" in ci and f"\n{test_command}\n" in ci
    assert '"torch>=2.1"' in (ROOT / "pyproject.toml").read_text()
