"""Equal compute (issue 14): one MR-VAE against β-VAEs trained at each β, with the SAME number of
training steps per model, at several training lengths and seeds.

Everything goes through the library's public pieces, exactly as ``mrvae run`` uses them: a
``RunConfig`` (the CLI's settings, printed as the equivalent ``mrvae run`` command), ``build_model``,
``train.fit`` (``pipeline.method_train_config`` gives each β-VAE its fixed-β training config with the
run's learning-rate warm-up), ``evaluate.evaluate_at`` and ``evaluate.iwae_nll`` on the test split.

β-VAE baselines do not depend on the MR-VAE's recipe, so each one is cached (one JSON per data set,
architecture, steps, seed, β and baseline settings) under ``--cache`` and reused by every variant.
Only the MR-VAE is retrained per ``--variant`` (a named set of extra settings, see ``VARIANTS``;
``--set model.key=value`` adds ad-hoc ones).

Printed per (steps, seed): R, D, D + βR of both methods at each β, the gap
(MR-VAE − β-VAE)/β-VAE, the worst gap, each method's lowest −ELBO (= R + D, over the evaluated βs),
IWAE NLL at β = 1 (``--iwae-samples`` > 0), and the rate span over [a, b] (rate at the lowest and the
highest β), with each method's steps per model next to every comparison. JSON goes to ``--json``.

    python benchmarks/equal_compute.py --arch mlp --steps 1800 --seeds 0 --variant default
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mrvae.config import Method, RunConfig, from_dict, to_dict
from mrvae.data import load_data
from mrvae.data.base import ArrayDataset
from mrvae.evaluation.evaluate import evaluate_at, iwae_nll
from mrvae.models.registry import build_model
from mrvae.runs.methods import method_train_config
from mrvae.training.loop import fit

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "equal_compute"

#: Per-architecture base settings shared by both methods (the issue's setups).
ARCH_BASE: dict[str, dict[str, Any]] = {
    "mlp": {"model": {"arch": "mlp"}, "train": {"batch_size": 128}},
    "resnet": {"model": {"arch": "resnet", "width": 0.25, "latent_dim": 32}, "train": {"batch_size": 64}},
}

#: Hypotheses: extra settings for the MR-VAE only (``method`` picks mrvae or yoto).
#: Settings absent from a variant keep the code's defaults (``default``), so when the defaults change,
#: ``default`` follows and ``paper-eqn7`` / ``f32ce91`` pin the older recipes.
F32CE91 = {"model": {"gate_scale": 2.0, "encoder_gate": "sigmoid", "decoder_gate": "sigmoid",
                     "gate_input_scale": 1.0, "gate_init": "paper"},
           "train": {"log_beta_tilt": 0.0, "log_beta_ends": 0.0, "beta_sampling": "per-example"}}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "f32ce91": F32CE91,
    "paper-eqn7": {"model": {**F32CE91["model"], "encoder_gate": "sigmoid", "decoder_gate": "sqrt",
                             "gate_scale": 1.0}},
    # gate function / scale / input magnitude / init
    "scale4": {"model": {**F32CE91["model"], "gate_scale": 4.0}},
    "open-init": {"model": {**F32CE91["model"], "gate_init": "open"}},
    "u-x4": {"model": {**F32CE91["model"], "gate_input_scale": 4.0}},
    # richer conditioning
    "film16": {"method": "yoto", "model": {**F32CE91["model"], "film_hidden": 16}},
    "film64": {"method": "yoto", "model": {**F32CE91["model"], "film_hidden": 64}},
    "s4-ux2": {"model": {**F32CE91["model"], "gate_scale": 4.0, "gate_input_scale": 2.0}},
    # the tuned recipes: larger gate scale (and gate input), β density heavier at the low end and both ends
    "tuned": {"model": {**F32CE91["model"], "gate_scale": 4.0, "gate_input_scale": 2.0},
              "train": {"log_beta_tilt": 1.0, "log_beta_ends": 1.0}},
    "tuned-s4": {"model": {**F32CE91["model"], "gate_scale": 4.0},
                 "train": {"log_beta_tilt": 1.0, "log_beta_ends": 1.0}},
    # optimisation
    "lr1e-3": {"model": F32CE91["model"], "train": {"lr": 1e-3}},
    "lr1e-2": {"model": F32CE91["model"], "train": {"lr": 1e-2}},
    "warmup100": {"model": F32CE91["model"], "train": {"warmup_steps": 100}},
    "per-batch": {"model": F32CE91["model"], "train": {"beta_sampling": "per-batch"}},
    "tilt-low": {"model": F32CE91["model"], "train": {"log_beta_tilt": 1.5}},
    "range-0.01-0.1": {"model": F32CE91["model"], "train": {"beta_low": 0.01, "beta_high": 0.1}},
    "range-0.01-1": {"model": F32CE91["model"], "train": {"beta_low": 0.01, "beta_high": 1.0}},
    "range-wide": {"model": F32CE91["model"], "train": {"beta_low": 0.001, "beta_high": 30.0}},
}

#: Variants of the study (docs/results.md §6) whose code was not kept, because none of them helped: they
#: were measured with this script at commit 04c0fc7 of the study's branch, and their JSON results are in
#: benchmarks/results/equal_compute/ (gated heads and output layer, additive log σ² shift, μ log-scale,
#: per-pixel logit shift, per-latent gate on z, magnitude-invariant gate input, low-rank β-dependent
#: weight change, a separate gate learning rate, stratified β).
NOT_KEPT = ("gate-io", "logvar-shift0", "logvar-shift", "logvar-mean-scale", "out-shift", "heads-out", "zgate",
            "zgate-heads", "zgate-heads-out", "u-mip", "lowrank8", "s4-lowrank8", "gate-lr10", "strat")


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in extra.items():
        if isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """``section.key=value`` (value as YAML) -> nested dict."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if section == "method":
            out["method"] = value
            continue
        out.setdefault(section, {})[name] = yaml.safe_load(value)
    return out


def variant_settings(name: str) -> dict[str, Any]:
    """A variant's settings: ``default`` = the code's defaults; every other variant is a change to the
    f32ce91 recipe (its model and train settings pinned), so it means the same after defaults change."""
    if name == "default":
        return {}
    return merge(F32CE91, VARIANTS[name])


def run_config(arch: str, steps: int, seed: int, betas: list[float], extra: dict[str, Any], data: str,
               eval_seed: int) -> RunConfig:
    spec = merge(ARCH_BASE[arch], extra)
    method = spec.pop("method", "mrvae")
    values = {"data": {"name": data}, "model": spec.get("model", {}),
              "train": {"steps": steps, "seed": seed, "device": "cpu", "log_every": max(1, steps),
                        "checkpoint_every": steps, **spec.get("train", {})},
              "eval": {"num_betas": len(betas), "iwae_samples": 0, "seed": eval_seed},
              "baseline": {"betas": betas, "steps": steps},
              "methods": [method] if method != "beta-vae" else ["beta-vae"]}
    return from_dict(RunConfig, values)


def cli_command(config: RunConfig, method: str) -> str:
    """The ``mrvae run`` command line that trains ``method`` with these settings (equal steps)."""
    default = to_dict(RunConfig())
    mine = to_dict(config)
    parts = ["mrvae run"]
    for section in ("data", "model", "train", "baseline"):
        for key, value in mine[section].items():
            if key in ("device", "log_every", "checkpoint_every"):
                continue
            if value != default[section].get(key):
                text = json.dumps(value) if isinstance(value, list) else str(value)
                parts.append(f"--{section}.{key} {text!r}" if isinstance(value, list) else f"--{section}.{key} {text}")
    parts.append(f"--methods {method} --threads 1")
    return " ".join(parts)


def evaluate(model, test, betas, eval_cfg, iwae_samples, iwae_test) -> dict[str, Any]:
    rows = [evaluate_at(model, test, b, eval_cfg) for b in betas]
    iwae = None
    if iwae_samples > 0 and model.beta_range.contains(1.0):
        iwae = iwae_nll(model, iwae_test, 1.0, iwae_samples, eval_cfg)
    return {"betas": betas, "rows": rows, "iwae_nll_beta1": iwae}


def subset(dataset: ArrayDataset, count: int) -> ArrayDataset:
    if count <= 0 or count >= len(dataset):
        return dataset
    labels = dataset.labels[:count] if dataset.labels is not None else None
    return ArrayDataset(dataset.data[:count], labels)


def baseline_key(config: RunConfig, beta: float, iwae: int, iwae_n: int) -> dict[str, Any]:
    t = method_train_config(config, Method.BETA_VAE, beta)
    m = config.model
    return {"data": config.data.name, "arch": m.arch, "latent_dim": m.latent_dim, "hidden": list(m.hidden),
            "width": m.width, "steps": t.steps, "batch_size": t.batch_size, "lr": t.lr,
            "warmup_steps": t.warmup_steps, "kl_warmup": t.kl_warmup, "seed": t.seed, "beta": beta,
            "eval_seed": config.eval.seed, "iwae_samples": iwae if beta == 1.0 else 0,
            "iwae_examples": iwae_n if beta == 1.0 else 0}


def train_beta_vae(config: RunConfig, data, beta: float, cache: Path, iwae: int, iwae_n: int,
                   log) -> dict[str, Any]:
    key = baseline_key(config, beta, iwae, iwae_n)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    path = cache / f"{key['data']}_{key['arch']}_s{key['steps']}_seed{key['seed']}_b{beta:g}_{digest}.json"
    if path.exists():
        return json.loads(path.read_text())
    train = method_train_config(config, Method.BETA_VAE, beta)
    torch.manual_seed(train.seed)
    model = build_model(config.model, data.info, "none", len(data.train), train.beta_range)  # seeded init
    result = fit(model, data, train)
    t0 = time.perf_counter()
    ev = evaluate(result.model, data.test, [beta], config.eval, key["iwae_samples"],
                  subset(data.test, iwae_n))
    record = {"key": key, "row": ev["rows"][0], "iwae_nll_beta1": ev["iwae_nll_beta1"],
              "train_wall_time_s": round(result.wall_time_s, 2), "eval_wall_time_s": round(time.perf_counter() - t0, 2),
              "num_parameters": sum(p.numel() for p in model.parameters()),
              "command": cli_command(config, "beta-vae")}
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    log(f"  β-VAE β={beta:g} steps={train.steps} seed={train.seed}: R {record['row']['rate']:.2f} "
        f"D {record['row']['distortion']:.2f} D+βR {record['row']['beta_objective']:.2f} "
        f"({record['train_wall_time_s']:.0f} s)")
    return record


def train_multi_rate(config: RunConfig, data, betas, iwae: int, iwae_n: int) -> dict[str, Any]:
    method = config.methods[0]
    train = method_train_config(config, method)
    torch.manual_seed(train.seed)
    model = build_model(config.model, data.info, method.conditioning, len(data.train), train.beta_range)
    result = fit(model, data, train)
    t0 = time.perf_counter()
    ev = evaluate(result.model, data.test, betas, config.eval, iwae, subset(data.test, iwae_n))
    return {**ev, "train_wall_time_s": round(result.wall_time_s, 2),
            "eval_wall_time_s": round(time.perf_counter() - t0, 2),
            "num_parameters": sum(p.numel() for p in model.parameters()), "method": method.value,
            "command": cli_command(config, method.value)}


def compare(mr: dict[str, Any], bv: list[dict[str, Any]], betas: list[float], steps: int) -> dict[str, Any]:
    gaps = [100.0 * (m["beta_objective"] - b["row"]["beta_objective"]) / abs(b["row"]["beta_objective"])
            for m, b in zip(mr["rows"], bv)]
    iwae_bv = next((b["iwae_nll_beta1"] for b, beta in zip(bv, betas) if beta == 1.0), None)
    return {
        "betas": betas, "steps_per_model": {"mrvae": steps, "beta-vae": steps},
        "mrvae": [{k: r[k] for k in ("rate", "distortion", "beta_objective", "neg_elbo", "active_units")}
                  for r in mr["rows"]],
        "beta_vae": [{k: b["row"][k] for k in ("rate", "distortion", "beta_objective", "neg_elbo", "active_units")}
                     for b in bv],
        "gap_percent": gaps, "worst_gap_percent": max(gaps),
        "lowest_neg_elbo": {"mrvae": min(r["neg_elbo"] for r in mr["rows"]),
                            "beta-vae": min(b["row"]["neg_elbo"] for b in bv)},
        "iwae_nll_beta1": {"mrvae": mr["iwae_nll_beta1"], "beta-vae": iwae_bv},
        "rate_span": {"mrvae": [mr["rows"][0]["rate"], mr["rows"][-1]["rate"]],
                      "beta-vae": [bv[0]["row"]["rate"], bv[-1]["row"]["rate"]]},
        "wall_time_s": {"mrvae_train": mr["train_wall_time_s"],
                        "beta_vae_train_total": round(sum(b["train_wall_time_s"] for b in bv), 2)},
        "mrvae_command": mr["command"], "num_parameters": {"mrvae": mr["num_parameters"],
                                                           "beta-vae": bv[0]["num_parameters"]},
    }


def format_block(c: dict[str, Any], label: str) -> str:
    s = c["steps_per_model"]
    lines = [f"== {label}: steps per model MR-VAE {s['mrvae']} | β-VAE {s['beta-vae']} (×{len(c['betas'])} βs)",
             f"{'beta':>7} {'MR R':>8} {'MR D':>8} {'MR D+bR':>9} {'bV R':>8} {'bV D':>8} {'bV D+bR':>9} {'gap':>8}"]
    for beta, m, b, g in zip(c["betas"], c["mrvae"], c["beta_vae"], c["gap_percent"]):
        lines.append(f"{beta:>7g} {m['rate']:>8.2f} {m['distortion']:>8.2f} {m['beta_objective']:>9.2f} "
                     f"{b['rate']:>8.2f} {b['distortion']:>8.2f} {b['beta_objective']:>9.2f} {g:>+7.2f}%")
    le, iw, rs = c["lowest_neg_elbo"], c["iwae_nll_beta1"], c["rate_span"]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    lines.append(f"worst gap {c['worst_gap_percent']:+.2f}% | lowest -ELBO MR {le['mrvae']:.2f} vs β-VAE "
                 f"{le['beta-vae']:.2f} | IWAE NLL(β=1) MR {fmt(iw['mrvae'])} vs β-VAE {fmt(iw['beta-vae'])}")
    lines.append(f"rate span over [{c['betas'][0]:g}, {c['betas'][-1]:g}]: MR {rs['mrvae'][0]:.1f} -> "
                 f"{rs['mrvae'][1]:.1f} | β-VAE {rs['beta-vae'][0]:.1f} -> {rs['beta-vae'][1]:.1f} | train s: "
                 f"MR {c['wall_time_s']['mrvae_train']:.0f}, β-VAEs {c['wall_time_s']['beta_vae_train_total']:.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--arch", choices=sorted(ARCH_BASE), default="mlp")
    p.add_argument("--steps", type=int, nargs="+", default=[1800])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--betas", type=float, nargs="+", default=[0.01, 0.1, 1.0, 10.0])
    p.add_argument("--variant", nargs="+", default=["default"], help=f"one or more of {', '.join(VARIANTS)}")
    p.add_argument("--set", nargs="*", default=[], help="extra MR-VAE settings section.key=value (all variants)")
    p.add_argument("--tag", default="", help="name suffix for ad-hoc --set runs")
    p.add_argument("--iwae-samples", type=int, default=0)
    p.add_argument("--iwae-examples", type=int, default=2000, help="test examples for the IWAE NLL (0 = all)")
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--baselines-only", action="store_true")
    p.add_argument("--cache", type=Path, default=RESULTS / "baselines")
    p.add_argument("--json", type=Path, default=None, help="output JSON (default: results/equal_compute/<name>.json)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    betas = sorted(args.betas)
    log = lambda s: print(s, flush=True)  # noqa: E731
    data = load_data(args.data, None, 0)
    extra_set = parse_set(args.set)
    results: dict[str, Any] = {"data": args.data, "arch": args.arch, "betas": betas, "seeds": args.seeds,
                               "steps": args.steps, "set": extra_set, "runs": {},
                               "machine": {"platform": platform.platform(), "threads": args.threads,
                                           "torch": torch.__version__}}
    for steps in args.steps:
        for seed in args.seeds:
            base_cfg = run_config(args.arch, steps, seed, betas, {}, args.data, args.eval_seed)
            bv = [train_beta_vae(base_cfg, data, b, args.cache, args.iwae_samples, args.iwae_examples, log)
                  for b in betas]
            if args.baselines_only:
                continue
            for variant in args.variant:
                name = variant + (f"+{args.tag}" if args.tag else "")
                cfg = run_config(args.arch, steps, seed, betas, merge(variant_settings(variant), extra_set), args.data,
                                 args.eval_seed)
                t0 = time.perf_counter()
                mr = train_multi_rate(cfg, data, betas, args.iwae_samples, args.iwae_examples)
                c = compare(mr, bv, betas, steps)
                c["variant"] = name
                c["settings"] = {"model": to_dict(cfg.model), "train": to_dict(cfg.train)}
                c["wall_time_s"]["mrvae_train_eval"] = round(time.perf_counter() - t0, 1)
                results["runs"][f"{name}|{steps}|{seed}"] = c
                log(format_block(c, f"{args.data} {args.arch} variant={name} seed={seed}"))
                save(results, args)
    if not args.baselines_only:
        log(f"wrote {save(results, args)}")
    return 0


def save(results: dict[str, Any], args: argparse.Namespace) -> Path:
    name = "_".join(args.variant) + (f"+{args.tag}" if args.tag else "")
    if len(name) > 60:
        name = name[:50] + "_" + hashlib.sha1(name.encode()).hexdigest()[:6]
    path = args.json or RESULTS / (f"{args.data}_{args.arch}_{name}_s{'-'.join(map(str, args.steps))}"
                                   f"_seed{'-'.join(map(str, args.seeds))}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    return path


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
