"""Wall time of the README's main command with each thread setting, on a quiet and on a busy machine.

    python benchmarks/threads.py                       # the full main command, quiet then busy
    python benchmarks/threads.py --settings auto 1 2 --busy 2 --extra --train.steps 600

For each machine state (quiet: nothing else started; busy: ``--busy`` pure-Python busy loops running
beside it, one per core on the 2-core reference machine) it runs ``mrvae run`` once per ``--threads``
setting, in turn, each into a fresh folder, and prints the wall times and the ratio of each setting to
``--threads 1`` measured in the same machine state. Issue 16 asks that the default (``auto``) takes at
most 1.2× the wall time of ``--threads 1`` on the busy machine. Results go to ``--json`` if given.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BUSY_LOOP = "while True:\n    pass\n"


@contextmanager
def busy_loops(count: int):
    """``count`` processes spinning on a core each, stopped on exit."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        time.sleep(1.0)  # let the scheduler see them
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def time_run(setting: str, extra: list[str]) -> float:
    """Seconds of wall time of one ``mrvae run`` with ``--threads setting`` (``default``: no flag)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "mrvae.cli", "run", "--out", str(Path(folder) / "run"), *extra]
        if setting != "default":
            command += ["--threads", setting]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started


def measure(settings: list[str], extra: list[str], busy: int) -> dict[str, float]:
    times = {}
    with busy_loops(busy):
        for setting in settings:
            times[setting] = time_run(setting, extra)
            print(f"  {'busy' if busy else 'quiet'}: --threads {setting}: {times[setting]:.1f} s", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["auto", "1", "2"],
                        help="--threads values to time (default: auto 1 2); 'default' passes no flag")
    parser.add_argument("--busy", type=int, default=2, help="busy-loop processes for the busy state")
    parser.add_argument("--states", nargs="+", default=["quiet", "busy"], choices=["quiet", "busy"])
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `mrvae run` arguments")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if "1" not in args.settings:
        args.settings.append("1")
    results = {}
    for state in args.states:
        times = measure(args.settings, args.extra, args.busy if state == "busy" else 0)
        ratios = {s: t / times["1"] for s, t in times.items()}
        results[state] = {"wall_time_s": times, "ratio_to_threads_1": ratios}
        print(f"{state}: " + ", ".join(f"{s} {t:.1f} s ({ratios[s]:.2f}x)" for s, t in times.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": sys.argv, "results": results}, indent=1))


if __name__ == "__main__":
    main()
