"""The ``mrvae`` argument parser (jsonargparse): subcommands, ``--config`` files, ``--print_config``."""

from __future__ import annotations

from jsonargparse import ArgumentParser
from jsonargparse.typing import register_type

from .. import config as _config  # noqa: F401  (defines the Choice enums the settings use)
from ..beta import Choice
from ..config import Method, RunConfig

_REGISTERED = False


def _register_choice_types() -> None:
    """Let jsonargparse read and write every ``Choice`` enum of mrvae by value (``per-example``, ``beta-vae``)."""
    global _REGISTERED
    if not _REGISTERED:
        for choice in _all_choices():
            register_type(choice, serializer=lambda member: member.value, deserializer=choice)
        _REGISTERED = True


def _all_choices() -> list[type[Choice]]:
    found, pending = [], list(Choice.__subclasses__())
    while pending:
        choice = pending.pop()
        found.append(choice)
        pending += choice.__subclasses__()
    return found


def _run_config_parser(description: str) -> ArgumentParser:
    parser = ArgumentParser(description=description, exit_on_error=False)
    parser.add_argument("--config", action="config", help="a YAML file of settings (e.g. a run's config.yaml)")
    parser.add_class_arguments(RunConfig, None, as_group=False)
    parser.add_argument("--out", type=str, default="runs/digits", help="the run directory to write")
    parser.add_argument("--resume", type=bool, default=False,
                        help="continue the run in --out from its checkpoints (same settings)")
    parser.add_argument("--progress", type=bool | None, default=None,
                        help="tqdm bars (default: only when stderr is a terminal)")
    parser.add_argument("--threads", type=int | None, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 is best for small models "
                             "and on a busy machine)")
    return parser


def _train_parser() -> ArgumentParser:
    parser = _run_config_parser("Train one method and write its checkpoint.")
    parser.add_argument("--method", type=Method, default=Method.MRVAE, help="mrvae, yoto or beta-vae")
    parser.add_argument("--beta", type=float | None, default=None, help="β of a beta-vae run")
    return parser


def _checkpoint_parser(description: str) -> ArgumentParser:
    parser = ArgumentParser(description=description, exit_on_error=False)
    parser.add_argument("checkpoint", type=str, help="a checkpoint file, or a run directory (uses mrvae.pt)")
    return parser


def _add_overwrite(parser: ArgumentParser) -> None:
    parser.add_argument("--overwrite", type=bool, default=False,
                        help="replace an existing output file (default: refuse, so nothing is lost)")


def _curve_parser() -> ArgumentParser:
    parser = _checkpoint_parser("Evaluate a trained MR-VAE/YOTO checkpoint on a β grid, or find the β of a target "
                                "rate or distortion.")
    parser.add_argument("--out", type=str | None, default=None,
                        help="curve JSON path (default: RUN-METHOD-curve.json in the current folder; with only a "
                             "target, no curve is evaluated or written unless --out is given)")
    _add_overwrite(parser)
    parser.add_argument("--num_betas", type=int | None, default=None)
    parser.add_argument("--iwae_samples", type=int | None, default=None)
    parser.add_argument("--target_rate", type=float | None, default=None,
                        help="also find the β whose rate is this many nats")
    parser.add_argument("--target_distortion", type=float | None, default=None,
                        help="also find the β whose distortion is this many nats")
    return parser


def _plot_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Plot RD curves from curve JSON files or a run directory.",
                            exit_on_error=False)
    parser.add_argument("inputs", type=str, nargs="+", help="curve JSON files and/or run directories")
    parser.add_argument("--out", type=str, default="rd_curve.png", help="PNG path (default: rd_curve.png)")
    parser.add_argument("--title", type=str, default="")
    _add_overwrite(parser)
    return parser


def _export_parser() -> ArgumentParser:
    parser = _checkpoint_parser("Fold the gates at one β into a plain model: safetensors + JSON.")
    parser.add_argument("--beta", type=float, help="the β to fold in (inside the model's training range)")
    parser.add_argument("--out", type=str, help="the folder to write model.safetensors and config.json to")
    _add_overwrite(parser)
    return parser


def _report_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Write one self-contained HTML page of a run: curves, table, pictures.",
                            exit_on_error=False)
    parser.add_argument("run_dir", type=str, help="the run directory (written by mrvae run)")
    parser.add_argument("--out", type=str | None, default=None, help="HTML path (default: RUN_DIR/report.html)")
    _add_overwrite(parser)
    return parser


_DATA_ACTIONS = (("list", "every data set and whether its files are present"),
                 ("check", "what a data set needs, present or missing, at the exact paths"),
                 ("download", "fetch a data set from its canonical location, checksums verified"))


def _add_data_actions(data: ArgumentParser) -> None:
    """``data list | check | download``; called once ``data`` is a subcommand (jsonargparse adds levels in order)."""
    actions = data.add_subcommands(dest="action")
    for action, text in _DATA_ACTIONS:
        action_parser = ArgumentParser(description=text, exit_on_error=False)
        if action != "list":
            action_parser.add_argument("name", type=str)
        action_parser.add_argument("--root", type=str | None, default=None,
                                   help="data root (default: $MRVAE_DATA, else ~/.cache/mrvae)")
        actions.add_subcommand(action, action_parser, help=text)


def build_parser() -> ArgumentParser:
    """The full ``mrvae`` parser with every subcommand."""
    _register_choice_types()
    parser = ArgumentParser(prog="mrvae", exit_on_error=False,
                            description="Multi-Rate VAEs: train once, get the whole rate-distortion curve.")
    data = ArgumentParser(description="List, check and download the data sets.", exit_on_error=False)
    subcommands = (
        ("run", _run_config_parser("Train an MR-VAE and a β-VAE sweep (and YOTO if asked), evaluate, plot "
                                   "and compare."), "train every method, write curves, plot and the per-β table"),
        ("train", _train_parser(), "train one model"),
        ("baseline", _run_config_parser("Train the β-VAE sweep and write its curve."), "train the β-VAE sweep"),
        ("curve", _curve_parser(), "evaluate a checkpoint over β"),
        ("plot", _plot_parser(), "draw RD curves"),
        ("export", _export_parser(), "export a plain model at one β"),
        ("report", _report_parser(), "write the HTML report of a run"),
        ("data", data, "list, check or download data sets"),
    )
    sub = parser.add_subcommands(dest="command")
    for name, subparser, text in subcommands:
        sub.add_subcommand(name, subparser, help=text)
    _add_data_actions(data)
    return parser
