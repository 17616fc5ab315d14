"""The tables and the verdict of the noise study, generated from its results CSV only.

    python benchmarks/ablation_noise_report.py --write-docs          # CPU study -> docs/benchmarks.md
    python benchmarks/ablation_noise_report.py --scale gpu --write-docs

(``benchmarks/ablation.py --preset noise --stage report --write-docs`` does the same.)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

if str(Path(__file__).parent) not in sys.path:  # the sibling modules when loaded by file path
    sys.path.insert(0, str(Path(__file__).parent))

from ablation_noise import REF, ROWS  # noqa: E402
from ablation_results import read_csv  # noqa: E402
from ablation_stats import mean_std, min_resolvable, paired_diff  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: the docs subsection whose body ``--write-docs`` replaces (with `` (cpu)`` / `` (gpu)``)
DOCS_HEADER = "### Noise study: results"
SEEDS_PLANNED = 5
DSL, CONTROL = "dsl", "twoview"


def _ratio_key(test: str) -> float:
    return float(test.removeprefix("ratio").split("-")[0]) if test.startswith("ratio") else 0.0


def stage1_text(rows: list[dict]) -> list[str]:
    s1 = [r for r in rows if r["part"] == "stage1"]
    if not s1:
        return ["Stage 1: not finished yet."]
    curve: dict[int, dict[str, float]] = {}
    for r in s1:
        curve.setdefault(r["iterations"], {})[r["iou"]] = r["AP"]
    r0 = s1[0]
    segm = " | ".join(f"{curve[k].get('segm', float('nan')):.1f}" for k in sorted(curve))
    box = " | ".join(f"{curve[k].get('bbox', float('nan')):.1f}" for k in sorted(curve))
    out = [
        f"Stage 1 (plain model from scratch on clean RAW renderings, batch {r0['batch']}, lr {r0['lr']:g}, "
        f"{r0['note']}, {r0['train_seconds'] / 60:.0f} min, checkpoint `{r0['stage1_sha256']}`): clean-RAW "
        "val AP by iteration:",
        "",
        "| iteration | " + " | ".join(str(k) for k in sorted(curve)) + " |",
        "|---|" + "---|" * len(curve),
        f"| segm AP | {segm} |",
        f"| box AP | {box} |",
    ]
    return out


def pilot_text(rows: list[dict], min_cost: float = 0.4) -> tuple[list[str], str | None]:
    pilot = [r for r in rows if r["part"] == "pilot"]
    if not pilot:
        return ["Pilot: not run yet."], None
    tests = sorted({r["test"] for r in pilot}, key=_ratio_key)
    get = {(r["test"], r["iou"]): r for r in pilot}
    out = [
        f"Pilot (the plain row, seed 0: {pilot[0]['iterations']} iterations x batch {pilot[0]['batch']}; "
        "noise cost = 1 - AP(dark) / AP(clean)):",
        "",
        "| test set | segm AP | box AP | noise cost, segm | noise cost, box | |",
        "|---|---|---|---|---|---|",
    ]
    for t in tests:
        s, b = get[(t, "segm")], get[(t, "bbox")]
        cost = "" if t == "clean" else f"{100 * s['noise_cost']:.0f} % | {100 * b['noise_cost']:.0f} %"
        out.append(f"| {t} | {s['AP']:.1f} | {b['AP']:.1f} | {cost or ' | '} | {s['note']} |")
    primary = next((r["test"] for r in pilot if r["note"].startswith("primary")), None)
    out.append("")
    if primary is None:
        out.append(
            "**The pilot fails**: no candidate test set costs the fine-tuned plain model >= "
            f"{min_cost:.0%} of its clean AP; stage 2 was not run on it."
        )
    elif get[(primary, "segm")]["note"] != "primary":
        out.append(
            f"The primary dark test set `{primary}` was chosen by hand (`--primary`), not by the pilot."
        )
    else:
        cost = get[(primary, "segm")]["noise_cost"]
        out.append(
            f"**Hard enough**: on `{primary}` the noise costs the fine-tuned plain model "
            f"{100 * cost:.0f} % of its clean segm AP (>= {100 * min_cost:.0f} %): it is the primary "
            "dark test set of stage 2."
        )
    return out, primary


def _per_seed(runs: list[dict], variant: str, test: str, iou: str = "segm") -> dict[int, float]:
    return {
        r["seed"]: r["AP"]
        for r in runs
        if r["variant"] == variant and r["test"] == test and r["iou"] == iou and r["status"] == "ok"
    }


def _cell(vals: dict[int, float]) -> str:
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{next(iter(vals.values())):.1f} (1 seed)"
    m, s = mean_std(list(vals.values()))
    return f"{m:.1f} ± {s:.1f}"


def _pair_cell(a: dict[int, float], b: dict[int, float]) -> str:
    """Paired difference ``a - b``: mean [95 % interval], or the one difference when one seed pairs."""
    d = paired_diff(a, b)
    if d is not None:
        return f"{d[0]:+.1f} [{d[0] - d[1]:+.1f}, {d[0] + d[1]:+.1f}]"
    common = sorted(set(a) & set(b))
    return f"{a[common[0]] - b[common[0]]:+.1f} (1 seed)" if common else "-"


def stage2_text(rows: list[dict], primary: str | None, planned: int) -> list[str]:
    runs = [r for r in rows if r["part"] == "stage2"]
    if not runs or primary is None:
        return ["Stage 2: no finished run yet.", "", f"**Verdict: pending: 0 of {planned} runs.**"]
    tests = sorted({r["test"] for r in runs}, key=_ratio_key)
    finished = {(r["variant"], r["seed"]): r for r in runs if r["test"] == primary and r["iou"] == "segm"}
    r0 = next(iter(finished.values()))
    out = [
        f"Stage 2: {r0['iterations']} iterations x batch {r0['batch']} per run, lr {r0['lr']:g}; "
        f"{len(finished)} of {planned} runs finished. Segm AP x100, mean ± std over the seeds that finished:",
        "",
        "| row | seeds ok | diverged | "
        + " | ".join(tests)
        + " | max grad norm | DSL share of the gradient |",
        "|---|---|---|" + "---|" * (len(tests) + 2),
    ]
    for v, (label, _) in ROWS.items():
        mine = [r for (vv, _), r in finished.items() if vv == v]
        if not mine:
            continue
        ok = [r for r in mine if r["status"] == "ok"]
        div = sorted(r["seed"] for r in mine if r["status"] == "diverged")
        gmax = max((r["grad_norm_max"] for r in mine if math.isfinite(r["grad_norm_max"])), default=math.nan)
        shares = [r["dsl_share"] for r in mine if not math.isnan(r["dsl_share"])]
        share = f"{statistics.median(shares):.2g}" if shares and v != "twoview" else "-"
        cells = [_cell(_per_seed(runs, v, t)) for t in tests]
        out.append(
            f"| {label} | {len(ok)} | {', '.join(map(str, div)) or '-'} | "
            + " | ".join(cells)
            + f" | {gmax:.3g} | {share} |"
        )
    out += [
        "",
        "Paired difference to plain (last row: +DSL to its two-view control; same seed = same stage-2 data "
        "order and noise stream), segm AP, mean [95 % t-interval], and the smallest effect the seeds could "
        "resolve (two-sided 5 % paired t-test, 80 % power, from the spread of the differences) on the "
        f"primary test set `{primary}`:",
        "",
        f"| row | {primary} | clean | resolvable on {primary} | verdict on {primary} |",
        "|---|---|---|---|---|",
    ]
    verdicts = []
    # every row against plain; and DSL against its control (two views, DSL weight 0): DSL's own effect
    pairs = [(v, REF, label) for v, (label, _) in ROWS.items() if v != REF]
    pairs.append((DSL, CONTROL, f"{ROWS[DSL][0]} vs {ROWS[CONTROL][0]}"))
    for v, ref, label in pairs:
        if not any(vv == v for vv, _ in finished) or not any(vv == ref for vv, _ in finished):
            continue
        cells = [_pair_cell(_per_seed(runs, v, t), _per_seed(runs, ref, t)) for t in (primary, "clean")]
        d = paired_diff(_per_seed(runs, v, primary), _per_seed(runs, ref, primary))
        if d is None:
            word, mde = "fewer than 2 paired seeds", "-"
        else:
            m, half, sd, n = d
            mde = f"{min_resolvable(sd, n):.1f} ({n} seeds)"
            word = "helps" if m - half > 0 else "hurts" if m + half < 0 else "no effect resolved"
        out.append(f"| {label} | {cells[0]} | {cells[1]} | {mde} | {word} |")
        verdicts.append((label, word, d))
    if not verdicts:
        out.append("| (no row with a paired plain run yet) | | | | |")
    out += ["", verdict_text(verdicts, len(finished), planned, primary)]
    return out


def verdict_text(verdicts: list, done: int, planned: int, primary: str) -> str:
    parts = []
    for label, word, d in verdicts:
        if d is None:
            parts.append(f"{label}: not enough seeds")
        else:
            res = "" if word != "no effect resolved" else f"; resolvable {min_resolvable(d[2], d[3]):.1f}"
            parts.append(f"{label}: {word} ({d[0]:+.1f} ± {d[1]:.1f} segm AP{res})")
    head = (
        f"**Verdict: pending: {done} of {planned} runs.** So far, on `{primary}`: "
        if done < planned
        else f"**Verdict ({planned} runs), on `{primary}`:** "
    )
    return head + ("; ".join(parts) if parts else "no paired comparison yet") + "."


def report(csv_path: Path, planned: int = len(ROWS) * SEEDS_PLANNED) -> str:
    rows = read_csv(csv_path)
    try:
        name = csv_path.relative_to(REPO)
    except ValueError:
        name = csv_path
    pilot, primary = pilot_text(rows)
    parts = [
        f"Results file: `{name}` (and `{Path(name).stem}_gradnorm.csv`: loss and gradient norm of every "
        "stage-2 iteration).",
        "",
        *stage1_text(rows),
        "",
        *pilot,
        "",
        *stage2_text(rows, primary, planned),
    ]
    return "\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="The noise study's tables from its CSV")
    p.add_argument("--scale", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--write-docs", action="store_true")
    p.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = p.parse_args(argv)
    csv_path = args.results or REPO / "benchmarks" / "results" / f"ablation_noise_{args.scale}.csv"
    text = report(csv_path)
    print(text)
    if args.write_docs:
        from ablation_docs import write_docs

        write_docs(args.docs, text, header=f"{DOCS_HEADER} ({args.scale})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
