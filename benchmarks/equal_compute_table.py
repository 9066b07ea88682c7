"""Markdown table of equal_compute.py JSON files: one row per (variant, steps, seed).

    python benchmarks/equal_compute_table.py benchmarks/results/equal_compute/*.json [--mean]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def rows(paths: list[Path]):
    for path in paths:
        data = json.loads(path.read_text())
        for key, run in data.get("runs", {}).items():
            yield data, run, path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--mean", action="store_true", help="also a row per (variant, steps) averaged over seeds")
    p.add_argument("--filter", default="", help="only variants containing this text")
    args = p.parse_args()
    seen = {}
    for data, run, path in rows(args.files):
        if args.filter and args.filter not in run["variant"]:
            continue
        seed = run["settings"]["train"]["seed"]
        seen[(data["arch"], run["variant"], run["steps_per_model"]["mrvae"], seed)] = run
    betas = None
    lines = []
    groups: dict = {}
    for (arch, variant, steps, seed), run in sorted(seen.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1], kv[0][3])):
        betas = run["betas"]
        g = run["gap_percent"]
        m, b = run["mrvae"], run["beta_vae"]
        le = run["lowest_neg_elbo"]
        iw = run["iwae_nll_beta1"]
        iws = "" if iw["mrvae"] is None else f" | {iw['mrvae']:.2f} / {iw['beta-vae']:.2f}"
        lines.append(f"| {arch} | {variant} | {steps} / {steps} | {seed} | " + " | ".join(f"{x:+.2f}" for x in g)
                     + f" | **{max(g):+.2f}** | {m[0]['rate']:.1f}→{m[-1]['rate']:.1f} ({b[0]['rate']:.1f}→{b[-1]['rate']:.1f})"
                     + f" | {m[0]['distortion']:.1f} ({b[0]['distortion']:.1f}) | {le['mrvae']:.2f} / {le['beta-vae']:.2f}"
                     + (iws or " | –") + f" | {run['wall_time_s']['mrvae_train']:.0f} |")
        groups.setdefault((arch, variant, steps), []).append(run)
    head = ("| arch | variant | steps MR / β-VAE | seed | " + " | ".join(f"gap β={b:g} %" for b in betas or [])
            + " | worst % | MR rate a→b (β-VAE) | MR D at a (β-VAE) | lowest −ELBO MR / β-VAE | IWAE NLL β=1 MR / β-VAE | MR train s |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    print("\n".join(lines))
    if args.mean:
        print()
        print("| arch | variant | steps | seeds | " + " | ".join(f"mean gap β={b:g} %" for b in betas or [])
              + " | mean worst % | max worst % | lowest −ELBO MR / β-VAE (mean) |")
        print("|" + "---|" * (8 + len(betas or [])))
        for (arch, variant, steps), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
            gaps = [statistics.mean(r["gap_percent"][i] for r in runs) for i in range(len(betas))]
            worst = [max(r["gap_percent"]) for r in runs]
            print(f"| {arch} | {variant} | {steps} | {len(runs)} | " + " | ".join(f"{x:+.2f}" for x in gaps)
                  + f" | {statistics.mean(worst):+.2f} | {max(worst):+.2f} | "
                  + f"{statistics.mean(r['lowest_neg_elbo']['mrvae'] for r in runs):.2f} / "
                  + f"{statistics.mean(r['lowest_neg_elbo']['beta-vae'] for r in runs):.2f} |")


if __name__ == "__main__" and "--cross" not in __import__("sys").argv:
    main()


def cross(paths: list[Path], cache: Path) -> None:
    """MR-VAE runs against cached β-VAEs trained for *other* step counts: the compute ratio
    (MR-VAE steps / β-VAE steps per model) at which the MR-VAE's gaps close."""
    base: dict = {}
    for f in cache.glob("*.json"):
        rec = json.loads(f.read_text())
        k = rec["key"]
        base[(k["data"], k["arch"], k["seed"], k["steps"], round(k["beta"], 6))] = rec["row"]["beta_objective"]
    print("| arch | variant | seed | MR steps | β-VAE steps | ratio | " + " | ".join(
        f"gap β={b:g} %" for b in (0.01, 0.1, 1, 10)) + " | worst % |")
    print("|" + "---|" * 11)
    seen = set()
    for data, run, _ in rows(paths):
        seed = run["settings"]["train"]["seed"]
        s_mr = run["steps_per_model"]["mrvae"]
        key = (data["arch"], run["variant"], seed, s_mr)
        if key in seen:
            continue
        seen.add(key)
        steps_bv = sorted({k[3] for k in base if k[0] == data["data"] and k[1] == data["arch"] and k[2] == seed})
        for s_bv in steps_bv:
            gaps = []
            for beta, m in zip(run["betas"], run["mrvae"]):
                ref = base.get((data["data"], data["arch"], seed, s_bv, round(beta, 6)))
                gaps.append(None if ref is None else 100.0 * (m["beta_objective"] - ref) / abs(ref))
            if any(g is None for g in gaps):
                continue
            print(f"| {data['arch']} | {run['variant']} | {seed} | {s_mr} | {s_bv} | {s_mr / s_bv:.2f} | "
                  + " | ".join(f"{g:+.2f}" for g in gaps) + f" | {max(gaps):+.2f} |")


if __name__ == "__main__" and "--cross" in __import__("sys").argv:
    import sys as _sys
    _args = [a for a in _sys.argv[1:] if a != "--cross"]
    cross([Path(a) for a in _args], Path(__file__).resolve().parent / "results" / "equal_compute" / "baselines")
