"""`e2wm report RUN_DIR... --out DIR`: several `e2wm eval` runs side by side, in the layout of E2WM's
Table 2 (suites as rows, runs as columns, the base run first, perplexity last), each value with its
bootstrap interval where the run recorded one; the suites' answer NLL; E2WM's average relative
improvement of each run over the base run; each run's paired differences against the base run (where
both scored the same items); and a PNG bar chart with error bars per suite group (and one of answer NLL).
A suite with nothing to draw (every score 0) is flagged and left out of its group's chart."""
from __future__ import annotations

import io
import math
import reprlib
import statistics
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import input_dir, make_dir, output_dir, read_json, write_atomic
from e2wm.eval.harness import axis_name, headline, with_interval
from e2wm.eval.intervals import paired, relative_gain, settings
from e2wm.data.eval_format import METRICS, NORMS

GROUPS = {"multiple choice": "mc", "generation": "gen"}
SCORES = ("accuracy", "exact_match", "lcs", "rouge1", "rouge2", "rougeL")  # each a fraction in [0, 1]


def _load(run: str) -> tuple[str, dict]:
    """(name, results) of an `e2wm eval` output directory, its results.json checked for everything the
    report reads (see `_check`)."""
    path = input_dir(run, "eval run directory") / "results.json"
    if not path.is_file():
        raise E2WMError(f"{run}: no results.json (is it an `e2wm eval --out` directory?)")
    return Path(run).resolve().name, read_results(path, inside=run)


def read_results(path: Path, inside=None) -> dict:
    """An `e2wm eval` results.json, checked for everything a report reads (`_check`); a bad one is one line
    naming the file and the field."""
    r = read_json(path, "eval results file", inside=inside)
    if not isinstance(r, dict) or not isinstance(r.get("suites"), dict) or not r["suites"]:
        raise E2WMError(f"{path}: suites: not an `e2wm eval` results file (no suites)")
    try:
        _check(r)
    except E2WMError as e:
        raise E2WMError(f"{path}: {e}") from None
    return r


def _number(d: dict, key: str, where: str, low: float = 0.0, high: float = 1.0, low_open: bool = False) -> None:
    """d[key] is a finite number (a JSON bool is none) in [low, high], or above `low` with `low_open`."""
    _in_range(d.get(key), f"{where}.{key}", low, high, low_open)


def _in_range(v, where: str, low: float, high: float, low_open: bool = False) -> None:
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            or not (low < v if low_open else low <= v) or not v <= high):
        what = (f"a finite number {'>' if low_open else '>='} {low:g}" if high == math.inf
                else f"a number in [{low:g}, {high:g}]")
        raise E2WMError(f"{where}: expected {what}, got {reprlib.repr(v)}")


def _count(d: dict, key: str, where: str) -> None:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise E2WMError(f"{where}.{key}: expected a count (an int >= 0), got {reprlib.repr(v)}")


def _numbers(d: dict, key: str, where: str, n: int, low: float, high: float) -> list[float]:
    """d[key] is a list of n finite numbers in [low, high]."""
    v = d[key]
    if not isinstance(v, list) or len(v) != n:
        raise E2WMError(f"{where}.{key}: expected a list of the suite's {n} item values, got "
                        f"{f'{len(v)} values' if isinstance(v, list) else reprlib.repr(v)}")
    for i, x in enumerate(v):
        _in_range(x, f"{where}.{key}[{i}]", low, high)
    return v


def _mean_is(values: list[float], mean: float, what: str, where: str) -> None:
    if values and not math.isclose(statistics.mean(values), mean, rel_tol=1e-9, abs_tol=1e-12):
        raise E2WMError(f"{where}: the mean of its per-item values is {statistics.mean(values)!r}, "
                        f"not {what} {mean!r}")


def _bounds(d: dict, where: str, low: float, high: float) -> None:
    """d's "low" and "high" are numbers in [low, high], in order."""
    _number(d, "low", where, low, high)
    _number(d, "high", where, d["low"], high)


def _check_items(s: dict, where: str) -> None:
    """The fields `e2wm eval` adds for intervals, all optional (older results.json lack them): `interval`
    (the headline's), `answer_nll` (mean, low, high), `per_item` (score and answer_nll: n values each,
    averaging to the suite's figures), `empty_predictions`."""
    n, per = s["n"], s.get("per_item", {})
    if not isinstance(per, dict):
        raise E2WMError(f"{where}.per_item: expected a mapping of 'score' and 'answer_nll' to item values, got "
                        f"{reprlib.repr(per)}")
    if "score" in per:
        _mean_is(_numbers(per, "score", f"{where}.per_item", n, 0, 1), headline(s)[1], "the headline",
                 f"{where}.per_item.score")
    if "answer_nll" in per:
        _numbers(per, "answer_nll", f"{where}.per_item", n, 0, math.inf)
    iv = s.get("interval")
    if iv is not None:
        if not isinstance(iv, dict):
            raise E2WMError(f"{where}.interval: expected a mapping with low, high, level, resamples and seed, got "
                            f"{reprlib.repr(iv)}")
        _bounds(iv, f"{where}.interval", 0, 1)
        _number(iv, "level", f"{where}.interval", 0, 1, low_open=True)
        for key in ("resamples", "seed"):
            _count(iv, key, f"{where}.interval")
    nll = s.get("answer_nll")
    if nll is not None:
        if not isinstance(nll, dict):
            raise E2WMError(f"{where}.answer_nll: expected a mapping with mean, low and high, got {reprlib.repr(nll)}")
        _number(nll, "mean", f"{where}.answer_nll", 0, math.inf)
        if nll.get("low") is not None or nll.get("high") is not None:
            _bounds(nll, f"{where}.answer_nll", 0, math.inf)
        if "answer_nll" in per:
            _mean_is(per["answer_nll"], nll["mean"], "answer_nll.mean", f"{where}.per_item.answer_nll")
    if "empty_predictions" in s:
        _count(s, "empty_predictions", where)
        if s["empty_predictions"] > n:
            raise E2WMError(f"{where}.empty_predictions: {s['empty_predictions']} of only {n} items")


def _check(r: dict) -> None:
    """Every suite's format, n and metrics, and the perplexity, are what `e2wm eval` writes: scores are
    finite numbers in [0, 1], n a count, perplexity a finite positive number; and the interval fields
    where present (`_check_items`)."""
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
        _check_items(s, where)
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
    if ppl.get("interval") is not None:
        if not isinstance(ppl["interval"], dict):
            raise E2WMError(f"perplexity.interval: expected a mapping with low and high, got "
                            f"{reprlib.repr(ppl['interval'])}")
        for key in ("low", "high"):
            _number(ppl["interval"], key, "perplexity.interval", 0, math.inf, low_open=True)
    for key in ("tokens", "documents"):
        if key in ppl:
            _count(ppl, key, "perplexity")


def _gain_suites(base: dict, run: dict) -> list[str]:
    """The suites E2WM's average relative improvement averages: both runs scored them, the base above 0."""
    return [n for n, s in base["suites"].items() if n in run["suites"] and headline(s)[1] > 0]


def relative_improvement(base: dict, run: dict) -> float | None:
    """Mean over the suites both runs scored (base value > 0) of (run - base) / base."""
    gains = []
    for n in _gain_suites(base, run):
        b = headline(base["suites"][n])[1]
        gains.append((headline(run["suites"][n])[1] - b) / b)
    return sum(gains) / len(gains) if gains else None


FIGURES = {"score": "headline", "answer_nll": "answer NLL"}   # per_item's keys, as the report names them


def paired_items(base: dict, run: dict, key: str) -> tuple[list, list] | str:
    """(base values, run values) of per_item[key] ("score": the headline, or "answer_nll") over the same items of
    a suite's entries in two runs; or why the two cannot be paired."""
    if "sha256" not in base or "sha256" not in run or base["sha256"] != run["sha256"]:
        return "the runs scored different suite files (sha256)"
    if base["n"] != run["n"]:
        return f"the runs scored different numbers of items (n {base['n']} and {run['n']})"
    if key == "score" and headline(base)[0] != headline(run)[0]:
        return f"different headline metrics ({headline(base)[0]} and {headline(run)[0]})"
    missing = [who for who, s in (("base", base), ("run", run)) if key not in s.get("per_item", {})]
    if missing:
        return f"no per-item {FIGURES[key]} values in the {' and '.join(missing)} results.json (an older eval)"
    if not base["per_item"][key]:
        return "no items"
    return base["per_item"][key], run["per_item"][key]


def paired_difference(base: dict, run: dict, key: str) -> tuple[float, float, float] | str:
    """(mean of run - base, low, high) over a suite's items (`paired_items`), with the paired bootstrap interval
    (`intervals.paired`); or why the two cannot be paired."""
    got = paired_items(base, run, key)
    if isinstance(got, str):
        return got
    a, b = got
    low, high = paired(a, b)
    return statistics.mean(y - x for x, y in zip(a, b)), low, high


def improvement_text(base: dict, run: dict) -> str:
    """E2WM's average relative improvement of `run` over `base`, with its interval (`intervals.relative_gain`,
    items resampled per suite, paired) and its n of suites; what is missing, said."""
    gain = relative_improvement(base, run)
    names = _gain_suites(base, run)
    if gain is None:
        return "n/a (no suite where the base scores above 0)"
    pairs = [paired_items(base["suites"][n], run["suites"][n], "score") for n in names]
    why = next((p for p in pairs if isinstance(p, str)), None)
    ci = None if why else relative_gain(pairs)
    k = f"{len(names)} suite{'s' if len(names) != 1 else ''}"
    if ci is None:
        return f"{gain:+.2%} ({k}; no interval: {why or 'a resampled base mean reaches 0, so the gain is unbounded'})"
    return f"{gain:+.2%} [{ci[0]:+.2%}, {ci[1]:+.2%}] ({k})"


def _flags(suites: list[str], names: list[str], loaded) -> dict[str, str]:
    """Suites with nothing to draw, by name, and why: every run's headline 0 (all its predictions empty,
    where a generation run's were)."""
    out = {}
    for s in suites:
        held = [(name, r["suites"][s]) for name, (_, r) in zip(names, loaded) if s in r["suites"]]
        if all(headline(x)[1] == 0 for _, x in held):
            empty = [name for name, x in held if x.get("empty_predictions") == x["n"] and x["n"]]
            out[s] = ("all scores 0: nothing to draw" + (f" (every prediction empty in {', '.join(empty)})"
                                                         if empty else ""))
    return out


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
    first = {s: next(r["suites"][s] for _, r in loaded if s in r["suites"]) for s in suites}
    how = settings()
    level = f"{how['level']:.0%}"
    lines = ["# e2wm report", "", f"Base run: {names[0]}. Each cell is the suite's headline metric, with its {level} "
             "percentile bootstrap interval over the suite's items [low, high] where the run recorded one.", "",
             "| suite | metric | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for s in suites:
        cells = [with_interval(headline(r["suites"][s])[1], r["suites"][s].get("interval")) if s in r["suites"]
                 else "" for _, r in loaded]
        lines.append(f"| {s} | {headline(first[s])[0]} | " + " | ".join(cells) + " |")
    if any("perplexity" in r for _, r in loaded):
        cells = [with_interval(r["perplexity"]["ppl"], r["perplexity"].get("interval"), 3) if "perplexity" in r
                 else "" for _, r in loaded]
        docs = {r["perplexity"].get("documents") for _, r in loaded if "perplexity" in r}
        n = f" (n = {docs.pop()} documents)" if len(docs) == 1 and None not in docs else ""
        lines.append(f"| perplexity (lower is better) | e^NLL{n} | " + " | ".join(cells) + " |")
    sizes = {s: sorted({r["suites"][s]["n"] for _, r in loaded if s in r["suites"]}) for s in suites}
    lines += ["", "Items scored per suite (n): " + ", ".join(
        f"{s} {'/'.join(map(str, ns))}" for s, ns in sizes.items()) + "."]
    if len(loaded) > 1:
        lines += ["", f"Average relative improvement over the base run (E2WM's summary figure: the mean over the "
                  f"suites where the base scores above 0 of (run - base) / base; [{level}]: the bootstrap over each "
                  "suite's items, paired): " + "; ".join(f"{n} {improvement_text(base, r)}"
                                                       for n, (_, r) in zip(names[1:], loaded[1:])) + ".", ""]
    else:
        lines += ["", "", ""]
    nll_suites = [s for s in suites if any("answer_nll" in r["suites"].get(s, {}) for _, r in loaded)]
    if nll_suites:
        lines += ["## Answer NLL", "", "The mean over the suite's items of the reference answer's (multiple choice: "
                  "the correct option's) mean per-token negative log-likelihood after the prompt, in nats; lower is "
                  "better.", "", "| suite | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for s in nll_suites:
            cells = [with_interval(x["mean"], x) if (x := r["suites"].get(s, {}).get("answer_nll")) else ""
                     for _, r in loaded]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("")
    if len(loaded) > 1:
        lines += _paired_lines(suites, names, loaded, level)
    flags = _flags(suites, names, loaded)
    if flags:
        lines += ["## Flagged suites", "", *(f"- {s}: {why}; left out of its group's chart"
                                              for s, why in flags.items()), ""]
    make_dir(out)
    for group, kind in GROUPS.items():
        members = [s for s in suites if first[s]["format"] == kind and s not in flags]
        if members:
            axes = list(dict.fromkeys(axis_name(first[s]) for s in members))
            _chart(out / f"{kind}.png", group, members, names, loaded, _headline_bar, ", ".join(axes),
                   ticks=[f"{s}\n{axis_name(first[s])}" if len(axes) > 1 else s for s in members])
            lines.append(f"![{group}]({kind}.png)")
    if nll_suites:
        _chart(out / "answer_nll.png", "answer NLL (lower is better)", nll_suites, names, loaded, _nll_bar,
               "answer NLL (nats per token)")
        lines.append("![answer NLL](answer_nll.png)")
    return write_atomic(out / "report.md", "\n".join(lines) + "\n")


def _paired_lines(suites: list[str], names: list[str], loaded, level: str) -> list[str]:
    """The table of each run's paired differences against the base run, and why any pair was not made."""
    how = settings()
    base = loaded[0][1]["suites"]
    lines = ["## Paired differences against the base run", "",
             f"Each cell is the mean over the suite's items of (run - {names[0]}), with its {level} paired bootstrap "
             f"interval ({how['resamples']} resamples of the items, seed {how['seed']}): only where both runs "
             "scored the same items (the same suite file and n) and recorded per-item values.", "",
             "| suite | figure | " + " | ".join(names[1:]) + " |", "|---|---|" + "---|" * (len(names) - 1)]
    why_not: dict[tuple[str, str, str], list[str]] = {}   # (suite, run, why) -> the figures it stops
    for s in suites:
        if s not in base:
            why_not[s, "", "not in the base run"] = list(FIGURES.values())
            continue
        for key, figure in FIGURES.items():
            cells = []
            for name, (_, r) in zip(names[1:], loaded[1:]):
                got = paired_difference(base[s], r["suites"][s], key) if s in r["suites"] else "not in this run"
                if isinstance(got, str):
                    cells.append("n/a")
                    why_not.setdefault((s, name, got), []).append(figure)
                else:
                    cells.append(f"{got[0]:+.4f} [{got[1]:+.4f}, {got[2]:+.4f}]")
            label = headline(base[s])[0] if key == "score" else figure
            lines.append(f"| {s} | {label} | " + " | ".join(cells) + " |")
    if why_not:
        lines += ["", "Not compared:"] + [
            f"- {s}{f', {name}' if name else ''}{f' ({figures[0]})' if len(figures) < len(FIGURES) else ''}: {why}"
            for (s, name, why), figures in why_not.items()]
    return lines + [""]


def _headline_bar(s: dict) -> tuple[float, dict | None]:
    return headline(s)[1], s.get("interval")


def _nll_bar(s: dict) -> tuple[float, dict | None] | None:
    return (s["answer_nll"]["mean"], s["answer_nll"]) if "answer_nll" in s else None


def _chart(path: Path, title: str, suites: list[str], names: list[str], loaded, bar, ylabel: str,
           ticks: list[str] | None = None) -> None:
    """Grouped bars, a suite per group and a run per colour: `bar(suite entry)` gives (value, interval or
    None), drawn as an error bar [low, high] where present."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(suites)), 4))
    for k, (name, (_, r)) in enumerate(zip(names, loaded)):
        bars = [bar(r["suites"][s]) if s in r["suites"] else None for s in suites]
        values = [b[0] if b else 0.0 for b in bars]
        errors = [[max(0.0, v - b[1]["low"]), max(0.0, b[1]["high"] - v)]
                  if b and b[1] and b[1].get("low") is not None else [0.0, 0.0] for v, b in zip(values, bars)]
        ax.bar([i + k * width for i in range(len(suites))], values, width, label=name,
               yerr=[[e[0] for e in errors], [e[1] for e in errors]], capsize=3)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(suites))], ticks or suites, rotation=30,
                  ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
