"""Plans read back: every plan a small collection renders parses to its own script lines."""
import json

from e2wm.collect.episodes import Episode
from e2wm.data.plan_parse import parse_plan, sentences
from e2wm.data.render import plan_text
from e2wm.world.graph import Scene
from e2wm.world.scenes import load_scene
from e2wm.world.script import parse_line


def test_every_rendered_plan_of_a_collection_round_trips(episodes_dir):
    text = (episodes_dir / "shard-00000.jsonl").read_text()
    plans = [Episode.from_dict(json.loads(x)) for x in text.splitlines()]
    plans = [e for e in plans if e.kind == "plan" and e.steps]
    assert len(plans) > 30
    for ep in plans:
        scene = Scene.from_dict(load_scene(ep.scene))
        steps = parse_plan(plan_text(ep.lines, ep.names), scene, prefer=ep.names)
        assert all(s.problem is None for s in steps), [s for s in steps if s.problem]
        got = [parse_line(s.line) for s in steps]
        want = [parse_line(line) for line in ep.lines]
        assert [(g.action, [a.name for a in g.args]) for g in got] == \
            [(w.action, [a.name for a in w.args]) for w in want], ep.key
        # ids too, wherever the episode names one node of that class
        for g, w in zip(got, want):
            for a, b in zip(g.args, w.args):
                if sum(c == b.name for c in ep.names.values()) == 1:
                    assert a.id == b.id, (ep.key, g, w)


def test_bad_sentences_say_why(tiny_scene):
    scene = Scene.from_dict(tiny_scene)
    steps = parse_plan("Walk to kitchen. Dance wildly. Grab unicorn. Put mug in fridge", scene)
    assert [s.line for s in steps] == ["[Walk] <kitchen> (1)", None, None,
                                       "[PutIn] <mug> (12) <fridge> (10)"]
    assert [s.problem for s in steps] == [None, "unparsable", "unknown 'unicorn'", None]
    assert sentences("  Walk to tv.  Switch on tv. ") == ["Walk to tv.", "Switch on tv."]
