"""Script lines: parsing, formatting, the dataset `(instance.id)` form and one-line errors."""
import pytest

from e2wm.errors import E2WMError, ScriptError
from e2wm.world.script import (ScriptArg, ScriptLine, format_line, parse_line, parse_program)
from e2wm.world.vocab import ACTION_ALIASES, ACTION_ARITY, ACTION_NAMES


def test_two_argument_line_round_trips():
    text = "[PutIn] <mug> (190) <microwave> (297)"
    sl = parse_line(text)
    assert sl.action == "PUTIN"
    assert sl.args == (ScriptArg("mug", 190), ScriptArg("microwave", 297))
    assert sl.ids == (190, 297)
    assert sl.format() == text
    assert str(sl) == text
    assert parse_line(sl.format()) == sl


def test_zero_argument_line_round_trips():
    sl = parse_line("[StandUp]")
    assert sl == ScriptLine("STANDUP", ())
    assert sl.format() == "[StandUp]"
    assert sl.ids == ()


def test_dataset_form_parses_to_the_node_id():
    sl = parse_line("[PutIn] <mug> (1.190) <microwave> (2.297)")
    assert sl.ids == (190, 297)
    assert [a.instance for a in sl.args] == [1, 2]
    assert sl.format(dataset=True) == "[PutIn] <mug> (1.190) <microwave> (2.297)"
    assert sl.format() == "[PutIn] <mug> (190) <microwave> (297)"
    # the plain form is script instance 1 in the dataset form
    assert parse_line("[Walk] <kitchen> (11)").format(dataset=True) == "[Walk] <kitchen> (1.11)"


def test_actions_are_case_insensitive_and_names_are_normalised():
    assert parse_line("[WALK] <kitchen> (11)") == parse_line("[walk] <kitchen> (11)")
    sl = parse_line("  [wAlK]   < Kitchen Table >  ( 11 )  ")
    assert sl.action == "WALK"
    assert sl.args == (ScriptArg("kitchen_table", 11),)
    assert sl.format() == "[Walk] <kitchen_table> (11)"


def test_aliases_map_to_lookat():
    for alias, target in ACTION_ALIASES.items():
        assert parse_line(f"[{alias}] <tv> (5)").action == target


@pytest.mark.parametrize("action", sorted(ACTION_ARITY))
def test_every_action_parses_with_its_arity(action):
    arity = ACTION_ARITY[action]
    args = " ".join(f"<thing_{k}> ({100 + k})" for k in range(arity))
    text = f"[{ACTION_NAMES[action]}] {args}".strip()
    sl = parse_line(text)
    assert sl.action == action
    assert len(sl.args) == arity
    assert sl.ids == tuple(100 + k for k in range(arity))
    assert sl.format() == text
    assert format_line(action.lower(), [(f"thing_{k}", 100 + k) for k in range(arity)]) == text
    # one argument too many and (where possible) one too few are refused
    with pytest.raises(ScriptError, match="argument"):
        parse_line(f"{text} <extra> (999)")
    if arity:
        with pytest.raises(ScriptError, match="argument"):
            parse_line(text.rsplit(" <", 1)[0])


def test_the_vocabulary_has_the_official_42_actions():
    assert len(ACTION_ARITY) == 42
    assert set(ACTION_NAMES) == set(ACTION_ARITY)
    assert sorted(k for k, v in ACTION_ARITY.items() if v == 2) == ["POUR", "PUTBACK", "PUTIN"]
    assert sorted(k for k, v in ACTION_ARITY.items() if v == 0) == ["SLEEP", "STANDUP", "WAKEUP"]


@pytest.mark.parametrize("text, what", [
    ("[Fly] <bird> (1)", "unknown action"),
    ("[Walk]", "argument"),
    ("[Walk] <kitchen> (1) <bedroom> (2)", "argument"),
    ("[StandUp] <chair> (3)", "argument"),
    ("[PutIn] <mug> (1)", "argument"),
    ("[Walk] <kitchen> (11) please", "please"),
    ("[Walk] <kitchen> (abc)", "abc"),
    ("[Walk] <kitchen> (1.5.2)", "cannot parse"),
    ("[Walk] <kitchen>", "cannot parse"),
    ("Walk <kitchen> (11)", "expected"),
    ("[Walk <kitchen> (11)", "expected"),
    ("", "expected"),
])
def test_bad_lines_raise_script_error_naming_the_line(text, what):
    with pytest.raises(ScriptError) as ei:
        parse_line(text)
    msg = str(ei.value)
    assert repr(text) in msg
    assert what in msg
    assert "\n" not in msg
    assert isinstance(ei.value, E2WMError)


def test_program_skips_titles_and_names_the_bad_line_number():
    text = "Watch TV\nGo and watch TV\n\n[Walk] <tv> (5)\n# [Fly] <x> (1)\n[Watch] <tv> (5)\n"
    lines = parse_program(text)
    assert [sl.format() for sl in lines] == ["[Walk] <tv> (5)", "[Watch] <tv> (5)"]
    with pytest.raises(ScriptError, match=r"^line 3: .*unknown action \[Fly\]"):
        parse_program("title\n[Walk] <tv> (5)\n[Fly] <bird> (1)\n")
