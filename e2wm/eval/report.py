"""`e2wm report RUN_DIR... --out DIR`: several `e2wm eval` runs side by side, in the layout of E2WM's
Table 2 (suites as rows, runs as columns, the base run first, perplexity last), E2WM's average
relative improvement of each run over the base run, and a PNG bar chart per suite group."""
from __future__ import annotations

import io
import math
import reprlib
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import input_dir, make_dir, output_dir, read_json, write_atomic
from e2wm.eval.harness import headline
from e2wm.data.eval_format import METRICS, NORMS

GROUPS = {"multiple choice": "mc", "generation": "gen"}
SCORES = ("accuracy", "exact_match", "lcs", "rouge1", "rouge2", "rougeL")  # each a fraction in [0, 1]


def _load(run: str) -> tuple[str, dict]:
    """(name, results) of an `e2wm eval` output directory, its results.json checked for everything the
    report reads (see `_check`)."""
    path = input_dir(run, "eval run directory") / "results.json"
    if not path.is_file():
        raise E2WMError(f"{run}: no results.json (is it an `e2wm eval --out` directory?)")
    r = read_json(path, "eval results file", inside=run)
    if not isinstance(r, dict) or not isinstance(r.get("suites"), dict) or not r["suites"]:
        raise E2WMError(f"{path}: not an `e2wm eval` results file (no suites)")
    try:
        _check(r)
    except E2WMError as e:
        raise E2WMError(f"{path}: {e}") from None
    return Path(run).resolve().name, r


def _number(d: dict, key: str, where: str, low: float = 0.0, high: float = 1.0, low_open: bool = False) -> None:
    """d[key] is a finite number (a JSON bool is none) in [low, high], or above `low` with `low_open`."""
    v = d.get(key)
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            or not (low < v if low_open else low <= v) or not v <= high):
        what = (f"a finite number {'>' if low_open else '>='} {low:g}" if high == math.inf
                else f"a number in [{low:g}, {high:g}]")
        raise E2WMError(f"{where}.{key}: expected {what}, got {reprlib.repr(v)}")


def _count(d: dict, key: str, where: str) -> None:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise E2WMError(f"{where}.{key}: expected a count (an int >= 0), got {reprlib.repr(v)}")


def _check(r: dict) -> None:
    """Every suite's format, n and metrics, and the perplexity, are what `e2wm eval` writes: scores are
    finite numbers in [0, 1], n a count, perplexity a finite positive number."""
    for name, s in r["suites"].items():
        where = f"suites.{name}"
        if not isinstance(s, dict):
            raise E2WMError(f"{where}: expected a mapping of a suite's results, got {reprlib.repr(s)}")
        if s.get("format") not in GROUPS.values():
            raise E2WMError(f"{where}.format: expected mc or gen, got {reprlib.repr(s.get('format'))}")
        _count(s, "n", where)
        metrics = METRICS[s["format"]]
        if s.get("metric") not in metrics:
            raise E2WMError(f"{where}.metric: expected {' or '.join(metrics)} for a {s['format']} suite, got "
                            f"{reprlib.repr(s.get('metric'))}")
        if s["metric"] == "accuracy" and s.get("normalisation") not in NORMS:
            raise E2WMError(f"{where}.normalisation: expected {' or '.join(NORMS)}, got "
                            f"{reprlib.repr(s.get('normalisation'))}")
        headline_key = "rougeL" if s["metric"] == "rouge" else s["metric"]
        for key in SCORES:
            if key == headline_key or key in s:
                _number(s, key, where)
        by_norm = s.get("accuracy_by_norm", {})
        if not isinstance(by_norm, dict):
            raise E2WMError(f"{where}.accuracy_by_norm: expected a mapping of normalisation to accuracy")
        for norm in by_norm:
            _number(by_norm, norm, f"{where}.accuracy_by_norm")
        runs = s.get("executability")
        if isinstance(runs, dict):
            for key in runs:
                _number(runs, key, f"{where}.executability")
    ppl = r.get("perplexity")
    if ppl is None:
        return
    if not isinstance(ppl, dict):
        raise E2WMError(f"perplexity: expected a mapping with a number 'ppl', got {reprlib.repr(ppl)}")
    _number(ppl, "ppl", "perplexity", 0, math.inf, low_open=True)
    if "ppl_base2_e2wm" in ppl:
        _number(ppl, "ppl_base2_e2wm", "perplexity", 0, math.inf, low_open=True)
    if "nll" in ppl:
        _number(ppl, "nll", "perplexity", 0, math.inf)
    for key in ("tokens", "documents"):
        if key in ppl:
            _count(ppl, key, "perplexity")


def relative_improvement(base: dict, run: dict) -> float | None:
    """Mean over the suites both runs scored (base value > 0) of (run - base) / base."""
    gains = [(headline(run["suites"][n])[1] - b) / b for n, s in base["suites"].items()
             if n in run["suites"] and (b := headline(s)[1]) > 0]
    return sum(gains) / len(gains) if gains else None


def report(runs: list[str], out: str | Path) -> Path:
    if not runs:
        raise E2WMError("report: name at least one run directory")
    out = output_dir(out, "--out", ours=("report.md",), inputs=[("run", r) for r in runs])
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
