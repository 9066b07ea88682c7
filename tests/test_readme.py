"""The README's Python quick start runs, and its set-up commands match .ci/run and pyproject."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quick_start_snippet_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has no Python quick start"
    exec(compile(blocks[0], "README quick start", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("0.1 ") and lines[1].startswith("5.0 ")
    rate_low, rate_high = (float(line.split()[1]) for line in lines)
    assert rate_low >= 0 and rate_high >= 0


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
