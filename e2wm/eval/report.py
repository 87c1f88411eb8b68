"""`e2wm report RUN_DIR... --out DIR`: several `e2wm eval` runs side by side, in the layout of E2WM's
Table 2 (suites as rows, runs as columns, the base run first, perplexity last), E2WM's average
relative improvement of each run over the base run, and a PNG bar chart per suite group."""
from __future__ import annotations

import io
import math
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import input_dir, make_dir, output_dir, read_json, write_atomic
from e2wm.eval.harness import headline

GROUPS = {"multiple choice": "mc", "generation": "gen"}


def _load(run: str) -> tuple[str, dict]:
    """(name, results) of an `e2wm eval` output directory, its results.json checked for what the
    report reads: each suite's format and a finite headline number."""
    path = input_dir(run, "eval run directory") / "results.json"
    if not path.is_file():
        raise E2WMError(f"{run}: no results.json (is it an `e2wm eval --out` directory?)")
    r = read_json(path, "eval results file", inside=run)
    if not isinstance(r, dict) or not isinstance(r.get("suites"), dict) or not r["suites"]:
        raise E2WMError(f"{path}: not an `e2wm eval` results file (no suites)")
    for name, s in r["suites"].items():
        try:
            value = headline(s)[1] if s.get("format") in GROUPS.values() else None
        except (KeyError, TypeError, AttributeError):
            value = None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise E2WMError(f"{path}: suites.{name}: expected a format (mc or gen) and a finite headline "
                            f"metric")
    ppl = r.get("perplexity")
    if ppl is not None and not (isinstance(ppl, dict) and isinstance(ppl.get("ppl"), (int, float))):
        raise E2WMError(f"{path}: perplexity: expected a mapping with a number 'ppl'")
    return Path(run).resolve().name, r


def relative_improvement(base: dict, run: dict) -> float | None:
    """Mean over the suites both runs scored (base value > 0) of (run - base) / base."""
    gains = [(headline(run["suites"][n])[1] - b) / b for n, s in base["suites"].items()
             if n in run["suites"] and (b := headline(s)[1]) > 0]
    return sum(gains) / len(gains) if gains else None


def report(runs: list[str], out: str | Path) -> Path:
    if not runs:
        raise E2WMError("report: name at least one run directory")
    out = output_dir(out, "--out", ours=("report.md",))
    loaded = [_load(r) for r in runs]
    names = [n for n, _ in loaded]
    if len(set(names)) != len(names):
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    base = loaded[0][1]
    suites = list(dict.fromkeys(s for _, r in loaded for s in r["suites"]))
    lines = ["# e2wm report", "", f"Base run: {names[0]}. Each cell is the suite's headline metric.", "",
             "| suite | metric | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for s in suites:
        first = next(r["suites"][s] for _, r in loaded if s in r["suites"])
        cells = [f"{headline(r['suites'][s])[1]:.4f}" if s in r["suites"] else "" for _, r in loaded]
        lines.append(f"| {s} | {headline(first)[0]} | " + " | ".join(cells) + " |")
    if any("perplexity" in r for _, r in loaded):
        cells = [f"{r['perplexity']['ppl']:.3f}" if "perplexity" in r else "" for _, r in loaded]
        lines.append("| perplexity (lower is better) | e^NLL | " + " | ".join(cells) + " |")
    gains = [relative_improvement(base, r) for _, r in loaded[1:]]
    lines += ["", "Average relative improvement over the base run (E2WM's summary figure): "
              + ", ".join(f"{n} {g:+.2%}" if g is not None else f"{n} n/a" for n, g in zip(names[1:], gains))
              if gains else "", ""]
    make_dir(out)
    for group, kind in GROUPS.items():
        members = [s for s in suites if next(r["suites"][s] for _, r in loaded if s in r["suites"])["format"] == kind]
        if members:
            _chart(out / f"{kind}.png", group, members, names, loaded)
            lines.append(f"![{group}]({kind}.png)")
    return write_atomic(out / "report.md", "\n".join(lines) + "\n")


def _chart(path: Path, title: str, suites: list[str], names: list[str], loaded) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(suites)), 4))
    for k, (name, (_, r)) in enumerate(zip(names, loaded)):
        values = [headline(r["suites"][s])[1] if s in r["suites"] else 0.0 for s in suites]
        ax.bar([i + k * width for i in range(len(suites))], values, width, label=name)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(suites))], suites, rotation=30, ha="right")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
