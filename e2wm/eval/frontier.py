"""The frontier report of a sweep: learning against forgetting, per arm, and a computed verdict per pair of arms.

`frontier(out_dir, runs_json)` reads OUT/report/runs.json (one record per evaluated point, written by the
pipeline's report stage) and each point's OUT/<eval>/results.json, and writes beside runs.json:

- frontier.md: the points table (arm, seed, swept values, step, n, held-out task NLL, general-text e^NLL, the
  headline metrics, each with its 95% interval), the plot, and the verdicts with their method;
- frontier.png: x = held-out general text e^NLL (perplexity: forgetting, lower is better), y = held-out task
  answer NLL (nats/token: learning, lower is better); every point (arm, seed, step) small, each arm's seed-mean
  over matching (values, step) configurations large with min-max error bars across seeds in both coordinates,
  and the arm's Pareto front of those seed-means (points no other beats in both coordinates) drawn as its
  lower envelope (a step line); the base model a black star;
- verdict.json: the numbers behind every verdict.

A point's task NLL is the mean over the `heldout_*` suites (held-out slices of the training tasks) of their
`answer_nll.mean`, each suite weighted by its n; without heldout suites, over every generation suite (the text
says so). Its headline metrics are averaged the same way, one column per metric.

The verdict, "at matched forgetting, which arm learns more": for each seed both arms ran, each arm's lower
envelope y(x) = the lowest task NLL among its points of that seed with forgetting <= x (a step function,
non-increasing; `envelope`), with x = log(e^NLL) = the general-text NLL in nats/token; on the overlap of the
two arms' x ranges (from the larger of their smallest x to the smaller of their largest) the mean vertical gap
y_B(x) - y_A(x), i.e. the area between the two step functions divided by the overlap's width, computed exactly
segment by segment (the limit of a fine grid; `mean_gap`); positive: A learns more at matched forgetting. The
gap's mean over those seeds gets a 95% Student t interval with n - 1 degrees of freedom (scipy's quantile
where installed, else a table; `t_interval`): a bootstrap over 3 seeds has only 10 distinct resamples and
understates the spread, while t with 2 df is honest and wide (t = 4.30, about +-2.5 standard deviations of the
seeds' gaps). The sentence claims only what the interval supports: A learns more if its low end is above 0,
B if its high end is below 0, else no difference the interval can resolve. One seed gives no interval and so
no verdict; a pair with no overlap in any seed is not compared. The base model is in no arm's envelope.
"""
from __future__ import annotations

import io
import json
import math
import reprlib
import statistics
from pathlib import Path

from e2wm.errors import E2WMError
from e2wm.files import read_json, write_atomic, write_json
from e2wm.eval.harness import headline, with_interval
from e2wm.eval.intervals import bootstrap

KEY = ("ewc_lora", "l2")   # the key comparison: EWC-LoRA against its uniform-F control
LEVEL = 0.95
HELDOUT = "heldout_"
X_LABEL = "held-out general text e^NLL (perplexity, log scale)"
Y_LABEL = "held-out task answer NLL (nats/token)"
# the 0.975 quantile of Student's t, df 1..30 (where scipy is not installed); beyond, a Cornish-Fisher expansion
T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
        2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
        2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)


# ---------------------------------------------------------------- the method

def envelope(points) -> list[tuple[float, float]]:
    """The breakpoints (x, y), x ascending and y strictly descending, of the lower envelope of `points` ((x, y)
    pairs): y(x) = min{y_i : x_i <= x}, a step function that holds each breakpoint's y until the next one's x.
    They are the points no other point beats (<=) in both coordinates: the Pareto front."""
    out: list[tuple[float, float]] = []
    for x, y in sorted(points):
        if not out or y < out[-1][1]:   # sorted: at one x the lowest y comes first
            out.append((x, y))
    return out


def at(env: list[tuple[float, float]], x: float) -> float:
    """The envelope's y at x (x at or above its first breakpoint)."""
    y = env[0][1]
    for bx, by in env:
        if bx > x:
            break
        y = by
    return y


def mean_gap(a, b) -> dict | None:
    """The mean of y_b(x) - y_a(x) over the overlap [max of the two smallest x, min of the two largest x] of
    the envelopes of the points a and b ((x, y) pairs, x already on the scale to average over): the area
    between the two step functions divided by the overlap's width, exact; at an overlap of one point, the
    gap there. {"low": x, "high": x, "gap": ...}; None where the ranges do not overlap."""
    ea, eb = envelope(a), envelope(b)
    low = max(min(x for x, _ in a), min(x for x, _ in b))
    high = min(max(x for x, _ in a), max(x for x, _ in b))
    if low > high:
        return None
    if low == high:
        return {"low": low, "high": high, "gap": at(eb, low) - at(ea, low)}
    cuts = sorted({low, high, *(x for x, _ in ea + eb if low < x < high)})
    area = sum((at(eb, x0) - at(ea, x0)) * (x1 - x0) for x0, x1 in zip(cuts, cuts[1:]))
    return {"low": low, "high": high, "gap": area / (high - low)}


def t_quantile(df: int) -> float:
    """Student t's 0.975 quantile with df degrees of freedom."""
    try:
        from scipy.stats import t
        return float(t.ppf((1 + LEVEL) / 2, df))
    except ImportError:
        if df <= len(T975):
            return T975[df - 1]
        z = 1.959964
        return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def t_interval(values: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high): the 95% t interval of the mean of `values` (n - 1 df); None for under 2 values."""
    if len(values) < 2:
        return None
    m = statistics.mean(values)
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def sentence(a: str, b: str, gaps: list[float], ci) -> str:
    """What the interval supports, in one sentence."""
    k = f"{len(gaps)} seed{'s' if len(gaps) != 1 else ''}"
    if ci is None:
        return (f"{a} vs {b}: gap {statistics.mean(gaps):+.4f} nats from {k}: no interval across seeds, so no "
                f"verdict")
    m, lo, hi = ci
    if lo > 0:
        return f"{a} learns more than {b} at matched forgetting (gap {m:.4f} nats [{lo:.4f}, {hi:.4f}], {k})"
    if hi < 0:
        return f"{b} learns more than {a} at matched forgetting (gap {-m:.4f} nats [{-hi:.4f}, {-lo:.4f}], {k})"
    return f"{a} vs {b}: no difference the interval can resolve (gap {m:+.4f} nats [{lo:+.4f}, {hi:+.4f}], {k})"


def compare(a: str, b: str, points: list[dict], key: bool = False) -> dict:
    """The verdict of arm a against arm b from the points (each with arm, seed, x: e^NLL, y: task NLL),
    paired by seed."""
    seeds = {arm: {p["seed"] for p in points if p["arm"] == arm} for arm in (a, b)}
    both = sorted(seeds[a] & seeds[b])
    per_seed, gaps = [], []
    for s in both:
        got = mean_gap(*[[(math.log(p["x"]), p["y"]) for p in points if p["arm"] == arm and p["seed"] == s]
                         for arm in (a, b)])
        per_seed.append({"seed": s, "overlap": None if got is None else [math.exp(got["low"]), math.exp(got["high"])],
                         "gap": None if got is None else got["gap"]})
        if got is not None:
            gaps.append(got["gap"])
    out = {"a": a, "b": b, "key": key, "per_seed": per_seed,
           "unpaired_seeds": sorted(seeds[a] ^ seeds[b]), "seeds": len(gaps)}
    spans = [s["overlap"] for s in per_seed if s["overlap"]]
    out["overlap"] = [min(s[0] for s in spans), max(s[1] for s in spans)] if spans else None
    if not gaps:
        rng = {arm: [min(p["x"] for p in points if p["arm"] == arm), max(p["x"] for p in points if p["arm"] == arm)]
               for arm in (a, b)}
        why = ("no seed in common" if not both else
               f"no overlap in forgetting in any seed ({a} e^NLL {rng[a][0]:.3f}-{rng[a][1]:.3f}, {b} "
               f"{rng[b][0]:.3f}-{rng[b][1]:.3f})")
        return {**out, "mean": None, "low": None, "high": None, "sentence": f"{a} vs {b}: {why}: not compared at "
                                                                             f"matched forgetting"}
    ci = t_interval(gaps)
    m, lo, hi = ci if ci else (statistics.mean(gaps), None, None)
    return {**out, "mean": m, "low": lo, "high": hi, "sentence": sentence(a, b, gaps, ci)}


# ---------------------------------------------------------------- reading

def _bad(where: str, what: str, v) -> E2WMError:
    return E2WMError(f"{where}: expected {what}, got {reprlib.repr(v)}")


def _points(runs_json: Path) -> list[dict]:
    """runs.json's points, each checked for what the frontier reads."""
    data = read_json(runs_json, "runs.json")
    if not isinstance(data, dict) or not isinstance(data.get("points"), list) or not data["points"]:
        raise _bad(f"{runs_json}: points", "a non-empty list of evaluated points",
                   data.get("points") if isinstance(data, dict) else data)
    for i, p in enumerate(data["points"]):
        where = f"{runs_json}: points[{i}]"
        if not isinstance(p, dict):
            raise _bad(where, "a mapping of run, arm, seed, values, step and eval", p)
        for key in ("run", "arm", "eval"):
            if not isinstance(p.get(key), str) or not p[key]:
                raise _bad(f"{where}.{key}", "a non-empty string", p.get(key))
        if not isinstance(p.get("values"), dict):
            raise _bad(f"{where}.values", "a mapping of swept key to value", p.get("values"))
        step = p.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise _bad(f"{where}.step", "a step (an int >= 0) or null", step)
        seed = p.get("seed")
        if p["arm"] != "base" and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise _bad(f"{where}.seed", "a run's seed (an int)", seed)
    return data["points"]


def _results(out_dir: Path, runs_json: Path, i: int, p: dict) -> tuple[Path, dict]:
    from e2wm.eval.report import read_results
    folder = (out_dir / p["eval"]).resolve()
    if not folder.is_relative_to(out_dir.resolve()):
        raise E2WMError(f"{runs_json}: points[{i}].eval: {p['eval']!r} leads outside {out_dir}")
    path = out_dir / p["eval"] / "results.json"
    if not path.is_file():
        raise E2WMError(f"{path}: no such eval results file (runs.json points[{i}].eval {p['eval']!r})")
    r = read_results(path)
    if not isinstance(r.get("perplexity"), dict):
        raise E2WMError(f"{path}: perplexity.ppl: missing (the frontier's x axis is the general-text e^NLL; the "
                        f"eval needs eval.ppl_docs > 0)")
    return path, r


def _suites(loaded: list[tuple[Path, dict]]) -> tuple[list[str], bool]:
    """The suites the task NLL averages (heldout_*, else every generation suite) and whether that is the fallback;
    every point must hold each of them."""
    names = sorted({s for _, r in loaded for s in r["suites"] if s.startswith(HELDOUT)})
    fallback = not names
    if fallback:
        names = sorted({s for _, r in loaded for s, v in r["suites"].items() if v["format"] == "gen"})
    if not names:
        raise E2WMError(f"{loaded[0][0]}: suites: no heldout_* and no generation suite to measure learning on")
    for path, r in loaded:
        for s in names:
            if s not in r["suites"]:
                raise E2WMError(f"{path}: suites.{s}: missing (another point has it; the points must be "
                                f"evaluated on the same suites)")
            nll = r["suites"][s].get("answer_nll")
            if not isinstance(nll, dict) or nll.get("mean") is None:
                raise E2WMError(f"{path}: suites.{s}.answer_nll.mean: missing")
    return names, fallback


def _pooled(r: dict, names: list[str], key: str, suites=None) -> list[float] | None:
    """Every item's `per_item[key]` over `suites` (default: `names`), pooled; None where a suite lacks them."""
    out = []
    for s in suites if suites is not None else names:
        values = r["suites"][s].get("per_item", {}).get(key)
        if not isinstance(values, list) or len(values) != r["suites"][s]["n"]:
            return None
        out += values
    return out


def _interval(values: list[float] | None) -> dict | None:
    """{low, high}: the bootstrap interval of the mean of pooled items (as results.json draws a suite's)."""
    if not values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return None
    low, high = bootstrap(values)
    return {"low": low, "high": high}


def _figures(r: dict, names: list[str]) -> dict:
    """A point's task NLL (n-weighted over the suites) and headline metrics (n-weighted per metric), with n and
    the 95% interval of each: the items of the suites pooled (an n-weighted mean of suite means is the mean of
    their items) and bootstrapped, where results.json keeps the items; the e^NLL's from results.json."""
    n = sum(r["suites"][s]["n"] for s in names)
    if n == 0:
        raise E2WMError(f"suites {', '.join(names)}: no items to measure learning on (every n is 0)")
    heads: dict[str, list[tuple[str, int, float]]] = {}
    for s in names:
        label, value = headline(r["suites"][s])
        heads.setdefault(label, []).append((s, r["suites"][s]["n"], value))
    metrics, intervals = {}, {}
    for k, xs in heads.items():
        weight = sum(w for _, w, _ in xs)
        metrics[k] = sum(w * v for _, w, v in xs) / weight if weight else None
        intervals[k] = _interval(_pooled(r, names, "score", [s for s, _, _ in xs]))
    ppl = r["perplexity"].get("interval")
    return {"y": sum(r["suites"][s]["n"] * r["suites"][s]["answer_nll"]["mean"] for s in names) / n,
            "x": r["perplexity"]["ppl"], "n": n, "y_interval": _interval(_pooled(r, names, "answer_nll")),
            "x_interval": ppl if isinstance(ppl, dict) else None,
            "metrics": metrics, "metric_intervals": intervals}


def load(out_dir, runs_json) -> tuple[list[dict], list[str], bool]:
    """(points with their figures x, y and metrics; the suites averaged; whether they are the fallback)."""
    out_dir, runs_json = Path(out_dir), Path(runs_json)
    points = _points(runs_json)
    loaded = [_results(out_dir, runs_json, i, p) for i, p in enumerate(points)]
    names, fallback = _suites(loaded)
    out = []
    for p, (path, r) in zip(points, loaded):
        try:
            out.append({**p, **_figures(r, names)})
        except E2WMError as e:
            raise E2WMError(f"{path}: {e}") from None
    return out, names, fallback


# ---------------------------------------------------------------- writing

def _config(p: dict) -> str:
    return json.dumps(p["values"], sort_keys=True) + f"@{p['step']}"


def _values(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in p["values"].items()) or "-"


def seed_means(points: list[dict], arm: str) -> list[dict]:
    """Per configuration (values, step) of `arm`: the seed-mean of x and y and their min-max across seeds."""
    groups: dict[str, list[dict]] = {}
    for p in points:
        if p["arm"] == arm:
            groups.setdefault(_config(p), []).append(p)
    return [{"x": statistics.mean(q["x"] for q in g), "y": statistics.mean(q["y"] for q in g),
             "x_range": (min(q["x"] for q in g), max(q["x"] for q in g)),
             "y_range": (min(q["y"] for q in g), max(q["y"] for q in g)), "seeds": len(g)} for g in groups.values()]


def figure(points: list[dict], arms: list[str]):
    """The frontier plot's Figure (not saved)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    markers = "osD^vP<>Xhp"
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for k, arm in enumerate(arms):
        color, marker = f"C{k % 10}", markers[k % len(markers)]
        mine = [p for p in points if p["arm"] == arm]
        ax.scatter([p["x"] for p in mine], [p["y"] for p in mine], s=12, color=color, marker=marker, alpha=0.35)
        means = seed_means(points, arm)
        ax.errorbar([m["x"] for m in means], [m["y"] for m in means],
                    xerr=[[m["x"] - m["x_range"][0] for m in means], [m["x_range"][1] - m["x"] for m in means]],
                    yerr=[[m["y"] - m["y_range"][0] for m in means], [m["y_range"][1] - m["y"] for m in means]],
                    fmt=marker, color=color, markersize=6, capsize=2, elinewidth=0.8, label=arm)
        front = envelope([(m["x"], m["y"]) for m in means])
        ax.plot([x for x, _ in front], [y for _, y in front], drawstyle="steps-post", color=color, linewidth=1.5)
    for p in points:
        if p["arm"] == "base":
            ax.scatter([p["x"]], [p["y"]], marker="*", s=220, color="black", zorder=5, label="base model")
    ax.set_xscale("log")   # the verdict's scale: gaps are measured over log perplexity (the NLL)
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    ax.set_title("Learning against forgetting (lower left is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def verdicts(points: list[dict], arms: list[str], key=KEY) -> list[dict]:
    """Every pair of arms (in their order in runs.json), the key pair first and oriented as given."""
    pairs = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1:]]
    key = tuple(key) if key else None
    if key and key[0] in arms and key[1] in arms and key[0] != key[1]:
        pairs = [key] + [q for q in pairs if set(q) != set(key)]
    else:
        key = None
    return [compare(a, b, points, key=(a, b) == key) for a, b in pairs]


def _fmt(v, spec: str = ".4f") -> str:
    return "n/a" if v is None else format(v, spec)


def _width(pairs) -> str:
    """How wide the seeds make the interval: t at the most seeds any pair shares."""
    k = max((v["seeds"] for v in pairs), default=0)
    return f" (with {k} seeds, {k - 1} df: t = {t_quantile(k - 1):.2f})" if k >= 2 else ""


def markdown(points, names, fallback, arms, pairs) -> str:
    suites = ", ".join(names)
    lines = ["# Frontier: learning against forgetting", "",
             "Forgetting (x): the held-out general text e^NLL (perplexity); lower is better. Learning (y): the "
             "held-out task answer NLL in nats per token, the mean over "
             + (f"the held-out task suites ({suites})" if not fallback else
                f"every generation suite ({suites}): this eval has no heldout_* suites, so learning is measured on "
                f"the evaluation suites instead")
             + " of their answer NLL, each suite weighted by its n; lower is better.", "",
             "![frontier](frontier.png)", "",
             "The plot: every point (arm, seed, step) small; each arm's seed-mean over matching (swept values, step) "
             "configurations large, with min-max error bars across seeds in both coordinates; each arm's line the "
             "Pareto front of those seed-means drawn as its lower envelope (a step); the base model a black star.",
             "", "## Verdicts at matched forgetting", "",
             "For each seed both arms ran, each arm's lower envelope y(x) is the lowest task NLL among its points of "
             "that seed with forgetting <= x (a step function), with x = log(e^NLL), the general-text NLL. On the "
             "overlap of the two arms' x ranges (from the larger of their smallest x to the smaller of their largest) "
             "the gap is the mean of y_B(x) - y_A(x), the area between the envelopes divided by the overlap's width, "
             "in nats per token: positive means A learns more at matched forgetting. The gaps' mean across seeds "
             f"gets a {LEVEL:.0%} Student t interval with n - 1 degrees of freedom{_width(pairs)}; "
             "the sentence claims a winner only where the interval excludes 0. The base model is in "
             "no arm's envelope. Overlap: the e^NLL range over which a gap was measured, in any seed.", ""]
    if not pairs:
        lines += ["Fewer than two arms: nothing to compare.", ""]
    for v in pairs:
        if v["key"]:
            lines += [f"**Key comparison ({v['a']} vs {v['b']}):** {v['sentence']}.", ""]
    if pairs:
        lines += ["| A | B | seeds | overlap (e^NLL) | per-seed gaps (B - A, nats) | mean gap [95% t] | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for v in pairs:
            ov = "none" if v["overlap"] is None else f"{v['overlap'][0]:.3f}-{v['overlap'][1]:.3f}"
            gaps = ", ".join(f"s{s['seed']} {_fmt(s['gap'], '+.4f')}" for s in v["per_seed"]) or "-"
            ci = (f"{_fmt(v['mean'], '+.4f')} [{_fmt(v['low'], '+.4f')}, {_fmt(v['high'], '+.4f')}]"
                  if v["mean"] is not None else "n/a")
            lines.append(f"| {v['a']} | {v['b']} | {v['seeds']} | {ov} | {gaps} | {ci} | {v['sentence']} |")
        lines.append("")
    metrics = list(dict.fromkeys(k for p in points for k in p["metrics"]))
    lines += ["## Points", "", "Step: the optimizer step the point's weights were taken at (final: the run's export). "
              "n: the items the task NLL averages (a metric averages those of the suites that report it). [95%]: the "
              "percentile bootstrap interval over those items, pooled across the suites, and the e^NLL's over "
              "documents, as results.json draws them; absent where results.json keeps no per-item values.",
              "", "| arm | seed | values | step | n | task NLL [95%] | general e^NLL [95%] | "
              + " | ".join(f"{k} [95%]" for k in metrics) + " |",
              "|---|---|---|---|---|---|---|" + "---|" * len(metrics)]
    for p in points:
        step = "?" if p["step"] is None else str(p["step"])
        step += " (final)" if p.get("final") else ""
        seed = "-" if p.get("seed") is None else str(p["seed"])
        cells = [with_interval(p["metrics"].get(k), p["metric_intervals"].get(k)) for k in metrics]
        lines.append(f"| {p['arm']} | {seed} | {_values(p)} | {step} | {p['n']} | "
                     f"{with_interval(p['y'], p['y_interval'])} | {with_interval(p['x'], p['x_interval'], 3)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def frontier(out_dir, runs_json, key=KEY, report_dir=None) -> Path:
    """Write frontier.md, frontier.png and verdict.json into `report_dir` (default: runs.json's folder) from
    runs.json and the results.json of its points (paths relative to `out_dir`); returns frontier.md's path.
    `key`: the pair of arms (A, B) the report highlights, where both exist."""
    runs_json = Path(runs_json)
    report_dir = Path(report_dir) if report_dir is not None else runs_json.parent
    points, names, fallback = load(out_dir, runs_json)
    arms = list(dict.fromkeys(p["arm"] for p in points if p["arm"] != "base"))
    pairs = verdicts(points, arms, key)
    write_atomic(report_dir / "frontier.png", _png(figure(points, arms)))
    write_json(report_dir / "verdict.json", {
        "method": {"x": "log(e^NLL) of held-out general text (nats/token)", "y": "held-out task answer NLL "
                   "(nats/token), n-weighted over the suites", "gap": "mean over the overlap of y_B - y_A between "
                   "the arms' lower envelopes, per seed; positive: A learns more", "interval": f"{LEVEL:.0%} Student "
                   "t across seeds, n - 1 df", "level": LEVEL},
        "suites": names, "fallback_to_generation_suites": fallback, "arms": arms,
        "key": list(key) if any(v["key"] for v in pairs) else None, "pairs": pairs})
    return write_atomic(report_dir / "frontier.md", markdown(points, names, fallback, arms, pairs))


def report_section(report_dir) -> str:
    """A short section for report.md: the key verdict (or the first) and links to the frontier's files."""
    v = json.loads((Path(report_dir) / "verdict.json").read_text())
    key = next((p for p in v["pairs"] if p["key"]), None)
    lines = ["", "## Frontier", "", "Learning (held-out task answer NLL) against forgetting (general-text e^NLL) for "
             "every evaluated point: [frontier.md](frontier.md), the numbers in verdict.json.", ""]
    if key:
        lines += [f"Key comparison: {key['sentence']}.", ""]
    return "\n".join(lines + ["![frontier](frontier.png)", ""])
