"""UCT planner over a world model, with E2WM's rewards, action pruning and macro pre-actions.

The search is written against a small environment interface (`WorldEnv` below: clone, check,
step, and a few queries), so the same code can drive the official executor for the benchmark.
What differs from E2WM's `mcts.py`, deliberately: every random choice comes from one seeded
generator; the rollout discount is gamma**t (E2WM squared its running discount each step);
rewards count only the goal facts (E2WM's goal sets rewarded merely walking close to things);
rollouts and expansion order are goal-aware by default (`rollout`, e2wm.collect.goal_prior), and the
plan is the shortest successful path found (`select`).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field

from e2wm.config import build, check_ranges
from e2wm.collect.goal_prior import GoalPrior
from e2wm.errors import E2WMError
from e2wm.world.legal import line_text
from e2wm.world.rules import possible
from e2wm.world.vocab import ACTION_ARITY, ACTION_NAMES, DRINKABLE, LYING, POURABLE, SITTING

# E2WM's pruning: Find and Run, and the verbs it judged useless for plans.
E2WM_EXCLUDED = ("FIND", "RUN", "DRINK", "LOOKAT", "POINTAT", "GREET", "READ", "TOUCH", "TYPE",
                 "WATCH", "PUSH", "PULL", "SLEEP", "WAKEUP", "SQUEEZE", "EAT", "SCRUB", "CUT", "WASH")
# Verbs that "use" an object: a closed container holding it is opened first (a macro).
_USES = ("GRAB", "SWITCHON", "SWITCHOFF", "PLUGIN", "PLUGOUT", "RINSE", "WIPE")
_TWO_ARG = ("PUTBACK", "PUTIN", "POUR")
_HELD_ONLY = ("DROP", "RELEASE", "PUTOBJBACK")   # checked only for objects in hand
SELECTS = ("shortest", "best_reward", "most_visited")
ROLLOUTS = ("goal", "uniform")


@dataclass(frozen=True)
class MCTSConfig:
    # Ranges (checked on construction) stop a typo from exhausting memory or time; no sane job nears them.
    simulations: int = field(default=20_000, metadata={"range": (1, 10_000_000)})
    max_depth: int = field(default=25, metadata={"range": (1, 1000)})
    discount: float = 0.99
    # exploration: E2WM's c(N) = ln((1 + N + c_base) / c_base + c_init)
    c_init: float = field(default=10.0, metadata={"range": (0.0, 1e9)})
    c_base: float = field(default=1000.0, metadata={"range": (1e-3, 1e12)})
    reward_new: float = field(default=2.0, metadata={"range": (-1e6, 1e6)})    # per goal fact made true
    reward_undo: float = field(default=-1.5, metadata={"range": (-1e6, 1e6)})  # per goal fact undone
    reward_step: float = field(default=-0.1, metadata={"range": (-1e6, 1e6)})  # per step (a macro is one)
    reward_done: float = field(default=5.0, metadata={"range": (-1e6, 1e6)})   # once every goal fact holds
    excluded: tuple[str, ...] = E2WM_EXCLUDED
    # The plan: "shortest" successful simulated path (else the best-reward prefix), E2WM's
    # "best_reward" prefix of any simulated path, or the "most_visited" descent.
    select: str = "shortest"
    # Rollouts and expansion order: "goal" prefers actions that make progress on an unmet goal fact
    # (e2wm.collect.goal_prior); "uniform" draws uniformly among the legal actions (E2WM).
    rollout: str = "goal"
    goal_bias: float = field(default=0.9, metadata={"range": (0.0, 1.0)})  # P(a goal-aware rollout step)
    # Stop once a successful path is known and this many simulations in a row found no shorter
    # one (0: always run every simulation, as E2WM). Plans per core-hour, for a little plan length.
    patience: int = field(default=0, metadata={"range": (0, 10_000_000)})
    prune: bool = True            # drop steps the successful plan does not need (re-checked in the world)
    goal_verbs: bool = True       # leave out verbs that cannot change a goal fact (see `goal_verbs`)
    room_walks: str = "first"     # rooms as walk targets: "first" step only (and goal rooms), or "always" (E2WM)

    def __post_init__(self):
        def bad(name, why):
            raise E2WMError(f"{name}={getattr(self, name)!r}: {why}")
        check_ranges(self)
        d = self.discount
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d <= 1:
            bad("discount", "must be a number in (0, 1]")
        for name in ("prune", "goal_verbs"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "must be true or false")
        if self.select not in SELECTS:
            bad("select", f"must be one of {', '.join(SELECTS)}")
        if self.rollout not in ROLLOUTS:
            bad("rollout", f"must be one of {', '.join(ROLLOUTS)}")
        if self.room_walks not in ("first", "always"):
            bad("room_walks", "must be 'first' or 'always'")
        if not isinstance(self.excluded, (tuple, list)) or not all(isinstance(v, str) for v in self.excluded):
            bad("excluded", "must be a list of action names")
        unknown = [v for v in self.excluded if v.upper() not in ACTION_ARITY]
        if unknown:
            bad("excluded", f"unknown action(s) {', '.join(unknown)}")
        if "WALK" in [v.upper() for v in self.excluded]:
            bad("excluded", "the planner cannot work without WALK")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["excluded"] = list(self.excluded)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MCTSConfig":
        return build(cls, d, "mcts config")


class WorldEnv:
    """The planner's view of one agent in an e2wm World."""
    __slots__ = ("w", "agent", "c")

    def __init__(self, world, agent: int = 0):
        self.w, self.agent, self.c = world, agent, world.agents[agent]

    def clone(self) -> "WorldEnv":
        return WorldEnv(self.w.clone(), self.agent)

    def check(self, line: str) -> bool:
        return self.w.check(line, self.agent)

    def step(self, line: str) -> bool:
        return self.w.step(line, self.agent).ok

    def resting(self) -> bool:
        return bool(self.w.states(self.c) & (SITTING | LYING))

    def close_to(self, x: int) -> bool:
        return self.w.close_to(self.c, x)

    def held(self) -> tuple[int, ...]:
        return tuple(sorted(self.w.held(self.c)))

    def closed_container(self, x: int) -> int | None:
        return self.w.closed_container(x)

    def truth(self, facts) -> int:
        """Bit i set when facts[i] holds."""
        w, mask = self.w, 0
        for i, f in enumerate(facts):
            if f.holds(w):
                mask |= 1 << i
        return mask


class ActionSpace:
    """E2WM's pruned action set: walk to a room or a goal object; act on goal objects close by.

    An action is a tuple of script lines: one line, or a macro (StandUp then Walk for a resting
    agent; Open a closed container then use what is inside it). With `config.goal_verbs`, verbs
    that cannot change any of the goal facts are left out too (see `goal_verbs`); with
    `config.room_walks == "first"`, rooms are walk targets only at the first step and when a goal
    fact names them (a walk to an object works from anywhere).
    """

    def __init__(self, scene, objects, config: MCTSConfig | None = None, facts=()):
        cfg = config or MCTSConfig()
        ex = {v.upper() for v in cfg.excluded}
        if cfg.goal_verbs:
            ex |= set(ACTION_ARITY) - goal_verbs(scene, facts)
        self.verbs = frozenset(set(ACTION_ARITY) - ex)   # the verbs this space may use
        chars = set(scene.characters)
        self.rooms = sorted(scene.rooms)
        named_rooms = {n for f in facts for n in f.nodes() if n in scene.rooms}
        self.later_rooms = (self.rooms if cfg.room_walks == "always"
                            else [r for r in self.rooms if r in named_rooms])
        self.objects = sorted(o for o in objects if o not in scene.rooms and o not in chars)
        self.scene = scene
        one = [a for a, n in ACTION_ARITY.items() if n == 1 and a not in ex and a != "WALK"]
        self.one_arg = {x: [(a, line_text(scene, a, (x,))) for a in one
                            if a not in _HELD_ONLY and possible(a, scene, x)] for x in self.objects}
        self.held_arg = {x: [line_text(scene, a, (x,)) for a in _HELD_ONLY if a in one]
                         for x in self.objects}
        self.two_arg = [a for a in _TWO_ARG if a not in ex]
        self.zero_arg = [f"[{ACTION_NAMES[a]}]" for a, n in ACTION_ARITY.items() if n == 0 and a not in ex]
        self.standup = "[StandUp]"   # always allowed: a resting agent must stand to walk
        self._object_set = frozenset(self.objects)
        self._one_arg_set = {x: frozenset(v) for x, v in self.one_arg.items()}

    def legal(self, env, first: bool = False) -> list[tuple[str, ...]]:
        """The actions executable now, in a fixed order."""
        out, seen = [], set()
        resting = env.resting()
        for x in (self.rooms if first else self.later_rooms + self.objects):
            box = None if first or x in self.rooms else env.closed_container(x)
            line = line_text(self.scene, "WALK", (x if box is None else box,))
            if line in seen:
                continue
            seen.add(line)
            if not resting:
                if env.check(line):
                    out.append((line,))
            elif _runs(env, (self.standup, line)):
                out.append((self.standup, line))
        if first:
            return out
        held = env.held()
        for x in self.objects:
            if not env.close_to(x):
                continue
            box = env.closed_container(x)
            for verb, line in self.one_arg[x]:
                action = self._use(env, verb, line, box)
                if action:
                    out.append(action)
            for h in held:
                if h == x:
                    for line in self.held_arg[x]:
                        if env.check(line):
                            out.append((line,))
                    continue
                for verb in self.two_arg:
                    line = line_text(self.scene, verb, (h, x))
                    if env.check(line):
                        out.append((line,))
        for line in self.zero_arg:
            if env.check(line):
                out.append((line,))
        return out

    def among(self, env, keys: dict) -> list[tuple[str, ...]]:
        """The actions `legal(env)` offers (past the first step) whose last line is a key of `keys`
        ({line: (verb, node ids)}), sorted: the same answer as filtering `legal`, checking only
        those few lines (the goal-aware rollout's hot path)."""
        out, resting, targets = [], None, None
        objects = self._object_set
        for line, (verb, ids) in keys.items():
            if verb == "WALK":
                if targets is None:   # a shut-in object is walked to through its container
                    targets = set(self.later_rooms)
                    for x in self.objects:
                        box = env.closed_container(x)
                        targets.add(x if box is None else box)
                    resting = env.resting()
                if ids[0] not in targets:
                    continue
                if not resting:
                    if env.check(line):
                        out.append((line,))
                elif _runs(env, (self.standup, line)):
                    out.append((self.standup, line))
            elif not ids:
                if line in self.zero_arg and env.check(line):
                    out.append((line,))
            elif len(ids) == 2:
                if (verb in self.two_arg and ids[1] in objects and ids[0] != ids[1]
                        and env.close_to(ids[1]) and env.check(line)):
                    out.append((line,))
            else:
                x = ids[0]
                if x not in objects or not env.close_to(x):
                    continue
                if verb in _HELD_ONLY:
                    if line in self.held_arg[x] and env.check(line):
                        out.append((line,))
                elif (verb, line) in self._one_arg_set[x]:
                    action = self._use(env, verb, line, env.closed_container(x))
                    if action:
                        out.append(action)
        out.sort()
        return out

    def _use(self, env, verb: str, line: str, box) -> tuple[str, ...] | None:
        """A one-object line as an action: itself if it runs now, else, for a use of a thing shut in
        `box`, the macro that opens the box first (if that runs); None otherwise."""
        if env.check(line):
            return (line,)
        if box is not None and verb in _USES:
            macro = (line_text(self.scene, "OPEN", (box,)), line)
            if env.check(macro[0]) and _runs(env, macro):
                return macro
        return None


# Verbs whose effects can change goal facts of every kind; the rest are kept only when a goal
# fact needs them. Verbs with no effect (Move, Touch, ...) or duplicating another (Release is
# Drop, PutObjBack is a PutBack / PutIn to where the object came from) never are.
_ALWAYS = {"WALK", "GRAB", "DROP", "OPEN", "CLOSE", "SWITCHON", "SWITCHOFF", "PLUGIN", "PLUGOUT",
           "PUTBACK", "PUTIN", "STANDUP"}


def goal_verbs(scene, facts) -> set[str]:
    """The verbs a plan for `facts` may need."""
    verbs = set(_ALWAYS)
    chars = set(scene.characters)
    for f in facts:
        if f.name == "FACING":
            verbs.add("TURNTO")
        if f.kind == "state" and f.name == "CLEAN":
            verbs |= {"WIPE", "RINSE", "WASH", "SCRUB"}
        if f.name in ("SITTING", "LYING") or (f.name == "ON" and f.a in chars):
            verbs |= {"SIT", "LIE"}
        if f.kind == "edge" and f.name == "ON" and f.b in chars:
            verbs |= {"PUTON", "PUTOFF"}
        if f.kind == "edge" and f.name == "INSIDE" and scene.props[f.a] & (POURABLE | DRINKABLE):
            verbs.add("POUR")
    return verbs


def _runs(env, lines) -> bool:
    """Whether a macro runs through in a scratch copy (macros are rare; a clone is cheap)."""
    scratch = env.clone()
    return all(scratch.step(line) for line in lines)


class _Node:
    __slots__ = ("action", "reward", "children", "untried", "n", "w", "done")

    def __init__(self, action, reward, done):
        self.action, self.reward, self.done = action, reward, done
        self.children: list[_Node] = []
        self.untried: list | None = None   # filled on the first visit
        self.n = 0
        self.w = 0.0


@dataclass
class SearchResult:
    actions: list[tuple[str, ...]]     # the chosen plan, one tuple of lines per planner step
    reward: float                      # its undiscounted return during search
    reached: bool                      # every goal fact held at its end during search
    stats: dict = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def lines(self) -> list[str]:
        return [line for a in self.actions for line in a]


def search(env, facts, space: ActionSpace, config: MCTSConfig, rng: random.Random,
           progress=None) -> SearchResult:
    """Run `config.simulations` UCT simulations from `env` towards `facts`.

    With `rollout == "goal"`, a node's untried actions are expanded goal-aware ones first, and
    each rollout step draws, with probability `goal_bias`, among the goal-aware legal actions
    (`GoalPrior.preferred`, acting on what is at hand before walking off), else among all.
    """
    t0 = time.perf_counter()
    cfg = config
    gamma, depth_max = cfg.discount, cfg.max_depth
    full = (1 << len(facts)) - 1
    start_truth = env.truth(facts)
    root = _Node((), 0.0, start_truth == full)
    best_r, best_path, best_done = 0.0, [], root.done
    shortest, shortest_r = None, 0.0           # the shortest successful path (lines), its return
    improved = 0                               # the simulation that last found a shorter one
    first_solution, solutions = 0, 0
    nodes, rollout_steps, max_tree_depth = 1, 0, 0
    prior = (GoalPrior(env.w.scene, facts, space.objects, env.c, space.verbs | {"STANDUP"})
             if cfg.rollout == "goal" else None)

    def transition(e, action, truth, ever):
        if not all(e.step(line) for line in action):
            # legal actions always run; a failure means the env disagrees with its own checks
            raise E2WMError(f"planner: legal action {action} failed to execute")
        now = e.truth(facts)
        return step_reward(truth, now, ever, full, cfg), now, ever | now

    def preferred(e, legal, first):
        return prior.room_walks(e, legal) if first else prior.preferred(e, space, legal)

    for sim in range(cfg.simulations):
        e = env.clone()
        node, truth, ever, depth = root, start_truth, start_truth, 0
        path_nodes = [root]
        rewards: list[float] = []
        actions: list[tuple[str, ...]] = []
        # Selection: descend through fully expanded nodes.
        while not node.done and depth < depth_max:
            if node.untried is None:
                node.untried = space.legal(e, first=depth == 0)
                rng.shuffle(node.untried)
                if prior is not None:   # goal-aware ones last: they are popped first
                    good = set(preferred(e, node.untried, depth == 0))
                    node.untried = ([a for a in node.untried if a not in good]
                                    + [a for a in node.untried if a in good])
            if node.untried or not node.children:
                break
            node = _select(node, cfg)
            _, truth, ever = transition(e, node.action, truth, ever)   # the reward is stored
            rewards.append(node.reward)
            actions.append(node.action)
            path_nodes.append(node)
            depth += 1
        # Expansion: one untried action.
        if not node.done and depth < depth_max and node.untried:
            action = node.untried.pop()
            r, truth, ever = transition(e, action, truth, ever)
            child = _Node(action, r, truth == full)
            node.children.append(child)
            nodes += 1
            node = child
            rewards.append(r)
            actions.append(action)
            path_nodes.append(child)
            depth += 1
        max_tree_depth = max(max_tree_depth, depth)
        # Rollout: uniformly random legal actions, or goal-aware ones.
        done = node.done
        while not done and depth < depth_max:
            first = depth == 0
            good = None
            if prior is not None and rng.random() < cfg.goal_bias:
                # what is at hand first, then walks; only without any, all legal actions
                good = prior.room_walks(e, space.legal(e, True)) if first else prior.preferred(e, space)
                good = [a for a in good if not a[-1].startswith("[Walk]")] or good
            legal = good or space.legal(e, first=first)
            if not legal:
                break
            action = legal[rng.randrange(len(legal))]
            r, truth, ever = transition(e, action, truth, ever)
            done = truth == full
            rewards.append(r)
            actions.append(action)
            depth += 1
            rollout_steps += 1
        # Best-reward prefix (E2WM's returned plan): highest return, then shortest.
        total = 0.0
        for k, r in enumerate(rewards):
            total += r
            if total > best_r + 1e-9 or (abs(total - best_r) <= 1e-9 and k + 1 < len(best_path)):
                best_r, best_path = total, actions[: k + 1]
                best_done = k + 1 == len(rewards) and done
        if done:   # a successful path: the first one's simulation, and the shortest one
            solutions += 1
            first_solution = first_solution or sim + 1
            n_lines = sum(len(a) for a in actions)
            if (shortest is None or n_lines < _lines(shortest)
                    or (n_lines == _lines(shortest) and total > shortest_r + 1e-9)):
                shortest, shortest_r, improved = list(actions), total, sim + 1
        backup(path_nodes, rewards, gamma)
        ran = sim + 1
        if progress is not None and ran % 1000 == 0:
            progress(1000)
        if cfg.patience and shortest is not None and ran - improved >= cfg.patience:
            break
    else:
        ran = cfg.simulations
    if progress is not None and ran % 1000:
        progress(ran % 1000)

    if cfg.select == "most_visited":
        plan, node = [], root
        while node.children:
            node = max(node.children, key=lambda ch: ch.n)
            plan.append(node.action)
            if node.done:
                break
        reward, reached = plan_return(env, facts, plan, cfg)
    elif cfg.select == "shortest" and shortest is not None:
        plan, reward, reached = shortest, shortest_r, True
    else:
        plan, reward, reached = best_path, best_r, best_done
    wall = time.perf_counter() - t0
    stats = {"simulations": ran, "nodes": nodes, "max_tree_depth": max_tree_depth,
             "rollout_steps": rollout_steps, "root_actions": len(root.untried or []) + len(root.children),
             "first_solution": first_solution, "solutions": solutions,
             "shortest_found": _lines(shortest) if shortest is not None else 0}
    return SearchResult(list(plan), round(reward, 6), reached, stats, wall)


def _lines(actions) -> int:
    return sum(len(a) for a in actions)


def backup(path_nodes: list, rewards: list[float], gamma: float) -> None:
    """Add the discounted return G_t = r_t + gamma * G_{t+1} to each tree node on the path.

    path_nodes[0] is the root and path_nodes[t + 1] the node reached by the t-th reward; rewards
    past the tree (the rollout) count in the returns but have no node.
    """
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        if t + 1 < len(path_nodes):
            path_nodes[t + 1].n += 1
            path_nodes[t + 1].w += g
    path_nodes[0].n += 1


def _select(node: _Node, cfg: MCTSConfig) -> _Node:
    n = node.n
    c = math.log((1 + n + cfg.c_base) / cfg.c_base + cfg.c_init) * math.sqrt(n)
    best, best_score = None, -math.inf
    for ch in node.children:
        score = ch.w / ch.n + c / (1 + ch.n)
        if score > best_score:
            best, best_score = ch, score
    return best


def step_reward(before: int, after: int, ever: int, full: int, cfg: MCTSConfig) -> float:
    """The transition reward between goal-fact bit masks; `ever`: facts true at any earlier point.

    A fact pays `reward_new` only the first time it becomes true. E2WM paid again each time an
    undone fact was redone, so toggling a fact (+2, -1.5, +2) outscored doing it once and the
    best-reward plans filled up with toggles.
    """
    r = (cfg.reward_step + cfg.reward_new * (after & ~ever).bit_count()
         + cfg.reward_undo * (before & ~after).bit_count())
    return r + cfg.reward_done if after == full else r


def plan_return(env, facts, plan, cfg) -> tuple[float, bool]:
    """(undiscounted return, goal reached) of running `plan` in a copy of `env`."""
    e, full = env.clone(), (1 << len(facts)) - 1
    truth = ever = e.truth(facts)
    total = 0.0
    for action in plan:
        for line in action:
            e.step(line)
        now = e.truth(facts)
        total += step_reward(truth, now, ever, full, cfg)
        truth, ever = now, ever | now
    return total, truth == full
