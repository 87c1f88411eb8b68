"""launch/ and docker/ stay runnable: the files they copy or name exist (and reach the docker build
context), the pins agree with .ci/run and pyproject.toml, every shell script parses and says how to run
it, and every `e2wm` subcommand they name exists. Neither docker nor a cluster is needed."""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))
LAUNCH_FILES = sorted(p for p in (ROOT / "launch").iterdir() if p.is_file() and p.name != "README.md")
SCRIPTS = [p for p in LAUNCH_FILES if p.read_text().startswith(("#!/bin/bash", "#!/usr/bin/env bash"))]
# Every text file of launch/ and docker/: the places that name commands and repository paths.
PACKAGING_FILES = sorted(p for p in [*(ROOT / "launch").iterdir(), *(ROOT / "docker").iterdir(), ROOT / ".dockerignore"]
                         if p.is_file())
# A path is checked when it starts inside the repository: one of these folders or top-level files.
REPO_PATH = re.compile(r"(?<![\w/.$-])((?:e2wm|launch|docker|ds_configs|tests|\.ci)/[\w./*-]*[\w*]"
                       r"|pyproject\.toml|README\.md|LICENSE|CHANGELOG\.md|\.dockerignore)(?![\w/-])")
E2WM_COMMAND = re.compile(r"(?<![\w./-])e2wm(?:\.cli)?[ \t]+([a-z][\w-]*)(?![\w/-])(?:[ \t]+([a-z][\w-]*)(?![\w/-]))?")
E2WM_EXEC_FORM = re.compile(r'"e2wm"\s*,\s*"([a-z][\w-]*)"(?:\s*,\s*"([a-z][\w-]*)")?')


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, args = pending.strip().partition(" ")
        out.append((word.upper(), args.strip()))
        pending = ""
    assert not pending, f"{_rel(dockerfile)}: ends inside a continued line"
    return out


def _copy_sources(args: str) -> list[str] | None:
    """The build-context sources of a COPY/ADD, or None for a copy from another image or stage."""
    words = args.split()
    flags = [w for w in words if w.startswith("--")]
    if any(f.startswith("--from=") for f in flags):
        return None
    rest = " ".join(w for w in words if not w.startswith("--"))
    parts = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    assert len(parts) >= 2, f"COPY/ADD needs a source and a destination: {args}"
    return parts[:-1]


def _dockerignored(rel: str) -> bool:
    """Whether .dockerignore keeps `rel` (or a folder above it) out of the build context."""
    ignore = ROOT / ".dockerignore"
    if not ignore.exists():
        return False
    rules = []
    for line in ignore.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rx = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        rx = rx.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        rules.append((re.compile(rx + r"\Z"), negate))
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for prefix in prefixes:
        excluded = False
        for rx, negate in rules:
            if rx.match(prefix):
                excluded = not negate
        if excluded:
            return True
    return False


def _repo_paths(path: Path) -> set[str]:
    return {m.group(1) for m in REPO_PATH.finditer(path.read_text())}


def _exists(rel: str) -> bool:
    return bool(list(ROOT.glob(rel))) if "*" in rel else (ROOT / rel).exists()


def _code_text(path: Path) -> str:
    """The text in which commands are looked for, so that prose ("where e2wm is installed") is not read
    as one: in markdown, fenced blocks and `spans`; elsewhere every line but comments, and of comments
    their `spans` and their indented example lines ("#   launch/x.sh ...")."""
    text = path.read_text()
    if path.suffix == ".md":
        fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
        prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
        return "\n".join([*fenced, *re.findall(r"`([^`\n]+)`", prose)])
    code = []
    for line in text.splitlines():
        comment = line.lstrip()
        if not comment.startswith("#"):
            code.append(line)
        elif comment.startswith(("#  ", "#\t")):
            code.append(comment[1:])
        else:
            code.extend(re.findall(r"`([^`\n]+)`", comment))
    return "\n".join(code)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _named_commands() -> dict[tuple[str, ...], set[str]]:
    """Every `e2wm CMD [SUB]` (also `python -m e2wm.cli CMD`, `["e2wm", "CMD"]`) in launch/ and docker/,
    with the files naming it."""
    found: dict[tuple[str, ...], set[str]] = {}
    for path in PACKAGING_FILES:
        text = _code_text(path)
        for m in [*E2WM_COMMAND.finditer(text), *E2WM_EXEC_FORM.finditer(text)]:
            found.setdefault(tuple(g for g in m.groups() if g), set()).add(_rel(path))
    return found


def _pins(name: str) -> dict[str, str]:
    """`name==VERSION` in the Dockerfiles, .ci/run and launch/runtime_env.yaml: {file: version}."""
    rx = re.compile(rf"(?<![\w-]){re.escape(name)}==([0-9][\w.]*)")
    pins = {}
    for path in [*DOCKERFILES, ROOT / ".ci" / "run", ROOT / "launch" / "runtime_env.yaml"]:
        versions = set(rx.findall(path.read_text()))
        assert len(versions) <= 1, f"{_rel(path)} pins {name} to several versions: {sorted(versions)}"
        if versions:
            pins[_rel(path)] = versions.pop()
    return pins


def _pyproject_requirement(name: str) -> Requirement:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(r for r in map(Requirement, deps) if r.name == name)


def test_there_are_dockerfiles_and_launch_scripts():
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile.cpu", "Dockerfile.cuda"}
    assert {p.name for p in SCRIPTS} >= {"ray_job_submit.sh", "ray_pipeline_submit.sh", "deepspeed_multinode.sh",
                                         "slurm_ray_cluster.sbatch", "slurm_train.sbatch"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_only_files_that_reach_the_build_context(dockerfile):
    instructions = _instructions(dockerfile)
    assert instructions and instructions[0][0] in ("FROM", "ARG"), f"{dockerfile.name}: no FROM first"
    copies = [_copy_sources(args) for word, args in instructions if word in ("COPY", "ADD")]
    assert copies, f"{dockerfile.name} copies nothing of the repository"
    for sources in filter(None, copies):
        for source in sources:
            matches = list(ROOT.glob(source)) if any(c in source for c in "*?[") else [ROOT / source]
            assert matches and all(m.exists() for m in matches), f"{dockerfile.name}: COPY {source}: no such file"
            if source not in (".", "./"):
                assert not _dockerignored(source), f"{dockerfile.name}: COPY {source} is excluded by .dockerignore"
    if any(s in (".", "./") for s in sum(filter(None, copies), [])):
        # `pip install -e .` after `COPY . .` needs the project's metadata, readme and package.
        readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme", "README.md")
        for needed in ("pyproject.toml", readme, "e2wm/__init__.py", "e2wm/presets", "e2wm/ds_configs"):
            assert (ROOT / needed).exists(), needed
            assert not _dockerignored(needed), f".dockerignore keeps {needed} out of the build context"


@pytest.mark.parametrize("path", [*DOCKERFILES, ROOT / "docker" / "README.md"], ids=lambda p: p.name)
def test_docker_files_name_only_repository_files_that_exist_in_the_build_context(path):
    for rel in sorted(_repo_paths(path)):
        assert _exists(rel), f"{_rel(path)} names {rel}, which does not exist"
        if path.name.startswith("Dockerfile"):
            assert not _dockerignored(rel), f"{_rel(path)} names {rel}, which .dockerignore excludes"


@pytest.mark.parametrize("path", [p for p in PACKAGING_FILES if p.parent.name == "launch"], ids=lambda p: p.name)
def test_launch_files_name_only_repository_files_that_exist(path):
    for rel in sorted(_repo_paths(path)):
        assert _exists(rel), f"{_rel(path)} names {rel}, which does not exist"


@pytest.mark.parametrize("name", ["torch", "deepspeed"])
def test_pins_agree_with_ci_and_lie_in_pyprojects_range(name):
    pins = _pins(name)
    assert {_rel(p) for p in DOCKERFILES} <= set(pins), f"a Dockerfile does not pin {name}: {pins}"
    assert len(set(pins.values())) == 1, f"{name} is pinned to different versions: {pins}"
    version = next(iter(pins.values()))
    if name == "torch":
        assert ".ci/run" in pins, ".ci/run no longer pins torch"
    requirement = _pyproject_requirement(name)
    assert Version(version) in requirement.specifier, f"{name}=={version} is outside pyproject's {requirement}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_python_satisfies_requires_python(dockerfile):
    text = dockerfile.read_text()
    found = re.findall(r"(?:python:|python)(3\.\d+)", text)
    assert found, f"{dockerfile.name} names no Python version"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    for v in set(found):
        assert Version(v) in Requirement(f"python{requires}").specifier, f"{dockerfile.name}: Python {v} vs {requires}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_launch_script_parses_and_stops_at_the_first_error(script):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    p = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
    assert p.returncode == 0, f"bash -n {script.name}: {p.stderr}"
    assert re.search(r"^set -euo pipefail$", script.read_text(), flags=re.M), f"{script.name}: no set -euo pipefail"


@pytest.mark.parametrize("path", [*LAUNCH_FILES, *DOCKERFILES], ids=lambda p: p.name)
def test_file_starts_with_a_comment_that_shows_how_to_run_it(path):
    lines = path.read_text().splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    header = []
    for line in lines:
        if not line.startswith("#") or line.startswith("#SBATCH"):
            break
        header.append(line)
    assert header, f"{_rel(path)} does not start with a comment"
    usage = f"docker build -f {_rel(path)}" if path.parent.name == "docker" else _rel(path)
    assert any(usage in line for line in header), f"the header comment of {_rel(path)} never shows `{usage} ...`"


@pytest.mark.parametrize("path", PACKAGING_FILES, ids=lambda p: p.name)
def test_no_path_of_this_checkout(path):
    assert str(ROOT) not in path.read_text(), f"{_rel(path)} names this machine's checkout"


_NAMED = _named_commands()


def test_launch_and_docker_name_e2wm_commands():
    assert {c[0] for c in _NAMED} >= {"collect", "pipeline"}


@pytest.mark.parametrize("command", sorted(_NAMED), ids=" ".join)
def test_named_e2wm_subcommand_exists(command):
    from e2wm.cli import _parser

    choices = _subcommands(_parser())
    if command[0] == "pipeline" and "pipeline" not in choices:
        pytest.skip("pipeline not merged yet")
    where = ", ".join(sorted(_NAMED[command]))
    assert command[0] in choices, f"`e2wm {command[0]}` (named in {where}) is not an e2wm subcommand"
    nested = _subcommands(choices[command[0]])
    if nested and len(command) > 1:
        assert command[1] in nested, f"`e2wm {' '.join(command)}` (named in {where}) is not an e2wm subcommand"
