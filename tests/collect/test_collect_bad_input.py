"""Bad input to `e2wm collect`: one line naming the file, field, flag or manifest key; exit 2.

Most cases run `collect --check` (config, output folder and manifest checks, no Ray); those that
must reach the Ray start-up (an unreachable address) run the real command. Regression tests show
that nothing outside --out is read or written and that no user file is overwritten.
"""
import hashlib
import json
import os
import socket

import pytest
import yaml

from e2wm.cli import main
from e2wm.collect.config import CollectConfig
from e2wm.collect.run import MANIFEST
from e2wm.world.world import ENGINE_VERSION

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

SMALL = "plans: 0\nexplorations: 2\nstories: 0\nshard_size: 1\nscenes: 2\n"


def _file(tmp, text, name="job.yaml"):
    p = tmp / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


def _check(*argv):
    """`collect --check ARGV` into a fresh tmp/out unless ARGV names --out."""
    def make(tmp):
        out = [] if "--out" in argv else ["--out", str(tmp / "out")]
        return ["collect", "--check", *out, *[a(tmp) if callable(a) else a for a in argv]]
    return make


def _config(text):
    return _check("--config", lambda tmp: _file(tmp, text))


def _job() -> dict:
    return CollectConfig.from_dict(yaml.safe_load(SMALL)).job_dict()


def _with_manifest(manifest, raw: bytes | None = None):
    """--check of the SMALL job into tmp/out holding `manifest` (a dict, or a function of the job)."""
    def make(tmp):
        out = tmp / "out"
        out.mkdir(exist_ok=True)
        if raw is not None:
            (out / MANIFEST).write_bytes(raw)
        else:
            m = manifest(_job()) if callable(manifest) else manifest
            (out / MANIFEST).write_text(json.dumps(m))
        return ["collect", "--check", "--config", _file(tmp, SMALL), "--out", str(out)]
    return make


def _manifest(job, shards):
    return {"job": job, "engine": ENGINE_VERSION, "shards": shards}


ENTRY = {"sha256": "0" * 64, "episodes": 1, "units": [0, 0], "failures": []}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = [
    # --set and flags
    ("set-reward-list", _check("--set", "mcts.reward_new=[1]"), ["mcts.reward_new", "[1]"]),
    ("set-c-init-word", _check("--set", "mcts.c_init=x"), ["mcts.c_init", "'x'"]),
    ("set-reward-inf", _check("--set", "mcts.reward_done=.inf"), ["mcts.reward_done"]),
    ("set-reward-huge", _check("--set", "mcts.reward_step=1.0e+9"), ["mcts.reward_step", "1000000.0"]),
    ("set-c-base-zero", _check("--set", "mcts.c_base=0"), ["mcts.c_base=0.0"]),
    ("set-discount-2", _check("--set", "mcts.discount=2"), ["mcts.discount=2.0", "(0, 1]"]),
    ("set-discount-0", _check("--set", "mcts.discount=0"), ["mcts.discount"]),
    ("set-max-depth-huge", _check("--set", "mcts.max_depth=100000"), ["mcts.max_depth=100000", "1000"]),
    ("set-select-word", _check("--set", "mcts.select=best"), ["mcts.select"]),
    ("set-excluded-walk", _check("--set", "mcts.excluded=[WALK]"), ["mcts.excluded"]),
    ("set-excluded-string", _check("--set", "mcts.excluded=FIND"), ["mcts.excluded", "list"]),
    ("set-prune-word", _check("--set", "mcts.prune=maybe"), ["mcts.prune"]),
    ("set-mcts-scalar", _check("--set", "mcts=3"), ["mcts", "mapping"]),
    ("set-mcts-list", _check("--set", "mcts=[1, 2]"), ["mcts", "mapping"]),
    ("set-explore-scalar", _check("--set", "explore=x"), ["explore", "mapping"]),
    ("set-explore-steps-huge", _check("--set", "explore.steps=1000000000"), ["explore.steps=1000000000",
                                                                             "100000"]),
    ("set-explore-agents-17", _check("--set", "explore.agents=17"), ["explore.agents=17", "16"]),
    ("set-story-receptacles", _check("--set", "story.receptacles=-1"), ["story.receptacles=-1"]),
    ("set-explore-mix-kind", _check("--set", "explore.mix=[[fly, 1]]"), ["explore.mix", "'fly'"]),
    ("set-explore-mix-string", _check("--set", "explore.mix=x"), ["explore.mix", "list"]),
    ("set-explore-mix-short", _check("--set", "explore.mix=[[grab]]"), ["explore.mix"]),
    ("set-explore-mix-inf", _check("--set", "explore.mix=[[grab, .inf]]"), ["explore.mix"]),
    ("set-activities-string", _check("--set", "activities=watch tv"), ["activities", "list"]),
    ("set-activities-ints", _check("--set", "activities=[1, 2]"), ["activities[0]"]),
    ("set-activities-null", _check("--set", "activities=null"), ["activities"]),
    ("set-plans-null", _check("--set", "plans=null"), ["plans", "None"]),
    ("set-unknown-key", _check("--set", "planz=3"), ["unknown key(s) planz"]),
    ("set-unknown-nested", _check("--set", "mcts.simulatons=3"), ["mcts.simulatons"]),
    ("set-no-equals", _check("--set", "plans"), ["--set 'plans'", "section.key=value"]),
    ("set-through-scalar", _check("--set", "plans.x=1"), ["plans", "not a section"]),
    ("flag-workers-0", _check("--workers", "0"), ["workers=0", "[1, 4096]"]),
    ("flag-workers-huge", _check("--workers", "5000"), ["workers=5000", "4096"]),
    ("flag-shard-size-0", _check("--shard-size", "0"), ["shard_size=0"]),
    ("flag-shard-size-huge", _check("--shard-size", "1000000"), ["shard_size=1000000", "100000"]),
    ("flag-too-many-shards", _check("--plans", "0", "--stories", "0", "--explorations", "20000",
                                    "--shard-size", "1"), ["shard_size=1", "10,000"]),
    ("flag-scenes-0", _check("--scenes", "0"), ["scenes=0"]),
    ("flag-scenes-huge", _check("--scenes", "1000000"), ["scenes=1000000", "10000"]),
    ("flag-plans-huge", _check("--plans", "1000000000000"), ["plans=1000000000000", "1000000"]),
    ("flag-plans-float", _check("--plans", "1e12"), ["--plans"]),
    ("flag-stories-negative", _check("--stories", "-1"), ["stories=-1"]),
    ("flag-nothing", _check("--plans", "0", "--explorations", "0", "--stories", "0"), ["nothing to collect"]),
    ("flag-seed-negative", _check("--seed", "-1"), ["seed=-1"]),
    ("flag-seed-huge", _check("--seed", str(2**64)), ["seed="]),
    ("flag-worker-cpus-0", _check("--worker-cpus", "0"), ["worker_cpus=0.0"]),
    ("flag-worker-cpus-nan", _check("--worker-cpus", "nan"), ["worker_cpus"]),
    ("flag-max-in-flight-0", _check("--max-in-flight", "0"), ["max_in_flight=0"]),
    ("flag-chaos-negative", _check("--chaos-kill-every", "-1"), ["chaos_kill_every=-1"]),
    ("flag-scene-source", _check("--scene-source", "unity"), ["scene_source='unity'"]),
    ("flag-activity-unknown", _check("--activity", "fly a kite"), ["activities", "'fly a kite'"]),
    ("flag-simulations-0", _check("--simulations", "0"), ["mcts.simulations=0"]),
    ("flag-simulations-huge", _check("--simulations", "1000000000"), ["mcts.simulations=1000000000"]),
    ("flag-address-word", _check("--address", "somewhere"), ["address='somewhere'"]),
    ("flag-address-port", _check("--address", "ray://h:99999"), ["address='ray://h:99999'"]),
    ("flag-address-no-port", _check("--address", "10.0.0.1"), ["address='10.0.0.1'"]),
    ("flag-unknown", _check("--plans", "3", "--planz", "4"), ["--planz"]),
    ("flag-preset-unknown", _check("--preset", "nope"), ["--preset nope"]),
    ("flag-config-and-preset", _check("--preset", "paper", "--config", lambda tmp: _file(tmp, SMALL)),
     ["--config or --preset"]),
    # --config files
    ("config-activities-string", _config('activities: "watch tv"\n'), ["job.yaml", "activities", "list"]),
    ("config-plans-1e12", _config("plans: 1e12\n"), ["job.yaml", "plans", "'1e12'"]),
    ("config-plans-huge-int", _config("plans: 1000000000000\n"), ["job.yaml", "plans=1000000000000"]),
    ("config-explore-steps", _config("explore:\n  steps: 1000000000\n"), ["job.yaml", "explore.steps"]),
    ("config-duplicate-key", _config("plans: 1\nplans: 2\n"), ["job.yaml:2", "duplicate key 'plans'"]),
    ("config-duplicate-nested", _config("mcts:\n  simulations: 1\n  simulations: 2\n"),
     ["job.yaml:3", "duplicate key"]),
    ("config-non-utf8", _config(b"plans: \xff\n"), ["job.yaml:1", "UTF-8"]),
    ("config-deep", _config("a: " + "[" * 5000), ["job.yaml", "deep"]),
    ("config-deep-closed", _config("a: " + "[" * 5000 + "]" * 5000), ["job.yaml", "deep"]),
    ("config-malformed", _config("plans: [3\n"), ["job.yaml", "malformed YAML"]),
    ("config-list", _config("- plans\n"), ["job.yaml", "mapping"]),
    ("config-scalar", _config("3\n"), ["job.yaml", "mapping"]),
    ("config-unknown-key", _config("workerz: 2\n"), ["job.yaml", "workerz"]),
    ("config-mcts-null", _config("mcts: null\n"), ["job.yaml", "mcts"]),
    ("config-story-list", _config("story: [1, 2]\n"), ["job.yaml", "story"]),
    ("config-python-tag", _config("plans: !!python/object:os.system ls\n"), ["job.yaml"]),
    ("config-directory", _check("--config", lambda tmp: str(tmp)), ["is a directory", "config file"]),
    ("config-missing", _check("--config", lambda tmp: str(tmp / "nope.yaml")), ["nope.yaml", "no such"]),
    ("config-device", _check("--config", "/dev/null"), ["/dev/null", "not a regular file"]),
    # --out
    ("out-empty", _check("--out", ""), ["--out", "empty"]),
    ("out-blank", _check("--out", "  "), ["--out", "empty"]),
    ("out-a-file", _check("--out", lambda tmp: _file(tmp, "x", "f.txt")), ["--out", "f.txt", "not a directory"]),
    ("out-under-a-file", _check("--out", lambda tmp: _file(tmp, "x", "f.txt") + "/sub"), ["--out", "f.txt"]),
    ("out-foreign", _check("--out", lambda tmp: os.path.dirname(_file(tmp, "mine", "notes.txt"))),
     ["--out", "manifest.json", "--force"]),
    ("out-foreign-stats-forced", _check("--force", "--out",
                                        lambda tmp: os.path.dirname(_file(tmp, "{}", "stats.json"))),
     ["stats.json", "never overwrites"]),
    # manifests
    ("manifest-dotdot", _with_manifest(lambda job: _manifest(job, {"../../etc/hostname": ENTRY})),
     ["manifest.json", "shard name", "../../etc/hostname"]),
    ("manifest-absolute", _with_manifest(lambda job: _manifest(job, {"/etc/passwd": ENTRY})),
     ["manifest.json", "shard name", "/etc/passwd"]),
    ("manifest-subfolder", _with_manifest(lambda job: _manifest(job, {"x/shard-00000.jsonl": ENTRY})),
     ["manifest.json", "shard name"]),
    ("manifest-shard-past-job", _with_manifest(lambda job: _manifest(job, {"shard-00002.jsonl": ENTRY})),
     ["manifest.json", "shard-00002.jsonl", "shard-00001.jsonl"]),
    ("manifest-list", _with_manifest([1, 2]), ["manifest.json", "JSON object", "list"]),
    ("manifest-no-job", _with_manifest({"engine": ENGINE_VERSION, "shards": {}}), ["manifest.json", "'job'"]),
    ("manifest-no-shards", _with_manifest(lambda job: {"job": job, "engine": ENGINE_VERSION}),
     ["manifest.json", "'shards'"]),
    ("manifest-shards-list", _with_manifest(lambda job: _manifest(job, [])), ["manifest.json", "'shards'"]),
    ("manifest-entry-scalar", _with_manifest(lambda job: _manifest(job, {"shard-00000.jsonl": 3})),
     ["manifest.json", "shards.shard-00000.jsonl"]),
    ("manifest-entry-no-sha", _with_manifest(lambda job: _manifest(
        job, {"shard-00000.jsonl": {**ENTRY, "sha256": 5}})), ["manifest.json", "shards.shard-00000.jsonl.sha256"]),
    ("manifest-entry-episodes", _with_manifest(lambda job: _manifest(
        job, {"shard-00000.jsonl": {**ENTRY, "episodes": "1"}})), ["manifest.json", "episodes"]),
    ("manifest-entry-units", _with_manifest(lambda job: _manifest(
        job, {"shard-00000.jsonl": {**ENTRY, "units": 0}})), ["manifest.json", "units"]),
    ("manifest-entry-failures", _with_manifest(lambda job: _manifest(
        job, {"shard-00000.jsonl": {**ENTRY, "failures": {}}})), ["manifest.json", "failures"]),
    ("manifest-missing-shard", _with_manifest(lambda job: _manifest(job, {"shard-00000.jsonl": ENTRY})),
     ["shard-00000.jsonl", "missing"]),
    ("manifest-other-engine", _with_manifest(lambda job: {**_manifest(job, {}), "engine": "e2wm-world/0"}),
     ["engine e2wm-world/0"]),
    ("manifest-engine-object", _with_manifest(lambda job: {**_manifest(job, {}), "engine": {"a": [1] * 100}}),
     ["unrecorded engine"]),
    ("manifest-other-job", _with_manifest(lambda job: _manifest({**job, "plans": 9}, {})), ["different job"]),
    ("manifest-non-utf8", _with_manifest(None, raw=b'{"job": "\xff"}'), ["manifest.json", "UTF-8"]),
    ("manifest-corrupt", _with_manifest(None, raw=b"{not json"), ["manifest.json", "malformed JSON"]),
    ("manifest-nan", _with_manifest(None, raw=b'{"job": NaN}'), ["manifest.json", "NaN"]),
    ("manifest-deep", _with_manifest(None, raw=b'{"job": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
     ["manifest.json", "deep"]),
    ("manifest-empty", _with_manifest(None, raw=b""), ["manifest.json", "malformed JSON"]),
]


@pytest.mark.parametrize("make_argv, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_collect_input(make_argv, names, tmp_path, cli_error):
    cli_error(make_argv(tmp_path), names)
    assert not (tmp_path / "out" / "stats.json").exists()


def _small(tmp, out):
    return ["collect", "--config", _file(tmp, SMALL), "--out", str(out)]


def test_an_unreachable_address_fails_fast(tmp_path, cli_error):
    port = _free_port()   # bound and released: nothing listens there
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        cli_error([*_small(tmp_path, tmp_path / "out"), "--address", address],
                  [f"address {address}", "could not reach", "within 10 s"])
    assert not (tmp_path / "out").exists()   # created only once the cluster answers


def test_address_auto_without_a_cluster_is_one_line(tmp_path, cli_error, monkeypatch):
    import ray
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if ray.is_initialized():
        pytest.skip("a Ray session is already up in this process")

    def no_cluster(*a, **kw):   # what ray.init(address="auto") raises with no cluster running
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify one.")
    monkeypatch.setattr(ray, "init", no_cluster)
    cli_error([*_small(tmp_path, tmp_path / "out"), "--address", "auto"],
              ["address auto", "Could not find any running Ray instance"])


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_folder_of_user_files_without_a_manifest_is_left_byte_identical(tmp_path, cli_error):
    out = tmp_path / "mine"
    out.mkdir()
    for name, data in (("stats.json", b'{"mine": 1}'), ("failures.jsonl", b"keep\n"),
                       ("shard-00000.jsonl", b"my own data\n")):
        (out / name).write_bytes(data)
    before = _tree(out)
    cli_error(_small(tmp_path, out), ["--out", "manifest.json"])
    cli_error([*_small(tmp_path, out), "--force"], ["failures.jsonl", "never overwrites"])
    cli_error([*_small(tmp_path, out), "--check"], ["--out", "manifest.json"])
    assert _tree(out) == before


def test_empty_out_writes_nothing_into_the_current_folder(tmp_path, monkeypatch, cli_error):
    monkeypatch.chdir(tmp_path)
    cfg = _file(tmp_path, SMALL)
    before = _tree(tmp_path)
    cli_error(["collect", "--config", cfg, "--out", ""], ["--out", "empty"])
    cli_error(["collect", "--config", cfg, "--set", "out="], ["--out", "empty"])
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("name", ["../outside.txt", "ABSOLUTE"])
def test_a_manifest_naming_a_file_outside_out_is_refused_unread(name, tmp_path, cli_error, monkeypatch):
    out, outside = tmp_path / "out", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_text("the user's file\n")
    name = str(outside) if name == "ABSOLUTE" else name
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()   # a matching hash: it would count as done
    (out / MANIFEST).write_text(json.dumps(_manifest(_job(), {name: {**ENTRY, "sha256": digest}})))
    opened = []
    real_open = open

    def spy(file, *a, **kw):
        opened.append(os.path.realpath(file))
        return real_open(file, *a, **kw)
    argv = _small(tmp_path, out)
    before = _tree(tmp_path)
    monkeypatch.setattr("builtins.open", spy)
    monkeypatch.setattr("io.open", spy)   # what pathlib opens with
    line = cli_error(argv, ["manifest.json", "shard name", name])
    monkeypatch.undo()
    assert "remove" not in line and "delete" not in line
    assert str(outside) not in opened
    assert _tree(tmp_path) == before


def test_a_shard_symlinked_out_of_out_is_refused(tmp_path, cli_error):
    out, outside = tmp_path / "out", tmp_path / "outside.jsonl"
    out.mkdir()
    outside.write_text("x\n")
    (out / "shard-00000.jsonl").symlink_to(outside)
    digest = hashlib.sha256(b"x\n").hexdigest()
    (out / MANIFEST).write_text(json.dumps(_manifest(_job(), {"shard-00000.jsonl": {**ENTRY, "sha256": digest}})))
    cli_error([*_small(tmp_path, out), "--check"], ["shard-00000.jsonl", "leads outside"])
    os.unlink(out / "shard-00000.jsonl")
    (out / "shard-00000.jsonl").mkdir()
    cli_error([*_small(tmp_path, out), "--check"], ["shard-00000.jsonl", "is a directory"])


def test_check_validates_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "new" / "out"
    before = _tree(tmp_path)
    assert main(["collect", "--check", "--config", _file(tmp_path, SMALL), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "2 units" in line and "2 shards" in line and "nothing" in line
    assert not (tmp_path / "new").exists()
    assert _tree(tmp_path) == {**before, "job.yaml": SMALL.encode()}
    # A packaged preset checks clean too.
    assert main(["collect", "--check", "--out", str(out)]) == 0
    assert main(["collect", "--check", "--preset", "paper", "--out", str(out)]) == 0
    assert not (tmp_path / "new").exists()


def test_force_adopts_a_folder_of_other_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert main([*_small(tmp_path, out), "--check", "--force"]) == 0
    assert "2 units" in capsys.readouterr().out
