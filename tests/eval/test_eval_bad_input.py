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


# a plan row as `e2wm build-data` writes it: its world is procedural apartment 0, where fork 24 and cupboard 13 are
WORLD = {"scene": "procedural:0", "goals": ["<fork> (24) || INSIDE || <cupboard> (13)"], "nodes": [24, 13]}
PLAN = {**GEN, "world": WORLD}


def plan_suite(tmp, **world):
    """A plan suite of one good row and one whose world is WORLD changed by `world` (a None value drops the key)."""
    bad = {k: v for k, v in {**WORLD, **world}.items() if v is not None}
    return suite(tmp, json.dumps(PLAN) + "\n" + json.dumps({**GEN, "world": bad}) + "\n", "plan_gen.jsonl")


def good(tmp):
    return suite(tmp, json.dumps(GEN) + "\n", "plan_gen.jsonl")


def spec(tmp, text, row=GEN, name="rooms"):
    """Suite `name`.jsonl of one `row`, its sidecar holding `text`: the suite's path."""
    path = suite(tmp, json.dumps(row) + "\n", f"{name}.jsonl")
    path.with_name(f"{name}.suite.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def lone_sidecar(tmp):
    """A suite directory where a sidecar's suite file was renamed without it."""
    good(tmp).with_name("old_name.suite.yaml").write_text("kind: gen\nmetric: lcs\n")
    return tmp / "suites"


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
    ("suite-input-not-a-string", lambda t: ev(t, suites=suite(t, json.dumps({**GEN, "input": ["Q"]}) + "\n")),
     ["s.jsonl:1", "'input'"]),
    ("suite-ref-not-a-string", lambda t: ev(t, suites=suite(t, json.dumps({**GEN, "ref": 3}) + "\n")),
     ["s.jsonl:1", "'ref'"]),
    ("suite-ref-and-options", lambda t: ev(t, suites=suite(t, json.dumps({**MC, "ref": "soap"}) + "\n")),
     ["s.jsonl:1", "'ref'", "'answer_list'"]),
    ("suite-options-empty", lambda t: ev(t, suites=suite(t, json.dumps({**MC, "answer_list": []}) + "\n")),
     ["s.jsonl:1", "'answer_list'"]),
    ("suite-options-a-string", lambda t: ev(t, suites=suite(t, json.dumps({**MC, "answer_list": "soap"}) + "\n")),
     ["s.jsonl:1", "'answer_list'"]),
    ("suite-answer-bool", lambda t: ev(t, suites=suite(t, json.dumps({**MC, "answer": True}) + "\n")),
     ["s.jsonl:1", "'answer'"]),
    ("suite-answer-missing", lambda t: ev(t, suites=suite(t, json.dumps({**MC, "answer": None}) + "\n")),
     ["s.jsonl:1", "'answer'"]),
    ("suite-world-on-mc", lambda t: ev(t, suites=suite(t, json.dumps({**MC, "world": WORLD}) + "\n")),
     ["s.jsonl:1", "'world'"]),
    ("world-a-string", lambda t: ev(t, suites=suite(t, json.dumps({**GEN, "world": "procedural:0"}) + "\n")),
     ["s.jsonl:1", "'world'"]),
    ("world-on-some-rows", lambda t: ev(t, suites=suite(t, json.dumps(PLAN) + "\n" + json.dumps(GEN) + "\n")),
     ["s.jsonl:2", "'world'"]),
    ("world-unknown-key", lambda t: ev(t, suites=plan_suite(t, goal=["x"])), ["plan_gen.jsonl:2", "'world'", "goal"]),
    ("world-scene-missing", lambda t: ev(t, suites=plan_suite(t, scene=None)), ["plan_gen.jsonl:2", "'world.scene'"]),
    ("world-scene-an-int", lambda t: ev(t, suites=plan_suite(t, scene=0)), ["plan_gen.jsonl:2", "'world.scene'"]),
    ("world-scene-bad-source", lambda t: ev(t, suites=plan_suite(t, scene="procedural:x")),
     ["plan_gen.jsonl:2", "'world.scene'", "procedural:SEED"]),
    ("world-scene-no-file", lambda t: ev(t, suites=plan_suite(t, scene=str(t / "room.json"))),
     ["plan_gen.jsonl:2", "'world.scene'", "room.json: no such scene file"]),
    ("world-scene-file-not-a-scene", lambda t: ev(t, suites=plan_suite(t, scene=a_file(t, "room.json", "[]"))),
     ["plan_gen.jsonl:2", "'world.scene'", "room.json"]),
    ("world-goals-a-string", lambda t: ev(t, suites=plan_suite(t, goals=WORLD["goals"][0])),
     ["plan_gen.jsonl:2", "'world.goals'"]),
    ("world-goals-empty", lambda t: ev(t, suites=plan_suite(t, goals=[])), ["plan_gen.jsonl:2", "'world.goals'"]),
    ("world-goals-missing", lambda t: ev(t, suites=plan_suite(t, goals=None)), ["plan_gen.jsonl:2", "'world.goals'"]),
    ("world-goal-not-a-fact", lambda t: ev(t, suites=plan_suite(t, goals=["put the fork away"])),
     ["plan_gen.jsonl:2", "'world.goals[0]'"]),
    ("world-goal-unknown-node", lambda t: ev(t, suites=plan_suite(t, goals=[
        "<fork> (24) || INSIDE || <cupboard> (99999)"])), ["plan_gen.jsonl:2", "'world.goals[0]'", "(99999)"]),
    ("world-goal-wrong-class", lambda t: ev(t, suites=plan_suite(t, goals=[
        WORLD["goals"][0], "<spaceship> (24) || INSIDE || <cupboard> (13)"])),
     ["plan_gen.jsonl:2", "'world.goals[1]'", "<spaceship> (24)"]),
    ("world-goal-unknown-state", lambda t: ev(t, suites=plan_suite(t, goals=["<fork> (24) || MELTED"])),
     ["plan_gen.jsonl:2", "'world.goals[0]'", "MELTED"]),
    ("world-goal-unknown-relation", lambda t: ev(t, suites=plan_suite(t, goals=[
        "<fork> (24) || UNDER || <cupboard> (13)"])), ["plan_gen.jsonl:2", "'world.goals[0]'", "UNDER"]),
    ("world-goal-an-int", lambda t: ev(t, suites=plan_suite(t, goals=[24])), ["plan_gen.jsonl:2", "'world.goals'"]),
    ("world-nodes-bools", lambda t: ev(t, suites=plan_suite(t, nodes=[True])), ["plan_gen.jsonl:2", "'world.nodes'"]),
    ("world-nodes-strings", lambda t: ev(t, suites=plan_suite(t, nodes=["24"])), ["plan_gen.jsonl:2", "'world.nodes'"]),
    ("world-nodes-unknown", lambda t: ev(t, suites=plan_suite(t, nodes=[24, 99999])),
     ["plan_gen.jsonl:2", "'world.nodes[1]'", "99999"]),
    ("spec-malformed-yaml", lambda t: ev(t, suites=spec(t, "kind: [gen\n")), ["rooms.suite.yaml", "malformed YAML"]),
    ("spec-not-utf8", lambda t: ev(t, suites=spec(t, b"kind: \xff\n")), ["rooms.suite.yaml", "UTF-8"]),
    ("spec-a-list", lambda t: ev(t, suites=spec(t, "- gen\n")), ["rooms.suite.yaml", "'kind'", "'metric'"]),
    ("spec-no-metric", lambda t: ev(t, suites=spec(t, "kind: gen\n")), ["rooms.suite.yaml", "'metric'"]),
    ("spec-duplicate-key", lambda t: ev(t, suites=spec(t, "kind: gen\nkind: gen\nmetric: lcs\n")),
     ["rooms.suite.yaml", "duplicate key 'kind'"]),
    ("spec-unknown-key", lambda t: ev(t, suites=spec(t, "kind: gen\nmetric: lcs\ncolour: red\n")),
     ["rooms.suite.yaml", "colour"]),
    ("spec-kind-unknown", lambda t: ev(t, suites=spec(t, "kind: essay\nmetric: rouge\n")),
     ["rooms.suite.yaml", "kind", "'essay'"]),
    ("spec-metric-unknown", lambda t: ev(t, suites=spec(t, "kind: gen\nmetric: bleu\n")),
     ["rooms.suite.yaml", "metric", "'bleu'"]),
    ("spec-metric-of-the-other-kind", lambda t: ev(t, suites=spec(t, "kind: gen\nmetric: accuracy\n")),
     ["rooms.suite.yaml", "metric", "'accuracy'"]),
    ("spec-kind-not-the-rows", lambda t: ev(t, suites=spec(t, "kind: mc\nmetric: accuracy\nnormalisation: un\n")),
     ["rooms.suite.yaml", "kind: mc", "rooms.jsonl holds gen rows"]),
    ("spec-mc-without-normalisation", lambda t: ev(t, suites=spec(t, "kind: mc\nmetric: accuracy\n", MC)),
     ["rooms.suite.yaml", "normalisation"]),
    ("spec-normalisation-unknown", lambda t: ev(t, suites=spec(t, "kind: mc\nmetric: accuracy\nnormalisation: zz\n",
                                                                MC)), ["rooms.suite.yaml", "normalisation", "'zz'"]),
    ("spec-gen-with-normalisation", lambda t: ev(t, suites=spec(t, "kind: gen\nmetric: lcs\nnormalisation: un\n")),
     ["rooms.suite.yaml", "normalisation", "'un'"]),
    ("spec-world-not-a-bool", lambda t: ev(t, suites=spec(t, "kind: gen\nmetric: rouge\nworld: yes please\n")),
     ["rooms.suite.yaml", "world"]),
    ("spec-world-on-mc", lambda t: ev(t, suites=spec(t, "kind: mc\nmetric: accuracy\nnormalisation: un\n"
                                                       "world: true\n", MC)), ["rooms.suite.yaml", "world"]),
    ("spec-world-rows-without", lambda t: ev(t, suites=spec(t, "kind: gen\nmetric: rouge\nworld: true\n")),
     ["rooms.suite.yaml", "world: true", "rooms.jsonl carry none"]),
    ("spec-no-world-rows-with", lambda t: ev(t, suites=spec(t, "kind: gen\nmetric: rouge\n", PLAN)),
     ["rooms.suite.yaml", "world: false", "rooms.jsonl carry a world"]),
    ("spec-without-its-suite", lambda t: ev(t, suites=lone_sidecar(t)), ["old_name.suite.yaml", "old_name.jsonl"]),
    ("only-unknown", lambda t: ev(t, "--only", "nope"), "--only nope"),
    ("two-same-stems", lambda t: ["eval", "--suites", str(good(t)), str(suite(t, json.dumps(GEN), "plan_gen.json")),
                                  "--out", str(t / "o")], "two suite files named plan_gen"),
    ("limit-negative", lambda t: ev(t, "--limit", "-1"), "limit=-1"),
    ("limit-not-int", lambda t: ev(t, "--limit", "x"), "--limit"),
    ("limit-huge", lambda t: ev(t, "--limit", str(10**12)), "limit="),
    ("beams-zero", lambda t: ev(t, "--num-beams", "0"), "num_beams=0"),
    ("stop-unknown", lambda t: ev(t, "--stop", "never"), "stop='never'"),
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


def with_ppl(**kw):
    return json.dumps({**RESULTS, "perplexity": {"ppl": 12.5, "tokens": 100, "documents": 4, **kw}})


def gen_suite(**kw):
    return json.dumps({**RESULTS, "suites": {"plan_gen": {"format": "gen", "n": 2, "metric": "rouge", "rouge1": 0.4,
                                                          "rouge2": 0.2, "rougeL": 0.3, "exact_match": 0.0, **kw}}})


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
    ("results-accuracy-above-1", lambda t: rep(t, run_dir(t, with_suite(accuracy=1.5))),
     ["results.json", "suites.count_qa.accuracy", "[0, 1]", "1.5"]),
    ("results-accuracy-negative", lambda t: rep(t, run_dir(t, with_suite(accuracy=-0.25))),
     ["results.json", "suites.count_qa.accuracy"]),
    ("results-accuracy-bool", lambda t: rep(t, run_dir(t, with_suite(accuracy=True))),
     ["results.json", "suites.count_qa.accuracy", "True"]),
    ("results-accuracy-by-norm-above-1", lambda t: rep(t, run_dir(t, with_suite(accuracy_by_norm={"ln": 0.5,
                                                                                                 "un": 2}))),
     ["results.json", "suites.count_qa.accuracy_by_norm.un"]),
    ("results-accuracy-by-norm-a-list", lambda t: rep(t, run_dir(t, with_suite(accuracy_by_norm=[0.5]))),
     ["results.json", "suites.count_qa.accuracy_by_norm"]),
    ("results-normalisation-unknown", lambda t: rep(t, run_dir(t, with_suite(normalisation="zz"))),
     ["results.json", "suites.count_qa.normalisation"]),
    ("results-mc-with-rouge", lambda t: rep(t, run_dir(t, with_suite(metric="rouge", rougeL=0.5))),
     ["results.json", "suites.count_qa.metric"]),
    ("results-n-negative", lambda t: rep(t, run_dir(t, with_suite(n=-1))), ["results.json", "suites.count_qa.n"]),
    ("results-n-float", lambda t: rep(t, run_dir(t, with_suite(n=2.5))), ["results.json", "suites.count_qa.n"]),
    ("results-n-bool", lambda t: rep(t, run_dir(t, with_suite(n=True))), ["results.json", "suites.count_qa.n"]),
    ("results-n-null", lambda t: rep(t, run_dir(t, with_suite(n=None))), ["results.json", "suites.count_qa.n"]),
    ("results-rouge-above-1", lambda t: rep(t, run_dir(t, gen_suite(rougeL=1.2))),
     ["results.json", "suites.plan_gen.rougeL"]),
    ("results-rouge-headline-missing", lambda t: rep(t, run_dir(t, gen_suite(rougeL=None))),
     ["results.json", "suites.plan_gen.rougeL"]),
    ("results-other-score-string", lambda t: rep(t, run_dir(t, gen_suite(rouge1="0.4"))),
     ["results.json", "suites.plan_gen.rouge1"]),
    ("results-exact-match-negative", lambda t: rep(t, run_dir(t, gen_suite(exact_match=-1))),
     ["results.json", "suites.plan_gen.exact_match"]),
    ("results-gen-metric-unknown", lambda t: rep(t, run_dir(t, gen_suite(metric="bleu"))),
     ["results.json", "suites.plan_gen.metric", "'bleu'"]),
    ("results-executability-above-1", lambda t: rep(t, run_dir(t, gen_suite(executability={
        "step_fraction": 1.5, "executable": 0.5, "goal_success": 0.0}))),
     ["results.json", "suites.plan_gen.executability.step_fraction"]),
    ("results-perplexity-true", lambda t: rep(t, run_dir(t, with_ppl(ppl=True))), ["results.json", "perplexity.ppl"]),
    ("results-perplexity-infinity", lambda t: rep(t, run_dir(t, with_ppl().replace("12.5", "Infinity"))),
     ["results.json", "Infinity"]),
    ("results-perplexity-huge", lambda t: rep(t, run_dir(t, with_ppl().replace("12.5", "1e999"))),
     ["results.json", "perplexity.ppl"]),
    ("results-perplexity-zero", lambda t: rep(t, run_dir(t, with_ppl(ppl=0))), ["results.json", "perplexity.ppl"]),
    ("results-perplexity-negative", lambda t: rep(t, run_dir(t, with_ppl(ppl=-3.5))),
     ["results.json", "perplexity.ppl", "-3.5"]),
    ("results-perplexity-null", lambda t: rep(t, run_dir(t, with_ppl(ppl=None))), ["results.json", "perplexity.ppl"]),
    ("results-perplexity-base2-negative", lambda t: rep(t, run_dir(t, with_ppl(ppl_base2_e2wm=-1))),
     ["results.json", "perplexity.ppl_base2_e2wm"]),
    ("results-perplexity-tokens-float", lambda t: rep(t, run_dir(t, with_ppl(tokens=10.5))),
     ["results.json", "perplexity.tokens"]),
    ("results-second-run-out-of-range", lambda t: rep(t, run_dir(t, json.dumps(RESULTS)),
                                                      run_dir(t, with_suite(accuracy=7), "b")),
     ["b/results.json", "suites.count_qa.accuracy"]),
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
    monkeypatch.setattr(harness, "_gen", lambda spec, rows, preds: {"metric": "exact_match",
                                                                    "exact_match": float("nan")})
    assert main(["eval", "--suites", str(good(tmp_path)), "--out", str(tmp_path / "out"),
                 "--max-new-tokens", "2", "--num-beams", "1"]) == 0
    text = (tmp_path / "out" / "results.json").read_text()
    assert "NaN" not in text and json.loads(text)["suites"]["plan_gen"]["exact_match"] is None


def test_plan_rows_are_checked_against_their_world_before_the_model_loads(tmp_path, cli_error, monkeypatch):
    """A goal fact naming no node of the scene used to be scored 0 after generation; now the suite is refused
    while it is read, and a good world reads back unchanged."""
    from e2wm.data.eval_format import read_eval
    from e2wm.eval import harness
    assert read_eval(suite(tmp_path, json.dumps(PLAN) + "\n", "p.jsonl")) == ("gen", [PLAN])
    monkeypatch.setattr(harness, "load", lambda cfg: pytest.fail("the model loaded before the suites were read"))
    cli_error(ev(tmp_path, suites=plan_suite(tmp_path, goals=["<fork> (24) || INSIDE || <sofa> (13)"])),
              ["plan_gen.jsonl:2", "'world.goals[0]'", "<sofa> (13)"])
    cli_error(ev(tmp_path, suites=spec(tmp_path, "kind: gen\nmetric: bleu\n")), ["rooms.suite.yaml", "'bleu'"])
    assert not (tmp_path / "out").exists()
