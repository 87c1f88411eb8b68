"""The allowed imports between e2wm's packages (DESIGN.md, "Arrows point one way"), checked on the source.

Every module under e2wm/ is parsed with `ast`; every import counts, at any depth (function-local ones
included). A new arrow against the rule, or an import cycle between packages, fails naming file:line."""
import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "e2wm"
HELPERS = {"e2wm", "config", "files", "errors", "progress", "argparser", "quiet"}   # shared, usable by all
PACKAGES = {"world", "collect", "data", "train", "eval", "pipeline", "bench"}
STAGES = {"world", "collect", "data", "train", "eval"}

# What each package may import besides itself and the helpers: a package name, or a module (and what is
# below it). Helpers import only helpers; nothing imports cli.
ALLOWED = {
    "world": set(),
    "collect": {"world"},
    "data": {"world", "collect"},
    "train": set(),                  # reads datasets from disk, never world, collect or data
    "eval": {
        "world",                     # executability: plans run in the world
        "data.eval_format",          # the suites' reader
        "data.plan_parse",           # a generated plan back to script lines
        "train.model",               # model and tokenizer loading
        "train.adapters",            # a trained adapter onto the base model
        "train.tokens",              # the tokenisation training used
        "train.dist",                # device and process group of the ranks
        "train.corpus",              # perplexity's general-text documents
        "train.export",              # an exported folder's marker: the `kl` run's documents
        "train.fisher_io",           # the Fisher's documents, kept disjoint from perplexity's
    },
    "bench": STAGES,                 # what it benchmarks
    "pipeline": STAGES,
    "cli": PACKAGES,
}
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()   # (importing file, imported module): arrows on their way out


def package_of(module: str) -> str:
    """'e2wm.train.model' -> 'train'; 'e2wm.cli' -> 'cli'; 'e2wm' -> 'e2wm'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported e2wm module) for every import in `source`, at any depth. `from A import b` imports
    the module A.b where that is one of `known`, else A."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: resolved against the importing module's package
                anchor = module.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((node.lineno, sub if sub in known else base))
    return [(line, m) for line, m in found if m == "e2wm" or m.startswith("e2wm.")]


def allowed(importer: str, imported: str) -> bool:
    src, dst = package_of(importer), package_of(imported)
    if dst == "cli":
        return False
    if src == dst or dst in HELPERS:
        return True
    if src in HELPERS:
        return False
    rel = imported.split(".", 1)[1]
    return any(rel == a or rel.startswith(a + ".") for a in ALLOWED[src])


def survey(root: Path = PACKAGE_ROOT, sources: dict[str, str] | None = None):
    """[(file, line, importer, imported)] for every e2wm import under `root` (or in `sources`, file -> text,
    files named relative to root's parent)."""
    if sources is None:
        sources = {str(p.relative_to(root.parent)): p.read_text() for p in sorted(root.rglob("*.py"))}
    modules = {f: module_name(root.parent / f, root) for f in sources}
    known = set(modules.values())
    out = []
    for f, text in sources.items():
        for line, imported in imports(text, modules[f], f.endswith("__init__.py"), known):
            out.append((f, line, modules[f], imported))
    return out


def violations(edges) -> list[str]:
    return [f"{f}:{line} imports {imported} ({package_of(importer)} -> {package_of(imported)} is not allowed)"
            for f, line, importer, imported in edges
            if not allowed(importer, imported) and (f, imported) not in KNOWN_EXCEPTIONS]


def package_cycles(edges) -> list[str]:
    """Each import cycle between packages (a strongly connected component of more than one), with one
    import that makes each of its arrows."""
    graph, where = {}, {}
    for f, line, importer, imported in edges:
        a, b = package_of(importer), package_of(imported)
        if a != b and (f, imported) not in KNOWN_EXCEPTIONS:
            graph.setdefault(a, set()).add(b)
            where.setdefault((a, b), f"{f}:{line} imports {imported}")
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def visit(v):   # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [f"cycle between {', '.join(sorted(c))}: "
            + "; ".join(where[a, b] for a in sorted(c) for b in sorted(graph[a] & c)) for c in comps]


def test_every_module_belongs_to_a_known_package():
    for f in sorted(PACKAGE_ROOT.rglob("*.py")):
        assert package_of(module_name(f, PACKAGE_ROOT)) in HELPERS | PACKAGES | {"cli"}, \
            f"{f}: add its package to the rule in tests/test_layering.py"


def test_imports_follow_the_layering():
    bad = violations(survey())
    assert not bad, "imports against the layering (tests/test_layering.py states it):\n" + "\n".join(bad)


def test_no_import_cycle_between_packages():
    cycles = package_cycles(survey())
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("file, text, wrong", [
    ("e2wm/train/x.py", "def f():\n    if True:\n        from e2wm.data import builder\n", "e2wm.data.builder"),
    ("e2wm/world/x.py", "import e2wm.collect.run as r\n", "e2wm.collect.run"),
    ("e2wm/eval/x.py", "from e2wm.train.recipe import Recipe\n", "e2wm.train.recipe"),
    ("e2wm/pipeline/x.py", "from e2wm import cli\n", "e2wm.cli"),
    ("e2wm/files.py", "from e2wm.train import model\n", "e2wm.train.model"),
    ("e2wm/data/x.py", "from ..bench import train\n", "e2wm.bench.train"),
])
def test_a_new_arrow_against_the_rule_is_named(file, text, wrong):
    sources = {file: text, "e2wm/cli.py": "", "e2wm/train/model.py": "", "e2wm/bench/train.py": "",
               "e2wm/data/builder.py": ""}
    bad = violations(survey(sources=sources))
    line = text[:text.index(wrong.rsplit(".", 1)[-1])].count("\n") + 1
    assert bad and bad[0].startswith(f"{file}:{line} imports {wrong} "), bad


def test_a_cycle_between_packages_is_named():
    sources = {"e2wm/world/a.py": "from e2wm.collect import b\n", "e2wm/collect/b.py": "import e2wm.world.a\n"}
    cycles = package_cycles(survey(sources=sources))
    assert cycles == ["cycle between collect, world: e2wm/collect/b.py:1 imports e2wm.world.a; "
                      "e2wm/world/a.py:1 imports e2wm.collect.b"]
