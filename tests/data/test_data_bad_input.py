"""Bad input to `e2wm build-data`: exit 2, one line naming the file, field, flag or line; the dataset
is never half-written, and nothing outside --episodes is read."""
import hashlib
import json
import os

import pytest
from episode_helpers import seal, sealed_collection


def episodes(tmp):
    return sealed_collection(tmp / "ep")


def bd(tmp, *extra, ep=None):
    return ["build-data", "--episodes", str(ep or episodes(tmp)), "--out", str(tmp / "out"), *extra]


def manifest(tmp, change):
    d = episodes(tmp)
    m = json.loads((d / "manifest.json").read_text())
    change(m)
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def rename_shard(m, name):
    m["shards"][name] = m["shards"].pop("shard-00000.jsonl")


def raw_manifest(tmp, data: bytes):
    d = episodes(tmp)
    (d / "manifest.json").write_bytes(data)
    return d


def shard_lines(tmp, edit, reseal=True, name="shard-00000.jsonl"):
    """The collection with its shard's lines edited by `edit(lines) -> lines` (bytes), resealed."""
    d = episodes(tmp)
    lines = (d / "shard-00000.jsonl").read_bytes().splitlines()
    (d / name).write_bytes(b"\n".join(edit(lines)) + b"\n")
    return seal(d) if reseal else d


def first_episode(change):
    def edit(lines):
        ep = json.loads(lines[0])
        ep = change(ep)
        return [json.dumps(ep).encode(), *lines[1:]]
    return edit


def linked_shard(tmp, target):
    d = episodes(tmp)
    (d / "shard-00000.jsonl").unlink()
    os.symlink(target, d / "shard-00000.jsonl")
    return d


def outside_file(tmp):
    p = tmp / "outside.jsonl"
    p.write_text((episodes(tmp) / "shard-00000.jsonl").read_text())
    return p


def a_dir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def config(tmp, text, name="data.yaml"):
    p = tmp / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


def with_config(text):
    return lambda t: bd(t, "--config", config(t, text))


CASES = [
    ("episodes-missing", lambda t: bd(t, ep=t / "none"), "none: no such episodes directory"),
    ("episodes-a-file", lambda t: bd(t, ep=config(t, "x", "f.txt")), "f.txt: not a directory"),
    ("episodes-no-manifest", lambda t: bd(t, ep=(t / "e").mkdir() or t / "e"), "no manifest.json"),
    ("manifest-malformed", lambda t: bd(t, ep=raw_manifest(t, b"{\n  nope")), ["manifest.json:2", "malformed"]),
    ("manifest-not-utf8", lambda t: bd(t, ep=raw_manifest(t, b"\xff\xfe{}")), ["manifest.json", "UTF-8"]),
    ("manifest-nan", lambda t: bd(t, ep=raw_manifest(t, b'{"job": NaN}')), ["manifest.json", "NaN"]),
    ("manifest-deep", lambda t: bd(t, ep=raw_manifest(t, b"[" * 200_000)), "nested too deeply"),
    ("manifest-a-list", lambda t: bd(t, ep=raw_manifest(t, b"[]")), "not a collect manifest"),
    ("manifest-no-shards-key", lambda t: bd(t, ep=manifest(t, lambda m: m.pop("shards"))), "no 'shards' key"),
    ("manifest-shards-a-list", lambda t: bd(t, ep=manifest(t, lambda m: m.update(shards=[]))), "'shards'"),
    ("manifest-no-shards", lambda t: bd(t, ep=(lambda d: (d / "shard-00000.jsonl").unlink() or d)(
        manifest(t, lambda m: m.update(shards={})))), "lists no shards"),
    ("manifest-shard-parent-path", lambda t: bd(t, ep=manifest(t, lambda m: rename_shard(m, "../../etc/hostname"))),
     ["manifest.json", "shard name '../../etc/hostname'"]),
    ("manifest-shard-absolute", lambda t: bd(t, ep=manifest(t, lambda m: rename_shard(m, "/etc/passwd"))),
     ["manifest.json", "shard name '/etc/passwd'"]),
    ("manifest-shard-entry-a-string", lambda t: bd(t, ep=manifest(
        t, lambda m: m["shards"].update({"shard-00000.jsonl": "x"}))), "shards.shard-00000.jsonl"),
    ("manifest-sha-not-hex", lambda t: bd(t, ep=manifest(
        t, lambda m: m["shards"]["shard-00000.jsonl"].update(sha256="abc"))), "sha256"),
    ("manifest-lists-missing-shard", lambda t: bd(t, ep=manifest(
        t, lambda m: m["shards"].update({"shard-00001.jsonl": m["shards"]["shard-00000.jsonl"]}))),
     "shard-00001.jsonl: listed in"),
    ("shard-tampered", lambda t: bd(t, ep=shard_lines(t, lambda ls: ls[:-1], reseal=False)),
     "shard-00000.jsonl: altered since"),
    ("shard-stray", lambda t: bd(t, ep=shard_lines(t, lambda ls: ls[:1], reseal=False, name="shard-00001.jsonl")),
     "shard-00001.jsonl: not listed in"),
    ("shard-symlink-dev-zero", lambda t: bd(t, ep=linked_shard(t, "/dev/zero")), "leads outside"),
    ("shard-symlink-outside", lambda t: bd(t, ep=linked_shard(t, outside_file(t))), "leads outside"),
    ("shard-a-directory", lambda t: bd(t, ep=(lambda d: ((d / "shard-00000.jsonl").unlink(),
                                                        (d / "shard-00000.jsonl").mkdir(), d)[2])(episodes(t))),
     "is a directory"),
    ("episode-repeated", lambda t: bd(t, ep=shard_lines(t, lambda ls: [*ls, ls[0]])), "repeats"),
    ("episode-repeated-across-shards", lambda t: bd(t, ep=(lambda d: seal(d) if (d / "shard-00001.jsonl").write_bytes(
        (d / "shard-00000.jsonl").read_bytes().splitlines()[3] + b"\n") else d)(episodes(t))),
     ["shard-00001.jsonl:1", "repeats", "shard-00000.jsonl:4"]),
    ("episode-malformed-json", lambda t: bd(t, ep=shard_lines(t, lambda ls: [ls[0], b"{oops", *ls[1:]])),
     ["shard-00000.jsonl:2", "malformed JSON"]),
    ("episode-not-utf8", lambda t: bd(t, ep=shard_lines(t, lambda ls: [ls[0], b'{"key": "\xff"}'])),
     ["shard-00000.jsonl", "UTF-8"]),
    ("episode-nan", lambda t: bd(t, ep=shard_lines(t, lambda ls: [ls[0].replace(b'"seed":', b'"seed":NaN,"x":')])),
     ["shard-00000.jsonl:1", "NaN"]),
    ("episode-a-list", lambda t: bd(t, ep=shard_lines(t, lambda ls: [b"[1, 2]", *ls])),
     ["shard-00000.jsonl:1", "expected a JSON object"]),
    ("episode-missing-key", lambda t: bd(t, ep=shard_lines(t, first_episode(lambda e: {k: v for k, v in e.items()
                                                                                     if k != "key"}))),
     ["shard-00000.jsonl:1", "missing field(s) key"]),
    ("episode-unknown-field", lambda t: bd(t, ep=shard_lines(t, first_episode(lambda e: {**e, "extra": 1}))),
     ["shard-00000.jsonl:1", "unknown field(s) extra"]),
    ("episode-steps-a-string", lambda t: bd(t, ep=shard_lines(t, first_episode(lambda e: {**e, "steps": "abc"}))),
     "shard-00000.jsonl:1"),
    ("episode-scene-unknown", lambda t: bd(t, ep=shard_lines(t, first_episode(lambda e: {**e, "scene": "nowhere:1"}))),
     "shard-00000.jsonl:1"),
    ("episode-seed-a-string", lambda t: bd(t, ep=shard_lines(t, first_episode(lambda e: {**e, "seed": "x"}))),
     "shard-00000.jsonl:1"),
    ("out-exists", lambda t: ["build-data", "--episodes", str(episodes(t)), "--out", str(a_dir(t / "old"))],
     "already exists"),
    ("out-is-the-episodes", lambda t: ["build-data", "--episodes", str(episodes(t)), "--out", str(t / "ep")],
     ["--out", "is the input --episodes"]),
    ("out-inside-the-episodes", lambda t: ["build-data", "--episodes", str(episodes(t)), "--out", str(t / "ep" / "d")],
     ["--out", "lies inside the input --episodes"]),
    ("out-a-file", lambda t: ["build-data", "--episodes", str(episodes(t)), "--out", config(t, "x", "f.txt")],
     ["--out", "not a directory"]),
    ("out-empty", lambda t: ["build-data", "--episodes", str(episodes(t)), "--out", ""], "--out: the path is empty"),
    ("config-missing", lambda t: bd(t, "--config", str(t / "none.yaml")), "none.yaml: no such config file"),
    ("config-a-directory", lambda t: bd(t, "--config", str(t)), "is a directory"),
    ("config-not-utf8", with_config(b"seed: \xff\n"), ["data.yaml:1", "UTF-8"]),
    ("config-duplicate-key", with_config("seed: 1\nngram: 8\nseed: 2\n"), ["data.yaml:3", "duplicate key 'seed'"]),
    ("config-deep", with_config("a: " + "[" * 5000), ["data.yaml", "nested too deeply"]),
    ("config-malformed", with_config("seed: [1\n"), ["data.yaml", "malformed YAML"]),
    ("config-a-list", with_config("- 1\n"), ["data.yaml", "expected a mapping"]),
    ("config-unknown-key", with_config("sed: 1\n"), "unknown key(s) sed"),
    ("config-eval-fraction", with_config("eval_fraction: 1.5\n"), "eval_fraction=1.5"),
    ("config-template", with_config("template: fancy\n"), "template='fancy'"),
    ("config-ngram-small", with_config("ngram: 1\n"), "ngram=1"),
    ("config-ngram-huge", with_config("ngram: 100000000\n"), "ngram=100000000"),
    ("config-threshold", with_config("threshold: -1\n"), "threshold"),
    ("config-weights-a-string", with_config("weights: heavy\n"), "weights"),
    ("config-weights-unknown-task", with_config("weights: {countng: 2}\n"), "weights.countng: unknown task"),
    ("config-weights-nan", with_config("weights: {counting: .nan}\n"), "weights.counting"),
    ("config-min-suite-rows", with_config("min_suite_rows: -1\n"), "min_suite_rows=-1"),
    ("config-min-suite-rows-huge", with_config("min_suite_rows: 1000000000000\n"), "min_suite_rows="),
    ("config-seed-negative", with_config("seed: -1\n"), "seed=-1"),
    ("config-seed-a-float", with_config("seed: 1.5\n"), "seed"),
    ("preset-unknown", lambda t: bd(t, "--preset", "nope"), "--preset nope"),
    ("preset-and-config", lambda t: bd(t, "--preset", "paper", "--config", config(t, "seed: 1\n")), "not both"),
    ("set-without-equals", lambda t: bd(t, "--set", "seed"), "--set 'seed'"),
    ("set-wrong-type", lambda t: bd(t, "--set", "seed=x"), "seed"),
    ("set-into-a-scalar", lambda t: bd(t, "--set", "seed.x=1"), "seed is not a section"),
    ("flag-seed-text", lambda t: bd(t, "--seed", "x"), "--seed"),
    ("flag-eval-fraction-text", lambda t: bd(t, "--eval-fraction", "lots"), "--eval-fraction"),
    ("tokenizer-missing", lambda t: bd(t, "--tokenizer", str(t / "no-tok")), "no-tok"),
]


@pytest.mark.parametrize("make,names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_build_data_bad_input(tmp_path, cli_error, make, names):
    argv = make(tmp_path)
    cli_error(argv, names)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]


def test_build_data_reads_nothing_outside_episodes(tmp_path, cli_error):
    """A manifest naming a file outside --episodes (with its true hash) is refused; nothing is written."""
    d = episodes(tmp_path)
    outside = outside_file(tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["shards"] = {"../outside.jsonl": {**m["shards"]["shard-00000.jsonl"],
                                         "sha256": hashlib.sha256(outside.read_bytes()).hexdigest()}}
    (d / "manifest.json").write_text(json.dumps(m))
    before = sorted(p.name for p in tmp_path.iterdir())
    line = cli_error(bd(tmp_path, ep=d), ["manifest.json", "../outside.jsonl"])
    assert "remove" not in line and sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_tampered_or_doubled_episode_never_enters_the_dataset(tmp_path, cli_error):
    """An episode appended to a shard (hash differs) or repeated in a resealed shard is refused."""
    d = episodes(tmp_path)
    shard = d / "shard-00000.jsonl"
    first = shard.read_bytes().splitlines()[0]
    shard.write_bytes(shard.read_bytes() + first + b"\n")
    cli_error(bd(tmp_path, ep=d), "altered since")
    seal(d)
    cli_error(bd(tmp_path, ep=d), ["repeats", "shard-00000.jsonl:1"])
    assert not (tmp_path / "out").exists()
