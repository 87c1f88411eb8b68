"""The built-in corpora (issue 24): `builtin:pydoc` as it always was, and `builtin:stdlib`, the pydoc topics and the
standard library's docstrings read with `ast`: a few thousand bounded, distinct, whitespace-normalised documents,
the same on every call, holding no path of this machine, in a fixed shuffled order."""
import hashlib
import inspect
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest

from e2wm.train import corpus
from e2wm.train.corpus import (BUILTINS, STDLIB_MAX, STDLIB_MIN, CorpusError, check_corpus, corpus_hash,
                               load_texts)


@pytest.fixture(scope="module")
def stdlib():
    return load_texts("builtin:stdlib")


def test_builtin_pydoc_is_the_pydoc_topics_as_before():
    from pydoc_data.topics import topics
    assert load_texts("builtin:pydoc") == [topics[k].strip() for k in sorted(topics) if topics[k].strip()]


def test_stdlib_holds_thousands_of_distinct_bounded_documents(stdlib):
    assert len(stdlib) >= 2000
    assert len(set(stdlib)) == len(stdlib)
    assert all(STDLIB_MIN <= len(d) <= STDLIB_MAX for d in stdlib)
    assert sum(map(len, stdlib)) > 1_000_000


def test_stdlib_is_whitespace_normalised(stdlib):
    for d in stdlib:
        # a piece cut from a long text may begin with an indented line (a code example): its indent is kept
        assert d == d.rstrip() and not d.startswith("\n") and "\t" not in d and "\n\n\n" not in d and "\r" not in d
        assert not any(line != line.rstrip() for line in d.split("\n"))


def test_stdlib_is_the_same_on_every_call_and_a_caller_cannot_change_it(stdlib):
    first = corpus_hash(stdlib)
    got = load_texts("builtin:stdlib")
    got[0] = "changed"
    corpus._stdlib_texts.cache_clear()   # built again from the sources
    t = time.perf_counter()
    again = load_texts("builtin:stdlib")
    assert time.perf_counter() - t < 10   # about 1.5 s on one core
    assert again == stdlib and corpus_hash(again) == first
    assert load_texts("builtin:stdlib", max_samples=5) == stdlib[:5]


def test_stdlib_holds_no_path_of_this_machine(stdlib):
    paths = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sys.prefix, sys.base_prefix,
             sys.exec_prefix, str(Path.home()), os.getcwd(), str(Path(corpus.__file__).resolve().parents[2])}
    paths |= {os.path.realpath(p) for p in paths}
    paths = {p for p in paths if len(p) > 4}   # not "/" nor "/usr": the sources' own examples name those
    text = "\n".join(stdlib)
    assert not [p for p in paths if p in text]
    assert "lib-dynload" not in text and "_sysconfigdata" not in text


def test_stdlib_holds_pydoc_topics_and_docstrings(stdlib):
    text = "\n\n".join(stdlib)
    for doc in (json.dumps.__doc__, textwrap.dedent.__doc__, Path.__doc__):
        assert inspect.cleandoc(doc) in text
    from pydoc_data.topics import topics
    assert topics["assert"].strip().split("\n\n")[1] in text


def test_stdlib_order_is_a_fixed_shuffle(stdlib):
    """Ordered by each document's sha256, so that a contiguous slice is a sample of the whole corpus."""
    keys = [hashlib.sha256(d.encode()).digest() for d in stdlib]
    assert keys == sorted(keys)


def test_stdlib_reads_no_test_gui_or_third_party_module_and_imports_none():
    names = [name for name, _ in corpus._stdlib_modules()]
    assert names == sorted(names) and "json" in names and "email.mime.text" in names
    skipped = ("test", "idlelib", "tkinter", "lib2to3", "ensurepip", "turtledemo", "__phello__", "pydoc_data")
    assert not [n for n in names if n.split(".")[0] in skipped or "test" in n.split(".")[1:]
                or n.startswith("_sysconfigdata") or "site-packages" in n]
    code = ("import json, sys; from e2wm.train.corpus import load_texts; before = set(sys.modules); "
            "load_texts('builtin:stdlib'); print(json.dumps(sorted(set(sys.modules) - before)))")
    new = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout)
    assert not [m for m in new if m.split(".")[0] in ("tkinter", "idlelib", "turtle", "test", "json", "email",
                                                      "antigravity", "this")]


@pytest.mark.parametrize("spec", ["missing.txt", "builtin:nope"])
def test_errors_name_every_builtin_corpus(tmp_path, spec):
    with pytest.raises(CorpusError) as e:
        check_corpus(str(tmp_path / spec) if spec.endswith(".txt") else spec, "--corpus")
    assert all(b in str(e.value) for b in BUILTINS)
    with pytest.raises(CorpusError) as e:
        load_texts(str(tmp_path / spec) if spec.endswith(".txt") else spec)
    assert all(b in str(e.value) for b in BUILTINS)
    assert BUILTINS == ("builtin:pydoc", "builtin:stdlib")
    for b in BUILTINS:
        check_corpus(b)


def test_a_long_text_is_cut_between_paragraphs_then_lines_with_nothing_lost():
    paras = [f"paragraph {i} " + "word " * (40 * (i % 5 + 1)) for i in range(60)]
    text = "\n\n".join(p.strip() for p in paras)
    pieces = corpus._bounded(text)
    assert len(pieces) > 1 and all(len(p) <= STDLIB_MAX for p in pieces) and "\n\n".join(pieces) == text
    long_para = "\n".join("line %d " % i + "x" * 70 for i in range(200))
    pieces = corpus._bounded(long_para)
    assert all(len(p) <= STDLIB_MAX for p in pieces) and "\n".join(pieces) == long_para
    assert "".join(corpus._bounded("y" * 9000)) == "y" * 9000
    docs = corpus._pack(["a" * 100, "b" * 100, "c" * 100, "d" * 50])   # the short last one joins the one before
    assert docs == ["a" * 100 + "\n\n" + "b" * 100 + "\n\n" + "c" * 100 + "\n\n" + "d" * 50]
    assert corpus._pack(["a" * 150]) == []   # under STDLIB_MIN, with nothing to join
    # one the next piece would overflow, under STDLIB_MIN: joins the one before, or is dropped
    assert corpus._pack(["a" * 100, "b" * 3990]) == ["b" * 3990]
    assert corpus._pack(["a" * 300, "b" * 100, "c" * 3990]) == ["a" * 300 + "\n\n" + "b" * 100, "c" * 3990]
