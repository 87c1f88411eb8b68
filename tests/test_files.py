"""Outputs never alias inputs (`e2wm.files.apart`), through every command that writes a folder: `--out`
that is, holds or lies inside something the command reads is refused in one line, before any work, and
the input stays byte-identical; and the `merge --base X --out X` data-loss regression."""
import json
from pathlib import Path

import pytest
import yaml
from run_helpers import tiny_train_config

from e2wm.cli import main
from e2wm.errors import E2WMError
from e2wm.files import apart, atomic_dir, atomic_file, read_object
from e2wm.train.model import add_lora, byte_tokenizer, tiny_causal_lm


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("out,inp,how", [("a", "a", "is"), ("a", "a/b", "holds"), ("a/b", "a", "lies inside")])
def test_apart_names_the_relation_and_the_input(tmp_path, out, inp, how):
    (tmp_path / "a" / "b").mkdir(parents=True)
    with pytest.raises(E2WMError, match=f"{how} the input --thing"):
        apart(tmp_path / out, {"--thing": tmp_path / inp})


def test_apart_allows_siblings_hub_ids_and_nothing(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "ab").mkdir()   # a prefix of the name is not a parent
    apart(tmp_path / "ab", {"--model": tmp_path / "a", "--hub": "gpt2", "--none": None, "--builtin": "builtin:pydoc"})
    apart(tmp_path / "b", [("run", tmp_path / "a"), ("run", tmp_path / "ab")])


def test_apart_follows_symlinks(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(E2WMError, match="is the input --adapter"):
        apart(tmp_path / "link", {"--adapter": tmp_path / "real"})


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_model_dir):
    """An adapter of the tiny model, a first merge of it (X), a fake eval run, an episodes-like folder."""
    w = tmp_path_factory.mktemp("apart")
    peft = add_lora(tiny_causal_lm(), r=4)
    for _, p in peft.named_parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.05)   # B = 0 would make the merge equal to the base
    peft.save_pretrained(str(w / "adapter"))
    peft.peft_config["default"].base_model_name_or_path = str(tiny_model_dir)
    cfg = json.loads((w / "adapter" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tiny_model_dir)
    (w / "adapter" / "adapter_config.json").write_text(json.dumps(cfg))
    byte_tokenizer().save_pretrained(str(w / "adapter"))
    assert main(["merge", "--adapter", str(w / "adapter"), "--out", str(w / "X")]) == 0
    assert main(["merge", "--adapter", str(w / "adapter"), "--out", str(w / "bases" / "X")]) == 0
    (w / "data.jsonl").write_text(json.dumps({"input": "q?", "ref": "a"}) + "\n")
    (w / "suite.jsonl").write_text(json.dumps({"question": "q?", "options": ["a", "b"], "answer": 0}) + "\n")
    return w


def test_merge_out_equal_to_base_is_refused_and_the_base_kept(ws, cli_error):
    before = _snapshot(ws)
    line = cli_error(["merge", "--adapter", ws / "adapter", "--base", ws / "X", "--out", ws / "X"], ["--out", "--base"])
    assert "is the input" in line
    cli_error(["merge", "--adapter", ws / "adapter", "--base", ws / "X", "--out", ws / "X", "--force"], "--base")
    assert _snapshot(ws) == before


def _train_config(ws, tiny_model_dir, **over) -> Path:
    f = ws.parent / f"train-{abs(hash(json.dumps(over, sort_keys=True)))}.yaml"
    out, model = over.pop("out"), over.pop("model", tiny_model_dir)
    f.write_text(yaml.safe_dump(tiny_train_config(out, model, ws / "data.jsonl", **over)))
    return f


CASES = {
    "merge out is the adapter": lambda w, m: (["merge", "--adapter", w / "adapter", "--out", w / "adapter"],
                                              "--adapter"),
    "merge out inside the adapter": lambda w, m: (["merge", "--adapter", w / "adapter", "--out", w / "adapter" / "m"],
                                                  ["lies inside", "--adapter"]),
    "merge out holds the base": lambda w, m: (["merge", "--adapter", w / "adapter", "--base", w / "bases" / "X",
                                               "--out", w / "bases", "--force"], ["holds", "--base"]),
    "eval out is the model": lambda w, m: (["eval", "--model", w / "X", "--suites", w / "suite.jsonl",
                                            "--out", w / "X"], ["--model"]),
    "eval out is the adapter": lambda w, m: (["eval", "--model", m, "--adapter", w / "adapter",
                                              "--suites", w / "suite.jsonl", "--out", w / "adapter"], ["--adapter"]),
    "eval out inside the model": lambda w, m: (["eval", "--model", w / "X", "--suites", w / "suite.jsonl",
                                                "--out", w / "X" / "eval"], ["lies inside", "--model"]),
    "eval out holds a suite": lambda w, m: (["eval", "--model", m, "--suites", w / "suite.jsonl",
                                             "--out", w], ["holds", "--suites"]),
    "report out inside a run": lambda w, m: (["report", w / "X", "--out", w / "X" / "report"], ["lies inside", "run"]),
    "fisher out is the model": lambda w, m: (["fisher", "--model", w / "X", "--corpus", "builtin:pydoc",
                                              "--out", w / "X", "--force"], ["--model"]),
    "fisher out holds the corpus": lambda w, m: (["fisher", "--model", m, "--corpus", w / "data.jsonl",
                                                  "--out", w, "--force"], ["holds", "--corpus"]),
    "build-data out inside the episodes": lambda w, m: (["build-data", "--episodes", w / "X", "--out",
                                                         w / "X" / "data"], ["lies inside", "--episodes"]),
    "train out holds its data": lambda w, m: (["train", "--config", _train_config(w, m, out=str(w)), "--force"],
                                              ["holds", "data.path"]),
    "train out is the model": lambda w, m: (["train", "--config", _train_config(w, m, out=str(w / "X"), model=str(w / "X")),
                                                      "--force"],
                                            ["is the input", "model.name_or_path"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_out_overlapping_an_input_is_refused(ws, tiny_model_dir, cli_error, case):
    argv, names = CASES[case](ws, tiny_model_dir)
    before = _snapshot(ws)
    cli_error(argv, names)
    assert _snapshot(ws) == before


# ---------------------------------------------------------------- the one atomic writer

def test_atomic_file_and_dir_keep_the_old_on_failure_and_replace_it_on_success(tmp_path):
    f, d = tmp_path / "f.bin", tmp_path / "d"
    f.write_bytes(b"old")
    d.mkdir()
    (d / "x").write_text("old")
    for writer, target in ((atomic_file, f), (atomic_dir, d)):
        with pytest.raises(RuntimeError), writer(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            (tmp / "x" if tmp.is_dir() else tmp).write_text("half")
            raise RuntimeError("interrupted")
    assert f.read_bytes() == b"old" and (d / "x").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.bin"]   # no temporary left behind
    with atomic_file(f) as tmp:
        tmp.write_bytes(b"new")
    with atomic_dir(d) as tmp:
        (tmp / "y").write_text("new")
        assert (d / "x").read_text() == "old"   # the old folder stays until the new one is whole
    assert f.read_bytes() == b"new" and sorted(p.name for p in d.iterdir()) == ["y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.bin"]


@pytest.mark.parametrize("text, found", [
    ('{"a": 1}', None), ("[1]", "expected a JSON object as a run description, got list"),
    ('{"a": ', "malformed JSON"), (None, "no such run description")])
def test_read_object_is_one_line_naming_the_file_between_before_and_after(tmp_path, text, found):
    f = tmp_path / "run.json"
    if text is not None:
        f.write_text(text)
    if found is None:
        assert read_object(f, "run description") == {"a": 1}
        return
    with pytest.raises(E2WMError) as e:
        read_object(f, "run description", before="--x: ", after="; is it a run?")
    msg = str(e.value)
    assert msg.startswith(f"--x: {f}") and found in msg and msg.endswith("; is it a run?") and "\n" not in msg
