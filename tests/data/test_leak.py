"""The leak guard and the train / evaluation split."""
import pytest

from e2wm.collect.episodes import Episode
from e2wm.data.leak import LeakGuard
from e2wm.data.split import split
from e2wm.errors import E2WMError

TRAIN = ["Q: How to watch tv? Given items include television, couch, living room. The television is off.\n"
         "A: Walk to living room. Walk to television. Switch on television. Walk to couch. Sit on couch.",
         "Julie went to the kitchen. Peter took the mug. Peter journeyed to the bedroom. Peter left the mug."]


def test_a_planted_duplicate_trips_the_guard_and_is_named():
    guard = LeakGuard(TRAIN)
    suites = {"plan_gen": [{"probe": "How to make coffee? Walk to kitchen. Grab mug. Put mug on coffee maker."},
                           {"probe": TRAIN[1]}]}   # planted: a training story verbatim
    with pytest.raises(E2WMError, match=r"plan_gen#1 \(100%"):
        guard.check(suites)


def test_near_duplicates_leak_and_distinct_items_do_not():
    guard = LeakGuard(TRAIN, n=8, threshold=0.5)
    near = TRAIN[1].replace("Julie", "Anna")   # one word changed: most 8-grams survive
    assert guard.leaks(near)
    assert not guard.leaks("Anna travelled to the bathroom. Davis picked up the towel. Davis dropped the towel.")
    assert guard.overlap("Walk to kitchen.") == 0.0     # under min_words: not comparable
    # a short probe (5-7 words) leaks only when it occurs whole
    assert guard.leaks("walk to television switch on television")
    assert not guard.leaks("walk to television switch on lamp")


def _ep(i, scene, kind="plan", activity=None):
    return Episode(key=f"k{i}", kind=kind, scene=scene, seed=0, unit=i, activity=activity)


def test_split_holds_out_scenes_and_activities():
    eps = [_ep(i, f"procedural:{i % 10}", "plan", f"act {i % 7}") for i in range(70)]
    eps += [_ep(100 + i, f"procedural:{i % 10}", "explore") for i in range(20)]
    a, b = split(eps, 0.2, 0.3, seed=1), split(eps, 0.2, 0.3, seed=1)
    assert [e.key for e in a.train] == [e.key for e in b.train]
    assert len(a.eval_scenes) == 2 and len(a.unseen_activities) == 2
    assert not {e.scene for e in a.train} & set(a.eval_scenes)
    assert not {e.activity for e in a.train} & set(a.unseen_activities)
    assert len(a.train) + len(a.eval) == len(eps)
    assert split(eps, 0.2, 0.3, seed=2).eval_scenes != a.eval_scenes or \
        split(eps, 0.2, 0.3, seed=2).unseen_activities != a.unseen_activities


def test_template_words_shared_by_every_row_do_not_count():
    head = "Given a household activity plan as follows: "
    train = [head + f"Walk to room{i}. Grab thing{i}. Put thing{i} on table{i}. Q: What is the name of the activity? A: act{i}"
             for i in range(40)]
    guard = LeakGuard(train)
    fresh = head + "Walk to garage. Grab hammer. Put hammer on bench. Q: What is the name of the activity? A: fix"
    assert guard.overlap(fresh) < 0.2          # only the template is shared
    assert guard.overlap(train[7]) == 1.0      # a training row itself still leaks
