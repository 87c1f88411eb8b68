"""`e2wm eval` end to end with the tiny model: our suites and files in E2WM's released format."""
import json

import pytest

from e2wm.cli import main

# E2WM's released shapes (JSON lines; options not in the prompt; count options 0-4 in order).
RELEASED = {
    "count.json": {"input": "Q: Sue was at home. She put the rug on the desk. How many items are there on the "
                            "desk?\nA:", "answer": "1", "answer_list": ["0", "1", "2", "3", "4"]},
    "housework_qa.json": {"input": "Question: To wash clothes, a possibly related item could be\nAnswer:",
                          "answer_list": ["highlighter", "crackers", "laundry detergent", "cupcake"],
                          "answer": "laundry detergent"},
    "obj_move_path.json": {"input": "Anna took the hat. Anna went to the bathroom. Anna left the hat.\n"
                                    "Question: What is the order of the rooms where the hat appeared?\nAnswer:",
                           "ref": "bedroom, bathroom"},
    "plan_gen.json": {"ref": "Walk to home office. Walk to television. Switch off television.",
                      "input": "Q: How to turn off tv? Given items include television, home office. The "
                               "television is on.\nA:"},
}


def _released(tmp_path):
    d = tmp_path / "released"
    d.mkdir()
    for name, row in RELEASED.items():
        (d / name).write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    return d


@pytest.mark.slow
def test_tiny_model_evaluates_released_files_and_our_suites(tmp_path, built_dataset, capsys):
    common = ["--limit", "2", "--num-beams", "2", "--max-new-tokens", "12"]
    assert main(["eval", "--suites", str(_released(tmp_path)), "--out", str(tmp_path / "e2wm"), *common]) == 0
    r = json.loads((tmp_path / "e2wm" / "results.json").read_text())
    s = r["suites"]
    assert set(s) == {"count", "housework_qa", "obj_move_path", "plan_gen"}
    assert s["count"]["normalisation"] == "ln" and s["housework_qa"]["normalisation"] == "un"
    assert all(0 <= s[n]["accuracy"] <= 1 and s[n]["n"] == 2 for n in ("count", "housework_qa"))
    assert s["obj_move_path"]["metric"] == "lcs" and "rougeL" in s["plan_gen"]
    assert s["plan_gen"]["executability"].startswith("not applicable")   # E2WM's rows have no world
    assert r["decoding"] == {"num_beams": 2, "max_new_tokens": 12, "stop": "newline", "kept": "first line"}
    assert len(s["count"]["sha256"]) == 64
    assert "| count | 2 | accuracy (ln) |" in (tmp_path / "e2wm" / "results.md").read_text()
    assert main(["eval", "--suites", str(tmp_path / "released" / "count.json"), "--ppl-corpus",
                 "builtin:pydoc", "--ppl-docs", "3", "--ppl-max-length", "64", "--out",
                 str(tmp_path / "ppl"), *common]) == 0
    p = json.loads((tmp_path / "ppl" / "results.json").read_text())["perplexity"]
    assert p["documents"] == 3 and p["tokens"] > 100 and p["ppl"] > 1
    assert abs(p["ppl_base2_e2wm"] - 2 ** p["nll"]) < 1e-9
    assert "E2WM's 2^NLL, for comparison only" in (tmp_path / "ppl" / "results.md").read_text()
    ours = tmp_path / "ours"
    assert main(["eval", "--suites", str(built_dataset / "eval"), "--only", "plan_gen", "act_recog",
                 "obj_path", "--out", str(ours), *common]) == 0
    s = json.loads((ours / "results.json").read_text())["suites"]
    assert set(s["plan_gen"]["executability"]) == {"step_fraction", "executable", "goal_success"}
    assert s["obj_path"]["metric"] == "lcs" and s["act_recog"]["normalisation"] == "ln"
    renamed = tmp_path / "renamed"   # our suites renamed with their sidecars keep their declared metrics
    renamed.mkdir()
    for old, new in (("plan_gen", "errands"), ("obj_path", "rooms_seen"), ("housework_qa", "chores")):
        for ext in (".jsonl", ".suite.yaml"):
            (renamed / f"{new}{ext}").write_bytes((built_dataset / "eval" / f"{old}{ext}").read_bytes())
    assert main(["eval", "--suites", str(renamed), "--out", str(tmp_path / "renamed_out"), *common]) == 0
    r = json.loads((tmp_path / "renamed_out" / "results.json").read_text())["suites"]
    assert r["errands"]["metric"] == "rouge" and set(r["errands"]["executability"]) == {
        "step_fraction", "executable", "goal_success"}
    assert r["rooms_seen"]["metric"] == "lcs" and r["chores"]["normalisation"] == "un"
    assert r["chores"]["spec_source"] == "sidecar chores.suite.yaml"
    assert main(["report", str(tmp_path / "e2wm"), str(ours), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| suite | metric | e2wm | ours |" in md and "| plan_gen | rougeL |" in md
    assert (tmp_path / "rep" / "mc.png").read_bytes()[:4] == b"\x89PNG"
    both = ["eval", "--suites", str(tmp_path / "released"), str(built_dataset / "eval"), "--out", str(ours)]
    assert main(both) == 2 and "two suite files named" in capsys.readouterr().err


def test_a_renamed_suite_is_scored_by_its_declared_metric(tmp_path):
    """Suites named without "plan" or "path" keep what their sidecars declare; a file with neither sidecar nor
    known name gets its kind's default, E2WM's known names theirs; results.json says where each spec came from."""
    from e2wm.data.eval_format import SuiteSpec, spec_text
    d = tmp_path / "renamed"
    d.mkdir()
    for stem, row, spec in [("walks", "obj_move_path.json", SuiteSpec("gen", "lcs")),
                            ("howto", "plan_gen.json", SuiteSpec("gen", "rouge")),
                            ("chores", "housework_qa.json", SuiteSpec("mc", "accuracy", "un")),
                            ("misc", "plan_gen.json", None), ("quiz", "housework_qa.json", None),
                            ("count", "count.json", None)]:
        (d / f"{stem}.jsonl").write_text(json.dumps(RELEASED[row]) + "\n")
        if spec:
            (d / f"{stem}.suite.yaml").write_text(spec_text(stem, spec))
    assert main(["eval", "--suites", str(d), "--out", str(tmp_path / "o"), "--num-beams", "1",
                 "--max-new-tokens", "4"]) == 0
    s = json.loads((tmp_path / "o" / "results.json").read_text())["suites"]
    got = {n: (v["metric"], v.get("normalisation"), v["spec_source"]) for n, v in s.items()}
    assert got == {"walks": ("lcs", None, "sidecar walks.suite.yaml"),
                   "howto": ("rouge", None, "sidecar howto.suite.yaml"),
                   "chores": ("accuracy", "un", "sidecar chores.suite.yaml"),
                   "misc": ("exact_match", None, "default for a gen suite"),
                   "quiz": ("accuracy", "ln", "default for a mc suite"),
                   "count": ("accuracy", "ln", "E2WM's known name count")}
    assert "lcs" in s["walks"] and "rougeL" in s["howto"] and s["howto"]["executability"].startswith("not applicable")
    assert "rougeL" not in s["misc"] and "executability" not in s["misc"]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    d = _released(tmp_path)
    (d / "count.json").write_text(json.dumps(RELEASED["count.json"]) + "\n{\"input\": 3}\n")
    assert main(["eval", "--suites", str(d), "--only", "count", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "count.json:2" in err[0]
    assert main(["eval", "--suites", str(d), "--only", "housework_qa", "--adapter", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such adapter directory" in err[0]
    assert main(["eval", "--suites", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_an_adapter_for_another_base_model_fails_in_one_line(tmp_path, capsys):
    from e2wm.train.model import add_lora, tiny_causal_lm
    other = add_lora(tiny_causal_lm(hidden=64), r=4, alpha=8, targets=("q_proj", "v_proj"))
    other.save_pretrained(str(tmp_path / "adapter"))
    d = _released(tmp_path)
    assert main(["eval", "--suites", str(d / "count.json"), "--adapter", str(tmp_path / "adapter"),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit tiny" in err[0]
    assert not (tmp_path / "o").exists()


def test_a_fitting_adapter_is_applied(tmp_path):
    from e2wm.train.model import add_lora, tiny_causal_lm
    add_lora(tiny_causal_lm(), r=4, alpha=8, targets=("q_proj", "v_proj")).save_pretrained(str(tmp_path / "a"))
    d = _released(tmp_path)
    assert main(["eval", "--suites", str(d / "count.json"), "--adapter", str(tmp_path / "a"),
                 "--out", str(tmp_path / "o")]) == 0
    r = json.loads((tmp_path / "o" / "results.json").read_text())
    assert r["adapter"] == str(tmp_path / "a") and r["suites"]["count"]["n"] == 2


def test_perplexity_documents_are_checked_disjoint_from_the_fishers(tmp_path, capsys):
    import torch

    from e2wm.train.corpus import corpus_hash, load_texts
    from e2wm.train.fisher_io import save_fisher
    docs = load_texts("builtin:pydoc")
    save_fisher(tmp_path / "f", {"w": torch.zeros(1)}, {"samples": 5, "corpus_sha256": corpus_hash(docs[:5])})
    d = _released(tmp_path)
    base = ["eval", "--suites", str(d / "count.json"), "--ppl-corpus", "builtin:pydoc", "--ppl-max-length", "32",
            "--fisher", str(tmp_path / "f")]
    assert main([*base, "--ppl-docs", "2", "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "results.json").read_text())["perplexity"]["fisher"] == \
        "disjoint: the Fisher read documents 0..4"
    assert main([*base, "--ppl-docs", str(len(docs) - 4), "--out", str(tmp_path / "o2")]) == 2
    assert f"overlap the documents the Fisher read (--fisher {tmp_path / 'f'}: 0..4) in 4..4" in capsys.readouterr().err


def _kl_adapter(path, start: int, end: int, sha256: str):
    """A LoRA adapter exported from a kl run that read documents [start, end) (the marker `e2wm export` writes)."""
    from e2wm.train.export import KL_CORPUS, MARKER
    from e2wm.train.model import add_lora, tiny_causal_lm
    add_lora(tiny_causal_lm(), r=4, alpha=8, targets=("q_proj", "v_proj")).save_pretrained(str(path))
    (path / MARKER).write_text(json.dumps({"source": "step", KL_CORPUS: {
        "corpus": "builtin:pydoc", "start": start, "end": end, "corpus_sha256": sha256}}))
    return path


@pytest.mark.slow
def test_perplexity_documents_are_checked_disjoint_from_a_kl_runs(tmp_path, cli_error):
    """The adapter says which documents its kl regulariser read: perplexity may not score them."""
    from e2wm.train.corpus import corpus_hash, load_texts
    docs = load_texts("builtin:pydoc")
    n = len(docs)
    kl = _kl_adapter(tmp_path / "kl", 10, n - 3, corpus_hash(docs[10:n - 3]))
    other = _kl_adapter(tmp_path / "other", 10, n, corpus_hash(["another corpus"]))
    base = ["eval", "--suites", str(_released(tmp_path) / "count.json"), "--ppl-corpus", "builtin:pydoc",
            "--ppl-max-length", "32"]
    assert main([*base, "--adapter", str(kl), "--ppl-docs", "3", "--out", str(tmp_path / "o")]) == 0
    ppl = json.loads((tmp_path / "o" / "results.json").read_text())["perplexity"]
    assert ppl["kl"] == f"disjoint: the kl run read documents 10..{n - 4}" and ppl["fisher"].startswith("not checked")
    cli_error([*base, "--adapter", kl, "--ppl-docs", "5", "--out", tmp_path / "o2"],
              [f"its last 5 of {n} documents ({n - 5}..{n - 1})", f"the kl run read (--adapter {kl}: 10..{n - 4})",
               f"in {n - 5}..{n - 4}", "lower --ppl-docs to 3"])
    assert not (tmp_path / "o2").exists()
    assert main([*base, "--adapter", str(other), "--ppl-docs", "5", "--out", str(tmp_path / "o3")]) == 0
    assert json.loads((tmp_path / "o3" / "results.json").read_text())["perplexity"]["kl"] == \
        "disjoint: the kl run read another corpus"
