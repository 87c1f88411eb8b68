"""Bad input to `e2wm eval` and `e2wm report`: exit 2, one line naming the culprit, nothing written."""
import json

import pytest

GEN = {"input": "Q: How to make bed?\nA:", "ref": "Walk to bed. Grab pillow."}
MC = {"input": "Question: To wash clothes, a related item is\nAnswer:", "answer_list": ["soap", "cup"],
      "answer": "soap"}


def suite(tmp, text, name="s.jsonl"):
    d = tmp / "suites"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def good(tmp):
    return suite(tmp, json.dumps(GEN) + "\n", "plan_gen.jsonl")


def ev(tmp, *extra, suites=None):
    return ["eval", "--suites", str(suites or good(tmp)), "--out", str(tmp / "out"), *extra]


def adapter(tmp, files):
    d = tmp / "adapter"
    d.mkdir()
    for name, data in files.items():
        (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(d)


def a_file(tmp, name="f.txt", data="x"):
    p = tmp / name
    p.write_text(data)
    return str(p)


def foreign_dir(tmp):
    d = tmp / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("do not touch")
    return str(d)


ADAPTER_CFG = json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"],
                          "base_model_name_or_path": "tiny", "task_type": "CAUSAL_LM"})

EVAL = [
    ("no-suites", lambda t: ["eval", "--out", str(t / "o")], "--suites"),
    ("suite-missing", lambda t: ev(t, suites=t / "nope.jsonl"), "nope.jsonl: no such suite file"),
    ("suite-device", lambda t: ev(t, suites="/dev/null"), "/dev/null: not a regular file"),
    ("suite-empty-dir", lambda t: ev(t, suites=(t / "e").mkdir() or t / "e"), "no suite files"),
    ("suite-not-utf8", lambda t: ev(t, suites=suite(t, b'{"input": "\xff\xfe"}\n')), ["s.jsonl:1", "UTF-8"]),
    ("suite-bad-json-line-2", lambda t: ev(t, suites=suite(t, json.dumps(GEN) + "\n{oops\n")),
     ["s.jsonl:2", "malformed JSON"]),
    ("suite-bad-json-list", lambda t: ev(t, suites=suite(t, "[" + json.dumps(GEN) + ",\n{", "s.json")),
     ["s.json:2", "malformed JSON"]),
    ("suite-nan", lambda t: ev(t, suites=suite(t, '{"input": "a", "ref": NaN}\n')), ["s.jsonl:1", "NaN"]),
    ("suite-infinity", lambda t: ev(t, suites=suite(t, '{"input": "a", "ref": "b", "x": -Infinity}\n')),
     ["s.jsonl:1", "Infinity"]),
    ("suite-deep", lambda t: ev(t, suites=suite(t, "[" * 200_000, "s.json")), ["s.json", "nested too deeply"]),
    ("suite-no-ref", lambda t: ev(t, suites=suite(t, '{"input": "a"}\n')), "s.jsonl:1: expected"),
    ("suite-answer-not-an-option", lambda t: ev(t, suites=suite(t, json.dumps({**MC, "answer": "x"}) + "\n")),
     "s.jsonl:1: expected"),
    ("suite-options-not-strings", lambda t: ev(t, suites=suite(t, json.dumps({**MC, "answer_list": [1, 2]}))),
     "s.jsonl:1"),
    ("suite-mixed-kinds", lambda t: ev(t, suites=suite(t, json.dumps(GEN) + "\n" + json.dumps(MC) + "\n")),
     "s.jsonl:2: a mc row in a gen file"),
    ("suite-empty", lambda t: ev(t, suites=suite(t, "\n\n")), "s.jsonl: no rows"),
    ("suite-row-a-list", lambda t: ev(t, suites=suite(t, "[1, 2]\n", "s.json")), "s.json:1"),
    ("suite-row-a-string", lambda t: ev(t, suites=suite(t, '"input"\n')), "s.jsonl:1"),
    ("only-unknown", lambda t: ev(t, "--only", "nope"), "--only nope"),
    ("two-same-stems", lambda t: ["eval", "--suites", str(good(t)), str(suite(t, json.dumps(GEN), "plan_gen.json")),
                                  "--out", str(t / "o")], "two suite files named plan_gen"),
    ("limit-negative", lambda t: ev(t, "--limit", "-1"), "limit=-1"),
    ("limit-not-int", lambda t: ev(t, "--limit", "x"), "--limit"),
    ("limit-huge", lambda t: ev(t, "--limit", str(10**12)), "limit="),
    ("beams-zero", lambda t: ev(t, "--num-beams", "0"), "num_beams=0"),
    ("beams-huge", lambda t: ev(t, "--num-beams", "1000"), "num_beams=1000"),
    ("new-tokens-zero", lambda t: ev(t, "--max-new-tokens", "0"), "max_new_tokens=0"),
    ("new-tokens-huge", lambda t: ev(t, "--max-new-tokens", str(10**9)), "max_new_tokens="),
    ("ppl-docs-zero", lambda t: ev(t, "--ppl-docs", "0"), "ppl_docs=0"),
    ("ppl-max-length-one", lambda t: ev(t, "--ppl-max-length", "1"), "ppl_max_length=1"),
    ("ppl-stride-zero", lambda t: ev(t, "--ppl-stride", "0"), "ppl_stride=0"),
    ("ppl-stride-float", lambda t: ev(t, "--ppl-stride", "2.5"), "--ppl-stride"),
    ("out-a-file", lambda t: ["eval", "--suites", str(good(t)), "--out", a_file(t)], ["--out", "not a directory"]),
    ("out-empty", lambda t: ["eval", "--suites", str(good(t)), "--out", ""], "--out: the path is empty"),
    ("out-foreign", lambda t: ["eval", "--suites", str(good(t)), "--out", foreign_dir(t)], ["--out", "--force"]),
    ("out-under-a-file", lambda t: ["eval", "--suites", str(good(t)), "--out", a_file(t) + "/sub"],
     ["--out", "is not a directory"]),
    ("adapter-missing", lambda t: ev(t, "--adapter", str(t / "none")), "none: no such adapter directory"),
    ("adapter-a-file", lambda t: ev(t, "--adapter", a_file(t)), "f.txt: not a directory"),
    ("adapter-no-config", lambda t: ev(t, "--adapter", adapter(t, {"x.bin": b"1"})), "not a LoRA adapter"),
    ("adapter-config-garbage", lambda t: ev(t, "--adapter", adapter(t, {"adapter_config.json": "{nope"})),
     ["adapter_config.json:1", "malformed JSON"]),
    ("adapter-config-a-list", lambda t: ev(t, "--adapter", adapter(t, {"adapter_config.json": "[]"})),
     "adapter_config.json: expected a JSON object"),
    ("adapter-config-not-utf8", lambda t: ev(t, "--adapter", adapter(t, {"adapter_config.json": b"\xff{"})),
     ["adapter_config.json", "UTF-8"]),
    ("adapter-weights-corrupt", lambda t: ev(t, "--adapter", adapter(t, {
        "adapter_config.json": ADAPTER_CFG, "adapter_model.safetensors": b"\x00garbage"})), "--adapter"),
    ("model-missing-dir", lambda t: ev(t, "--model", str(t / "no-model")), "--model"),
    ("model-dir-without-config", lambda t: ev(t, "--model", str((t / "m").mkdir() or t / "m")),
     "not a model directory"),
    ("model-unknown-shape", lambda t: ev(t, "--model", "shape:nope"), "unknown shape 'nope'"),
    ("ppl-corpus-missing", lambda t: ev(t, "--ppl-corpus", str(t / "c.txt")), "c.txt"),
    ("ppl-corpus-csv", lambda t: ev(t, "--ppl-corpus", a_file(t, "c.csv")), "unsupported corpus type"),
    ("ppl-corpus-jsonl-no-text", lambda t: ev(t, "--ppl-corpus", a_file(t, "c.jsonl", '{"t": 1}\n')),
     "c.jsonl:1"),
    ("ppl-corpus-not-utf8", lambda t: ev(t, "--ppl-corpus", str(suite(t, b"ok\n\xff\n", "c.txt"))),
     ["c.txt", "UTF-8"]),
    ("fisher-missing", lambda t: ev(t, "--ppl-corpus", "builtin:pydoc", "--fisher", str(t / "f.safetensors")),
     "f.safetensors"),
    ("fisher-garbage", lambda t: ev(t, "--ppl-corpus", "builtin:pydoc", "--fisher",
                                    a_file(t, "fisher.safetensors", "garbage")), "fisher.safetensors"),
]


@pytest.mark.parametrize("make,names", [c[1:] for c in EVAL], ids=[c[0] for c in EVAL])
def test_eval_bad_input(tmp_path, cli_error, make, names):
    argv = make(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    cli_error(argv, names)
    assert not (tmp_path / "out").exists()   # nothing written
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


RESULTS = {"model": "m", "adapter": None, "suites": {
    "count_qa": {"format": "mc", "n": 4, "metric": "accuracy", "normalisation": "ln", "accuracy": 0.5}}}


def run_dir(tmp, content, name="run"):
    d = tmp / name
    d.mkdir()
    (d / "results.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(d)


def rep(tmp, *runs, out=None):
    return ["report", *runs, "--out", str(out or tmp / "rep")]


def with_suite(**kw):
    return json.dumps({**RESULTS, "suites": {"count_qa": {**RESULTS["suites"]["count_qa"], **kw}}})


def linked_out(tmp):
    outside = tmp / "elsewhere.json"
    outside.write_text(json.dumps(RESULTS))
    d = tmp / "run"
    d.mkdir()
    (d / "results.json").symlink_to(outside)
    return str(d)


REPORT = [
    ("no-runs", lambda t: ["report", "--out", str(t / "r")], "runs"),
    ("no-out", lambda t: ["report", run_dir(t, json.dumps(RESULTS))], "--out"),
    ("run-missing", lambda t: rep(t, str(t / "none")), "none: no such eval run directory"),
    ("run-a-file", lambda t: rep(t, a_file(t)), "f.txt: not a directory"),
    ("run-without-results", lambda t: rep(t, str((t / "e").mkdir() or t / "e")), "no results.json"),
    ("results-malformed", lambda t: rep(t, run_dir(t, "{\n oops")), ["results.json:2", "malformed JSON"]),
    ("results-not-utf8", lambda t: rep(t, run_dir(t, b"\xff\xff")), ["results.json", "UTF-8"]),
    ("results-a-list", lambda t: rep(t, run_dir(t, "[]")), "not an `e2wm eval` results file"),
    ("results-no-suites", lambda t: rep(t, run_dir(t, '{"suites": {}}')), "not an `e2wm eval` results file"),
    ("results-suite-no-metric", lambda t: rep(t, run_dir(t, with_suite(metric=None))), "suites.count_qa"),
    ("results-suite-value-null", lambda t: rep(t, run_dir(t, with_suite(accuracy=None))), "suites.count_qa"),
    ("results-suite-value-string", lambda t: rep(t, run_dir(t, with_suite(accuracy="high"))), "suites.count_qa"),
    ("results-suite-bad-format", lambda t: rep(t, run_dir(t, with_suite(format="essay"))), "suites.count_qa"),
    ("results-suite-a-list", lambda t: rep(t, run_dir(t, json.dumps({"suites": {"x": [1]}}))), "suites.x"),
    ("results-nan", lambda t: rep(t, run_dir(t, with_suite().replace("0.5", "NaN"))), ["results.json", "NaN"]),
    ("results-perplexity-shape", lambda t: rep(t, run_dir(t, json.dumps({**RESULTS, "perplexity": 3}))),
     "perplexity"),
    ("results-deep", lambda t: rep(t, run_dir(t, "[" * 200_000)), "nested too deeply"),
    ("results-symlink-out", lambda t: rep(t, linked_out(t)), "leads outside"),
    ("out-a-file", lambda t: rep(t, run_dir(t, json.dumps(RESULTS)), out=a_file(t)), "not a directory"),
    ("out-foreign", lambda t: rep(t, run_dir(t, json.dumps(RESULTS)), out=foreign_dir(t)), ["--out", "--force"]),
    ("second-run-bad", lambda t: rep(t, run_dir(t, json.dumps(RESULTS)), run_dir(t, "{}", "b")), "b/results.json"),
]


@pytest.mark.parametrize("make,names", [c[1:] for c in REPORT], ids=[c[0] for c in REPORT])
def test_report_bad_input(tmp_path, cli_error, make, names):
    argv = make(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    cli_error(argv, names)
    assert not (tmp_path / "rep").exists()
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_eval_results_are_finite_json(tmp_path, monkeypatch):
    """A non-finite metric is written as null, never as NaN (which is not JSON)."""
    from e2wm.cli import main
    from e2wm.eval import harness
    monkeypatch.setattr(harness, "_gen", lambda name, rows, preds: {"metric": "exact_match",
                                                                    "exact_match": float("nan")})
    assert main(["eval", "--suites", str(good(tmp_path)), "--out", str(tmp_path / "out"),
                 "--max-new-tokens", "2", "--num-beams", "1"]) == 0
    text = (tmp_path / "out" / "results.json").read_text()
    assert "NaN" not in text and json.loads(text)["suites"]["plan_gen"]["exact_match"] is None
