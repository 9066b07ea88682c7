"""The ``mrvae`` argument parser (jsonargparse): subcommands, ``--config`` files, ``--print_config``."""

from __future__ import annotations

from jsonargparse import ArgumentParser
from jsonargparse.typing import register_type

from .. import config as _config  # noqa: F401  (defines the Choice enums the settings use)
from ..config import __version__
from ..beta import Choice
from ..config import Method, RunConfig

_REGISTERED = False


def _register_choice_types() -> None:
    """Let jsonargparse read and write every ``Choice`` enum of mrvae by value (``per-example``, ``beta-vae``)."""
    global _REGISTERED
    if not _REGISTERED:
        for choice in _all_choices():
            register_type(choice, serializer=lambda member: getattr(member, "value", member), deserializer=choice)
        _REGISTERED = True


def _all_choices() -> list[type[Choice]]:
    found, pending = [], list(Choice.__subclasses__())
    while pending:
        choice = pending.pop()
        found.append(choice)
        pending += choice.__subclasses__()
    return found


def _parser(description: str) -> ArgumentParser:
    """A subcommand's parser: whole flags only (``--train.step`` is not taken for ``--train.steps``)."""
    return ArgumentParser(description=description, exit_on_error=False, allow_abbrev=False)


def _add_threads(parser: ArgumentParser) -> None:
    parser.add_argument("--threads", type=str, default="auto",
                        help="CPU threads for torch: a number, or auto (one thread for the small models and on a "
                             "busy machine, where more threads only wait for each other; the idle cores for "
                             "convolutional models on a quiet machine).")


def _run_config_parser(description: str) -> ArgumentParser:
    parser = _parser(description)
    parser.add_argument("--config", action="config", help="A YAML file of settings, e.g. a run's config.yaml.")
    parser.add_class_arguments(RunConfig, None, as_group=False)
    parser.add_argument("--out", type=str | None, default=None,
                        help="The run folder to write (default: runs/DATA, named after data.name).")
    parser.add_argument("--resume", type=bool, default=False,
                        help="Continue the run in --out from its checkpoints, with the same settings.")
    parser.add_argument("--progress", type=bool | None, default=None,
                        help="Show tqdm bars (default: only when stderr is a terminal).")
    _add_threads(parser)
    _show_choices_by_value(parser)
    return parser


def _show_choices_by_value(parser: ArgumentParser) -> None:
    """Show every ``Choice`` setting as users type it: its values in lower case (``{paper,open}``), and
    its default as a value (``paper``; ``[mrvae, beta-vae]``), not as the enum's member names."""
    for action in parser._actions:
        hint = getattr(action, "_typehint", None)
        item = getattr(hint, "__args__", (None,))[0] if getattr(hint, "__origin__", None) is tuple else None
        choice = hint if isinstance(hint, type) and issubclass(hint, Choice) else item
        if not (isinstance(choice, type) and issubclass(choice, Choice)):
            continue
        values = ",".join(member.value for member in choice)
        if choice is hint:
            action.metavar = "{" + values + "}"
            action.default = _as_value(choice, action.default)
        else:
            action.metavar = "[{" + values + "},...]"
            action.default = [_as_value(choice, d) for d in action.default]


def _as_value(choice: type[Choice], default: object) -> object:
    if isinstance(default, str) and default in choice.__members__:
        return choice[default].value
    return default.value if isinstance(default, choice) else default


def _train_parser() -> ArgumentParser:
    parser = _run_config_parser("Train one method and write its checkpoint.")
    parser.add_argument("--method", type=Method, default=Method.MRVAE,
                        help="The method to train: mrvae, yoto or beta-vae.")
    parser.add_argument("--beta", type=float | None, default=None, help="The β of a beta-vae run.")
    _show_choices_by_value(parser)
    return parser


def _checkpoint_parser(description: str) -> ArgumentParser:
    parser = _parser(description)
    parser.add_argument("checkpoint", type=str, help="A checkpoint file, or a run folder (its mrvae.pt).")
    parser.add_argument("--device", type=str, default="cpu",
                        help="Where the model runs: cpu, cuda, cuda:N, mps or auto.")
    _add_threads(parser)
    return parser


def _add_overwrite(parser: ArgumentParser) -> None:
    parser.add_argument("--overwrite", type=bool, default=False,
                        help="Replace an existing output file (default: refuse, so nothing is lost).")


def _curve_parser() -> ArgumentParser:
    parser = _checkpoint_parser("Evaluate a trained MR-VAE/YOTO checkpoint on a β grid, or find the β of a target "
                                "rate or distortion.")
    parser.add_argument("--out", type=str | None, default=None,
                        help="curve JSON path (default: RUN-METHOD-curve.json in the current folder; with only a "
                             "target, no curve is evaluated or written unless --out is given)")
    _add_overwrite(parser)
    parser.add_argument("--num_betas", type=int | None, default=None,
                        help="How many log-spaced βs to evaluate (default: the run's eval.num_betas).")
    parser.add_argument("--iwae_samples", type=int | None, default=None,
                        help="Importance samples of the IWAE estimate (default: the run's; 0 skips it).")
    parser.add_argument("--target_rate", type=float | None, default=None,
                        help="Find the β whose rate is this many nats per example.")
    parser.add_argument("--target_distortion", type=float | None, default=None,
                        help="Find the β whose distortion is this many nats per example.")
    return parser


def _plot_parser() -> ArgumentParser:
    parser = _parser("Plot RD curves from curve JSON files or run folders; each run gets its own colour.")
    parser.add_argument("inputs", type=str, nargs="+", help="Curve JSON files and/or run folders.")
    parser.add_argument("--out", type=str, default="rd_curve.png", help="The PNG file to write.")
    parser.add_argument("--title", type=str, default="", help="A title for the figure.")
    _add_overwrite(parser)
    return parser


def _export_parser() -> ArgumentParser:
    parser = _checkpoint_parser("Fold the gates at one β into a plain model: safetensors + JSON.")
    parser.add_argument("--beta", type=float, help="The β to fold in, inside the model's training range.")
    parser.add_argument("--out", type=str, help="The folder to write model.safetensors and config.json to.")
    _add_overwrite(parser)
    return parser


def _sample_parser() -> ArgumentParser:
    parser = _parser("Decode prior samples of a trained model: an image grid at one β, a strip across βs (one row "
                     "per β, the same draws in every row), or sentences for text models.")
    parser.add_argument("model", type=str, help="A run folder (its mrvae.pt), a checkpoint file or an export folder.")
    parser.add_argument("--beta", type=float | None, default=None, help="One β: a grid of --n samples.")
    parser.add_argument("--betas", type=float, nargs="+", default=None,
                        help="Several βs, after the model: one row of --n samples per β.")
    parser.add_argument("--n", type=int | None, default=None,
                        help="Samples per β (default: 64 for a grid, 8 per row of a strip).")
    parser.add_argument("--out", type=str | None, default=None,
                        help="The PNG file to write (default: samples.png); text models print their sentences, "
                             "and also write them here when it is given.")
    parser.add_argument("--seed", type=int, default=0, help="The seed of the prior draws.")
    parser.add_argument("--device", type=str, default="cpu",
                        help="Where the model runs: cpu, cuda, cuda:N, mps or auto.")
    _add_threads(parser)
    _add_overwrite(parser)
    return parser


def _report_parser() -> ArgumentParser:
    parser = _parser("Write one self-contained HTML page of a run: curves, table, pictures.")
    parser.add_argument("run_dir", type=str, help="The run folder, written by mrvae run.")
    parser.add_argument("--out", type=str | None, default=None, help="The HTML file (default: RUN_DIR/report.html).")
    _add_overwrite(parser)
    return parser


_DATA_ACTIONS = (("list", "every data set and whether its files are present"),
                 ("check", "what a data set needs, present or missing, at the exact paths"),
                 ("download", "fetch a data set from its canonical location, checksums verified"))


def _add_data_actions(data: ArgumentParser) -> None:
    """``data list | check | download``; called once ``data`` is a subcommand (jsonargparse adds levels in order)."""
    actions = data.add_subcommands(dest="action")
    for action, text in _DATA_ACTIONS:
        action_parser = _parser(text[0].upper() + text[1:] + ".")
        if action != "list":
            action_parser.add_argument("name", type=str, help="The data set's name (see mrvae data list).")
        action_parser.add_argument("--root", type=str | None, default=None,
                                   help="The data root (default: $MRVAE_DATA, else ~/.cache/mrvae).")
        actions.add_subcommand(action, action_parser, help=text)


def build_parser() -> ArgumentParser:
    """The full ``mrvae`` parser with every subcommand."""
    _register_choice_types()
    parser = ArgumentParser(prog="mrvae", exit_on_error=False, allow_abbrev=False,
                            description="Multi-Rate VAEs: train once, get the whole rate-distortion curve.")
    parser.add_argument("--version", action="version", version=f"mrvae {__version__}")
    data = _parser("List, check and download the data sets.")
    subcommands = (
        ("run", _run_config_parser("Train an MR-VAE and a β-VAE sweep (and YOTO if asked), evaluate, plot "
                                   "and compare."), "train every method, write curves, plot and the per-β table"),
        ("train", _train_parser(), "train one model"),
        ("baseline", _run_config_parser("Train the β-VAE sweep and write its curve."), "train the β-VAE sweep"),
        ("curve", _curve_parser(), "evaluate a checkpoint over β"),
        ("plot", _plot_parser(), "draw RD curves"),
        ("export", _export_parser(), "export a plain model at one β"),
        ("report", _report_parser(), "write the HTML report of a run"),
        ("sample", _sample_parser(), "decode prior samples at one β or across βs"),
        ("data", data, "list, check or download data sets"),
    )
    sub = parser.add_subcommands(dest="command")
    for name, subparser, text in subcommands:
        sub.add_subcommand(name, subparser, help=text)
    _add_data_actions(data)
    return parser
