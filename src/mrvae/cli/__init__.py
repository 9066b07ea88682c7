"""The ``mrvae`` command line: ``main(argv) -> exit code`` (0 ok, 2 user error, 3 non-finite training)."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from enum import Enum
from collections.abc import Sequence
from typing import Any

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_NON_FINITE = 3

#: The commands that train into a run folder, and so can be resumed with ``--resume true``.
RESUMABLE_COMMANDS = ("run", "train", "baseline")


def _expand_shortcuts(argv: list[str]) -> list[str]:
    """``--data NAME`` -> ``--data.name NAME``; ``--methods a,b`` -> ``--methods [a,b]``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--data" and nxt is not None and not nxt.lstrip().startswith("{"):
            out += ["--data.name", nxt]
            i += 2
            continue
        if arg.startswith("--data="):
            value = arg.split("=", 1)[1]
            out.append(arg if value.lstrip().startswith("{") else f"--data.name={value}")
            i += 1
            continue
        if arg == "--methods" and nxt is not None and not nxt.lstrip().startswith("["):
            out += ["--methods", "[" + nxt + "]"]
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mrvae`` CLI on ``argv`` (default: sys.argv[1:]) and return the exit code.

    Errors a user can cause (bad settings, unknown data set, missing or corrupt checkpoint, an
    output folder that is not writable or already holds a run) print one line and return 2.
    """
    import matplotlib

    matplotlib.use("Agg")
    from ..training.checkpoint import CheckpointError
    from ..training.interrupt import TrainingInterrupted
    from ..training.trainer import NonFiniteError
    from .commands import COMMANDS
    from .parser import build_parser

    argv = _expand_shortcuts(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    printing = argv[:1] in (["run"], ["train"], ["baseline"]) and "--print_config" in argv
    try:
        args = parser.parse_args([a for a in argv if a != "--print_config"] if printing else argv)
        if printing:
            return _print_config(args)
    except (argparse.ArgumentError, ValueError) as exc:
        message = " ".join(str(exc).split())
        print(f"mrvae: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except SystemExit as exc:  # --help and --print_config exit through argparse
        return int(exc.code or 0)
    command = args.command
    try:
        _set_threads(args[command])
    except ValueError as exc:
        print(f"mrvae: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return COMMANDS[command](args[command])
    except NonFiniteError as exc:
        print(f"mrvae: training stopped: {exc}", file=sys.stderr)
        return EXIT_NON_FINITE
    except TrainingInterrupted as exc:
        print(f"mrvae: {exc}; resume with: {resume_command(argv)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside a training step (evaluation, plots) or a second Ctrl-C
        resume = f"; resume with: {resume_command(argv)}" if command in RESUMABLE_COMMANDS else ""
        print(f"mrvae: SIGINT received: {command} stopped{resume}", file=sys.stderr)
        return 128 + signal.SIGINT
    except (ValueError, CheckpointError) as exc:
        print(f"mrvae: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # a full disk, a missing or unwritable path: the file and the problem, one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mrvae: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USER_ERROR


def resume_command(argv: list[str]) -> str:
    """The command line that resumes ``argv`` (``--resume true`` added unless it is there)."""
    words = ["mrvae"]
    skip = False
    for index, word in enumerate(argv):
        if skip:
            skip = False
        elif word == "--resume":
            skip = index + 1 < len(argv)
        elif not word.startswith("--resume="):
            words.append(word)
    words += ["--resume", "true"]
    return " ".join(shlex.quote(word) for word in words)


def _set_threads(args: Any) -> None:
    """torch's CPU threads from ``--threads``: a number >= 1, or ``auto`` (``training.runtime.auto_threads``)."""
    value = getattr(args, "threads", None)
    if value is None:
        return
    import torch

    from ..training.runtime import auto_threads

    if str(value) == "auto":
        model = getattr(args, "model", None)
        torch.set_num_threads(auto_threads(getattr(model, "arch", None)))
        return
    if not str(value).isdigit() or int(value) < 1:
        raise ValueError(f"--threads must be a whole number >= 1 or auto, got {value!r}")
    torch.set_num_threads(int(value))


def _print_config(args: Any) -> int:
    """``--print_config`` of run / train / baseline: the settings as the run will use them (per-architecture
    defaults filled in), as YAML that ``--config`` reads back."""
    import yaml

    from ..config import to_dict
    from .commands import run_config_from

    sub = args[args.command]
    values = to_dict(run_config_from(sub))
    extra = {key: sub[key] for key in ("out", "resume", "progress", "threads", "method", "beta") if key in sub}
    values.update({key: value.value if isinstance(value, Enum) else value for key, value in extra.items()})
    print(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), end="")
    return EXIT_OK
