"""GroundedPRM MCTS: hybrid reward, backprop, UCT and the request generator driven by a scripted fake driver.
Every expected number is computed by hand in the comments."""
import itertools
import math
import random

import pytest

from rewards.prm.mcts import (
    CheckAnswer,
    CheckStep,
    MCTSSettings,
    NextSteps,
    Node,
    StepCheck,
    StepProposal,
    backpropagate,
    drive,
    hybrid_reward,
    is_terminal,
    path_steps,
    search,
    select_child,
    select_leaf,
    uct_score,
)


def _child(parent, step="", value=0.0, visits=0, **kw):
    node = Node(step=step, parent=parent, value=value, visits=visits, depth=parent.depth + 1, **kw)
    parent.children.append(node)
    return node


# --- hybrid aggregation ------------------------------------------------------------------------------------

def test_hybrid_reward_by_hand():
    # N = 3: (1/3)(1*3/3) + (1/3)(-1*2/3) + (1/3)(1*1/3) + (1/3)(1) = 3/9 - 2/9 + 1/9 + 3/9 = 5/9
    assert hybrid_reward([1, -1, 1], 1) == pytest.approx(5 / 9)
    # N = 0: R = F
    assert hybrid_reward([], 1) == 1.0
    assert hybrid_reward([], -1) == -1.0
    # all negative, N = 2: (1/2)(-1*2/2) + (1/2)(-1*1/2) + (1/2)(-1) = -0.5 - 0.25 - 0.5 = -1.25
    assert hybrid_reward([-1, -1], -1) == pytest.approx(-1.25)
    # N = 1: v_0 + F: (1)(1*1/1) + (1)(-1) = 0
    assert hybrid_reward([1], -1) == pytest.approx(0.0)
    # no-evidence steps (0) add nothing: N = 2: 0 + (1/2)(1*1/2) + (1/2)(1) = 0.75
    assert hybrid_reward([0, 1], 1) == pytest.approx(0.75)


# --- backpropagation ---------------------------------------------------------------------------------------

def test_backpropagate_small_tree():
    root = Node()
    a = _child(root, "a")
    b = _child(a, "b")
    c = _child(root, "c")
    backpropagate(b, 1.0, 0.9)
    # b: +1 (its own visit counted); a (d=1): +0.9; root (d=2): +0.81
    assert (b.value, b.visits) == (1.0, 1)
    assert (a.value, a.visits) == (pytest.approx(0.9), 1)
    assert (root.value, root.visits) == (pytest.approx(0.81), 1)
    assert (c.value, c.visits) == (0.0, 0)
    backpropagate(c, -0.5, 0.9)
    # c: -0.5; root (d=1): 0.81 - 0.45 = 0.36; a and b untouched
    assert (c.value, c.visits) == (-0.5, 1)
    assert (root.value, root.visits) == (pytest.approx(0.36), 2)
    assert (a.value, a.visits, b.value, b.visits) == (pytest.approx(0.9), 1, 1.0, 1)
    assert path_steps(b) == ["a", "b"] and path_steps(root) == []


# --- UCT selection -----------------------------------------------------------------------------------------

def _uct_node():
    """Parent with N = 10 and children (value, visits): A (3, 5), B (1, 2), C (-1, 3)."""
    parent = Node(visits=10)
    return parent, [_child(parent, name, v, n) for name, v, n in (("A", 3, 5), ("B", 1, 2), ("C", -1, 3))]


def test_uct_score_and_pick():
    parent, (a, b, c) = _uct_node()
    # c = 1.8, ln 10 = 2.302585
    # A: 3/5 + 1.8 sqrt(2.302585/5) = 0.6 + 1.221505 = 1.821505
    # B: 1/2 + 1.8 sqrt(2.302585/2) = 0.5 + 1.931369 = 2.431369  <- max
    # C: -1/3 + 1.8 sqrt(2.302585/3) = -0.333333 + 1.576957 = 1.243623
    assert uct_score(a, 10, 1.8) == pytest.approx(1.821505, abs=1e-6)
    assert uct_score(b, 10, 1.8) == pytest.approx(2.431369, abs=1e-6)
    assert uct_score(c, 10, 1.8) == pytest.approx(1.243623, abs=1e-6)
    rng = random.Random(0)
    assert select_child(parent, MCTSSettings(), rng) is b
    # sign -1 (collecting negatives): A 0.621505, B 1.431369, C 0.333333 + 1.576957 = 1.910290 -> C, the worst
    assert uct_score(c, 10, 1.8, sign=-1) == pytest.approx(1.910290, abs=1e-6)
    assert select_child(parent, MCTSSettings(), rng, sign=-1) is c
    # c = 0: pure exploitation picks the best mean, A (0.6)
    assert select_child(parent, MCTSSettings(exploration=0.0), rng) is a


def test_uct_unvisited_first_and_ties_to_first():
    parent, _ = _uct_node()
    d = _child(parent, "D")
    assert uct_score(d, 10, 1.8) == math.inf
    assert select_child(parent, MCTSSettings(), random.Random(0)) is d
    twins = Node(visits=4)
    first, _ = _child(twins, "x", 1.0, 2), _child(twins, "y", 1.0, 2)
    assert select_child(twins, MCTSSettings(), random.Random(0)) is first


def test_select_skips_terminal_exhausted_and_virtual():
    parent = Node(visits=10)
    _child(parent, "t", 5.0, 1, terminal=True, final=1)
    exhausted = _child(parent, "e", 5.0, 1)
    _child(exhausted, "e1", terminal=True, final=-1)          # expanded, every child terminal
    _child(parent, "v", 5.0, 1, virtual=True)
    open_child = _child(parent, "o", -3.0, 3)
    _child(open_child, "v1", virtual=True)                    # only a virtual child: still a leaf to expand
    rng = random.Random(0)
    assert select_child(parent, MCTSSettings(), rng) is open_child
    assert select_leaf(parent, MCTSSettings(), rng) is open_child
    open_child.terminal = True
    assert select_child(parent, MCTSSettings(), rng) is None
    assert select_leaf(parent, MCTSSettings(), rng) is None


def test_random_selection_is_seeded_and_only_picks_selectable():
    parent = Node(visits=5)
    kids = [_child(parent, f"k{i}", 0.0, 1) for i in range(4)]
    kids[1].terminal = True
    settings = MCTSSettings(selection="random")
    picks = [select_child(parent, settings, random.Random(3)).step for _ in range(3)]
    assert len(set(picks)) == 1                               # same seed, same pick
    rng = random.Random(11)
    seen = {select_child(parent, settings, rng).step for _ in range(200)}
    assert seen == {"k0", "k2", "k3"}


def test_is_terminal():
    assert is_terminal("so x = \\boxed{4}", False)
    assert is_terminal("done <end>", False)
    assert is_terminal("x = 4", True)
    assert not is_terminal("x = 4", False)


def test_settings_validation():
    with pytest.raises(ValueError):
        MCTSSettings(selection="greedy")
    with pytest.raises(ValueError):
        MCTSSettings(child_nums=0)


# --- the generator with a scripted driver ------------------------------------------------------------------

class Scripted:
    """Answers from tables keyed by the path; logs every request."""

    def __init__(self, policy, checks, answers):
        self.policy, self.checks, self.answers, self.log = policy, checks, answers, []

    def __call__(self, request):
        self.log.append(request)
        if isinstance(request, NextSteps):
            out = self.policy[tuple(request.steps)]
            assert len(out) == request.n
            return [StepProposal(t, f) for t, f in out]
        if isinstance(request, CheckStep):
            return StepCheck(self.checks[request.step], f"verify {request.step}", f"why {request.step}")
        return self.answers[request.step]


BOX = "so \\boxed{4}"


def test_round_one_requests_and_reward():
    policy = {(): [("a0", False), ("a1", False), ("a2", False)],
              ("a0",): [("b", False)], ("a0", "b"): [("c", False)], ("a0", "b", "c"): [(BOX, False)]}
    driver = Scripted(policy, {"a0": 1, "a1": 1, "a2": -1, "b": 1, "c": -1, BOX: 0}, {BOX: True})
    tree = drive(search(MCTSSettings(max_rounds=1)), driver)
    assert driver.log == [NextSteps([], 3), CheckStep([], "a0"), CheckStep([], "a1"), CheckStep([], "a2"),
                          NextSteps(["a0"], 1), CheckStep(["a0"], "b"),
                          NextSteps(["a0", "b"], 1), CheckStep(["a0", "b"], "c"),
                          NextSteps(["a0", "b", "c"], 1), CheckStep(["a0", "b", "c"], BOX), CheckAnswer(BOX)]
    a0, a1, a2 = tree.root.children
    # values 0 at expansion: the first child is simulated. Rollout b(+1), c(-1), BOX (F = +1):
    # v = [+1, -1] (BOX's value is replaced by F), N = 2: (1/2)(1*2/2) + (1/2)(-1*1/2) + (1/2)(1) = 0.75
    assert (a0.value, a0.visits) == (pytest.approx(0.75), 1)
    assert (tree.root.value, tree.root.visits) == (pytest.approx(0.675), 1)     # 0.9 * 0.75
    assert (a1.value, a1.visits, a2.value, a2.visits) == (0.0, 0, 0.0, 0)
    assert [c.check.value for c in (a0, a1, a2)] == [1, 1, -1]
    (b,) = a0.children
    (c,) = b.children
    (box,) = c.children
    assert all(n.virtual for n in (b, c, box)) and not a0.virtual
    # virtual nodes: value = check, visits 1; the terminal BOX has check 0 and takes F = +1
    assert [(n.value, n.visits) for n in (b, c, box)] == [(1.0, 1), (-1.0, 1), (1.0, 1)]
    assert box.terminal and box.final == 1 and box.depth == 4
    assert tree.positives == [box] and tree.negatives == []
    assert (tree.rounds, tree.stop_reason) == (1, "max_rounds")
    assert (tree.policy_requests, tree.step_checks, tree.answer_checks) == (4, 6, 1)


def test_unchecked_rollout_step_inherits_the_rollout_reward():
    policy = {(): [("a0", False)], ("a0",): [("think", False)], ("a0", "think"): [("d", False)],
              ("a0", "think", "d"): [(BOX, False)]}
    driver = Scripted(policy, {"a0": 1, "think": 0, "d": 1, BOX: 0}, {BOX: False})
    tree = drive(search(MCTSSettings(child_nums=1, max_rounds=1)), driver)
    # v = [0, +1], F = -1, N = 2: (1/2)(0) + (1/2)(1 * 1/2) + (1/2)(-1) = -0.25
    (a0,) = tree.root.children
    (think,) = a0.children
    (d,) = think.children
    (box,) = d.children
    assert a0.value == pytest.approx(-0.25)
    # 'think' had no evidence of its own: it takes R; 'd' keeps its check; the answer step takes F
    assert [think.value, d.value, box.value] == [pytest.approx(-0.25), 1.0, -1.0]
    assert tree.negatives == [box]


def test_rollout_without_answer_scores_no_answer():
    policy = {(): [("a0", False)], ("a0",): [("b", False)], ("a0", "b"): [("c", False)]}
    driver = Scripted(policy, {"a0": 1, "b": -1, "c": 1}, {})
    tree = drive(search(MCTSSettings(child_nums=1, simulation_depth=2, max_rounds=1)), driver)
    # depth reached without an answer: F = -1, v = [b] = [-1], N = 1: (1)(-1*1/1) + (1)(-1) = -2
    (a0,) = tree.root.children
    assert a0.value == pytest.approx(-2.0)
    assert tree.positives == [] and tree.negatives == []          # no terminal step: not a full path


def test_terminal_child_is_scored_by_its_answer():
    driver = Scripted({(): [(BOX, True), ("a1", False)]}, {BOX: 1, "a1": 1}, {BOX: False})
    tree = drive(search(MCTSSettings(child_nums=2, max_rounds=1)), driver)
    box, a1 = tree.root.children
    # the simulated child is terminal: N = 0, R = F = -1, no rollout request
    assert not any(isinstance(r, NextSteps) and r.n == 1 for r in driver.log)
    assert (box.value, box.visits, box.final) == (-1.0, 1, -1)
    assert tree.root.value == pytest.approx(-0.9)
    assert tree.negatives == [box]


def test_all_terminal_tree_is_exhausted():
    driver = Scripted({(): [("x", True), ("y", True), ("z", True)]}, {"x": 0, "y": 0, "z": 0},
                      {"x": True, "y": False, "z": False})
    tree = drive(search(MCTSSettings(max_rounds=5)), driver)
    assert (tree.rounds, tree.stop_reason) == (1, "exhausted")


def counting_driver(answer_depth=3, correct=lambda i: i % 2 == 0):
    """A deterministic fake policy/tool: steps 'd.i: 1+1=2' (right) or '1+1=3' (wrong, every third sample),
    a \\boxed answer from depth `answer_depth` on, correct when correct(i) for the sample number i."""
    counter = itertools.count()

    def serve(request):
        if isinstance(request, NextSteps):
            out = []
            for _ in range(request.n):
                i = next(counter)
                depth = len(request.steps)
                if depth >= answer_depth:
                    out.append(StepProposal(f"{depth}.{i}: \\boxed{{{'ok' if correct(i) else 'no'}}}", False))
                else:
                    out.append(StepProposal(f"{depth}.{i}: 1+1={3 if i % 3 == 0 else 2}", False))
            return out
        if isinstance(request, CheckStep):
            value = 1 if "1+1=2" in request.step else -1 if "1+1=3" in request.step else 0
            return StepCheck(value, "v", "r")
        return "{ok}" in request.step

    return serve


def _shape(node):
    return [(node.step, round(node.value, 9), node.visits, node.virtual)] + [s for c in node.children
                                                                           for s in _shape(c)]


def test_stops_at_paths_per_label():
    settings = MCTSSettings(paths_per_label=2, max_rounds=100)
    tree = drive(search(settings), counting_driver())
    assert tree.stop_reason == "paths"
    assert len(tree.positives) >= 2 and len(tree.negatives) >= 2
    assert all(n.final == 1 for n in tree.positives) and all(n.final == -1 for n in tree.negatives)
    # one round fewer is not enough: it stopped as soon as both quotas were met
    shorter = drive(search(MCTSSettings(paths_per_label=2, max_rounds=tree.rounds - 1)), counting_driver())
    assert shorter.stop_reason == "max_rounds"
    assert len(shorter.positives) < 2 or len(shorter.negatives) < 2


def test_max_rounds_respected():
    tree = drive(search(MCTSSettings(max_rounds=4)), counting_driver(correct=lambda i: False))
    assert (tree.rounds, tree.stop_reason) == (4, "max_rounds")
    assert tree.positives == [] and tree.root.visits == 4
    nothing = search(MCTSSettings(max_rounds=0))
    with pytest.raises(StopIteration) as stop:
        next(nothing)
    assert stop.value.value.rounds == 0


def test_deterministic_given_seed():
    def run(seed, selection):
        settings = MCTSSettings(seed=seed, selection=selection, max_rounds=6)
        return _shape(drive(search(settings), counting_driver(answer_depth=4)).root)

    assert run(7, "random") == run(7, "random")
    assert run(0, "uct") == run(5, "uct")                            # UCT does not use the rng
    assert any(run(s, "random") != run(0, "random") for s in range(1, 10))


def test_bad_answers_raise():
    searcher = search(MCTSSettings())
    assert next(searcher) == NextSteps([], 3)
    with pytest.raises(TypeError):
        searcher.send([StepProposal("a", False)])                   # 1 proposal for n = 3
