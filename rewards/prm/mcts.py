"""GroundedPRM MCTS (arXiv 2510.14942, docs/algorithms.md#groundedprm-mcts) as a pure generator: it never calls a
model or a tool.

`search(settings)` yields requests and receives the answers through `send()`, so a driver can batch the policy
calls of many problems (one generator per problem) and serve checks from the sandboxed SymPy verifier:

    NextSteps(path, n)  -> list[StepProposal] of length n      (policy samples)
    CheckStep(path, s)  -> StepCheck(value in {+1, -1, 0}, ...)  (tool verdict, or judge)
    CheckAnswer(s)      -> bool: the final answer of s equals the ground truth

One round: select a leaf by UCT, expand it into k checked children, simulate from the best fresh child with one
sample per step, reward the rollout with the hybrid aggregation and backpropagate with ancestor decay. The search
stops at `paths_per_label` positive AND negative full paths, after `max_rounds`, or when the tree is exhausted.

Simulated steps become `virtual` children: they hang off the tree for label extraction but are never selected or
expanded (as in the released code, whose rollouts live in a separate `simulation_branch`). A node whose only
children are virtual is therefore still a leaf to expand.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

SELECTIONS = ("uct", "random")
NO_ANSWER = -1          # F of a rollout that reaches simulation_depth without a final answer


@dataclass
class MCTSSettings:
    child_nums: int = 3            # k children per expansion
    simulation_depth: int = 5
    max_rounds: int = 8            # execute_round
    exploration: float = 1.8       # c
    decay: float = 0.9             # ancestor decay
    paths_per_label: int = 3       # stop at this many positive AND negative full paths
    selection: str = "uct"         # "uct" | "random"
    seed: int = 0

    def __post_init__(self):
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.child_nums < 1 or self.paths_per_label < 1:
            raise ValueError("child_nums and paths_per_label must be >= 1")
        if self.simulation_depth < 0 or self.max_rounds < 0 or self.exploration < 0 or self.decay < 0:
            raise ValueError("simulation_depth, max_rounds, exploration and decay must be >= 0")


@dataclass
class StepProposal:   # one sampled next step
    text: str
    finished: bool    # the policy ended its response here (EOS): the step is final


@dataclass
class NextSteps:      # request -> list[StepProposal] of length n
    steps: list[str]  # the path so far (step texts, root excluded)
    n: int


@dataclass
class StepCheck:      # answer to a CheckStep
    value: int        # +1 (correct), -1 (wrong), 0 (no evidence: the tool could not check it and no judge)
    verify: str       # the <verify> content: expression and tool result, or the thinking-step sentence
    rationale: str    # one or two sentences: why (from the tool verdict, or the judge's reason)


@dataclass
class CheckStep:      # request -> StepCheck
    steps: list[str]  # the path before this step
    step: str


@dataclass
class CheckAnswer:    # request -> bool: is this final step's answer equivalent to the ground truth
    step: str


Request = NextSteps | CheckStep | CheckAnswer
Answer = list[StepProposal] | StepCheck | bool


@dataclass(eq=False)  # identity semantics: two nodes with equal fields are still different nodes
class Node:
    step: str = ""
    parent: Node | None = field(default=None, repr=False)
    children: list[Node] = field(default_factory=list, repr=False)
    value: float = 0.0             # accumulated MCTS value (the step score of the labels)
    visits: int = 0
    check: StepCheck | None = None
    terminal: bool = False
    final: int = 0                 # F = +1 / -1 for terminal nodes, 0 otherwise
    virtual: bool = False          # created by simulation rather than expansion
    depth: int = 0


@dataclass
class SearchTree:
    root: Node
    settings: MCTSSettings
    rounds: int = 0
    positives: list[Node] = field(default_factory=list)   # scored terminal nodes with F = +1, in discovery order
    negatives: list[Node] = field(default_factory=list)   # ... with F = -1
    policy_requests: int = 0
    step_checks: int = 0
    answer_checks: int = 0
    stop_reason: str = ""          # "paths" | "max_rounds" | "exhausted"


def path_nodes(node: Node) -> list[Node]:
    """Nodes from the root's child down to `node` (root excluded)."""
    out = []
    while node.parent is not None:
        out.append(node)
        node = node.parent
    return out[::-1]


def path_steps(node: Node) -> list[str]:
    return [n.step for n in path_nodes(node)]


def expanded_children(node: Node) -> list[Node]:
    return [c for c in node.children if not c.virtual]


def is_exhausted(node: Node) -> bool:
    """Expanded, and every expanded child is terminal or exhausted: nothing below is left to expand."""
    kids = expanded_children(node)
    return bool(kids) and all(c.terminal or is_exhausted(c) for c in kids)


def is_terminal(step: str, finished: bool) -> bool:
    """A final answer (\\boxed{), the `<end>` marker, or EOS. (The paper's 'same result as the parent' is skipped.)"""
    return finished or "\\boxed{" in step or "<end>" in step


# --- the math ----------------------------------------------------------------------------------------------

def hybrid_reward(values: list[int], final: int) -> float:
    """R = sum_{i=0}^{N-1} (1/N) v_i (N-i)/N + (1/N) F;  R = F when N = 0.

    v_i: checks of the simulated steps after the expanded node, the last one excluded (its value is replaced by
    the final-answer score F). Earlier steps weigh more: (N-i)/N falls linearly from 1 to 1/N.
    """
    n = len(values)
    if n == 0:
        return float(final)
    return sum(v * (n - i) / n for i, v in enumerate(values)) / n + final / n


def backpropagate(node: Node, reward: float, decay: float) -> None:
    """node.value += R, node.visits += 1; the ancestor at distance d: value += decay^d R, visits += 1 (root too).

    waypoint counts the expanded node's own visit; the released code never increments it
    (docs/algorithms.md#departures-from-the-released-code), so there a simulated node keeps looking unvisited to UCT
    and Q = value / visits is undefined.
    """
    node.value += reward
    node.visits += 1
    ancestor, distance = node.parent, 1
    while ancestor is not None:
        ancestor.value += decay ** distance * reward
        ancestor.visits += 1
        ancestor, distance = ancestor.parent, distance + 1


def uct_score(child: Node, parent_visits: int, c: float, sign: int = +1) -> float:
    """Q(s,a) + c sqrt(ln N(s) / N(s,a)), Q = sign * value / visits; unvisited children score +inf (tried first).

    sign = -1 while collecting negatives: exploitation then favours the worst branches (as the released code does).
    """
    if child.visits == 0:
        return math.inf
    q = sign * child.value / child.visits
    return q + c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def select_child(node: Node, settings: MCTSSettings, rng: random.Random, sign: int = +1) -> Node | None:
    """Best selectable child (not virtual, terminal or exhausted) by UCT, ties to the first; or a uniform choice
    when settings.selection == "random". None when no child is selectable."""
    candidates = [c for c in expanded_children(node) if not c.terminal and not is_exhausted(c)]
    if not candidates:
        return None
    if settings.selection == "random":
        return rng.choice(candidates)
    scores = [uct_score(c, node.visits, settings.exploration, sign) for c in candidates]
    return candidates[scores.index(max(scores))]


def select_leaf(root: Node, settings: MCTSSettings, rng: random.Random, sign: int = +1) -> Node | None:
    """Descend from the root while the node has expanded children; None when the tree is exhausted."""
    node = root
    while expanded_children(node):
        node = select_child(node, settings, rng, sign)
        if node is None:             # only the root can get here: an exhausted child is never selected
            return None
    return node


# --- the generator -----------------------------------------------------------------------------------------

def _proposals(answer, n: int) -> list[StepProposal]:
    if not isinstance(answer, list) or len(answer) != n or not all(isinstance(p, StepProposal) for p in answer):
        raise TypeError(f"NextSteps(n={n}) must be answered with a list of {n} StepProposal, got {answer!r}")
    return answer


def _next_steps(tree: SearchTree, node: Node, n: int):
    tree.policy_requests += 1
    return _proposals((yield NextSteps(path_steps(node), n)), n)


def _add_checked(tree: SearchTree, parent: Node, proposal: StepProposal, virtual: bool):
    """New child of `parent`, checked (every node gets a check: its label needs the marker), and for a terminal
    step its final-answer score F."""
    tree.step_checks += 1
    check = yield CheckStep(path_steps(parent), proposal.text)
    if not isinstance(check, StepCheck) or check.value not in (-1, 0, 1):
        raise TypeError(f"CheckStep must be answered with a StepCheck of value -1, 0 or +1, got {check!r}")
    node = Node(step=proposal.text, parent=parent, check=check, virtual=virtual, depth=parent.depth + 1,
                terminal=is_terminal(proposal.text, proposal.finished))
    parent.children.append(node)
    if node.terminal:
        tree.answer_checks += 1
        correct = yield CheckAnswer(proposal.text)
        if not isinstance(correct, bool):
            raise TypeError(f"CheckAnswer must be answered with a bool, got {correct!r}")
        node.final = 1 if correct else -1
    return node


def _record(tree: SearchTree, terminal: Node) -> None:
    """A scored terminal node closes a full path root -> terminal."""
    (tree.positives if terminal.final > 0 else tree.negatives).append(terminal)


def _simulate(tree: SearchTree, expanded: Node):
    """Roll out from `expanded` (one sample per step) and return R.

    Virtual nodes get value = their check and visits = 1, so that every step of a full path has a score for the
    labels (the released code does the same). One addition: a terminal rollout step whose check is 0 (a bare
    '\\boxed{5}' gives the tool nothing to check) takes F as its value, since the answer check is the evidence
    for it; otherwise every tool-only rollout would end on a 0 score and fail sign agreement. Likewise an
    intermediate rollout step with check 0 takes the rollout's R (the outcome evidence that passed through it, as
    in Math-Shepherd), so a thinking step does not zero out, and drop, every tool-only path through it.
    """
    settings = tree.settings
    if expanded.terminal:                      # N = 0: R = F
        _record(tree, expanded)
        return float(expanded.final)
    node, rollout = expanded, []
    for _ in range(settings.simulation_depth):
        (proposal,) = yield from _next_steps(tree, node, 1)
        node = yield from _add_checked(tree, node, proposal, virtual=True)
        node.value, node.visits = float(node.check.value), 1
        rollout.append(node)
        if node.terminal:
            break
    final = node.final if node.terminal else NO_ANSWER
    if node.terminal:
        if node.check.value == 0:
            node.value = float(final)
        _record(tree, node)
    values = [n.check.value for n in rollout[:-1]]     # the last step's value is replaced by F
    reward = hybrid_reward(values, final)
    for n in rollout[:-1]:
        if n.check.value == 0:     # no evidence of its own (tool-only thinking step): it inherits the rollout's R
            n.value = reward
    return reward


def _enough(tree: SearchTree) -> bool:
    k = tree.settings.paths_per_label
    return len(tree.positives) >= k and len(tree.negatives) >= k


def search(settings: MCTSSettings) -> Generator[Request, Answer, SearchTree]:
    """The search of docs/algorithms.md#groundedprm-mcts; the tree comes back as StopIteration.value (or from
    `drive`). Deterministic given settings.seed and the answers."""
    rng = random.Random(settings.seed)
    tree = SearchTree(root=Node(), settings=settings)
    while not _enough(tree) and tree.rounds < settings.max_rounds:
        # enough positives: flip exploitation to go after the low-value branches for negatives
        sign = -1 if len(tree.positives) >= settings.paths_per_label else +1
        leaf = select_leaf(tree.root, settings, rng, sign)
        if leaf is None:
            tree.stop_reason = "exhausted"
            return tree
        for proposal in (yield from _next_steps(tree, leaf, settings.child_nums)):
            yield from _add_checked(tree, leaf, proposal, virtual=False)
        # the children are all fresh (unsimulated): simulate the highest-valued one, ties to the first
        expanded = max(expanded_children(leaf), key=lambda c: c.value)
        reward = yield from _simulate(tree, expanded)
        backpropagate(expanded, reward, settings.decay)
        tree.rounds += 1
    tree.stop_reason = "paths" if _enough(tree) else "max_rounds"
    return tree


def drive(searcher: Generator[Request, Answer, SearchTree], serve: Callable[[Request], Answer]) -> SearchTree:
    """Runs one search to the end, answering each request with serve(request) (tests, single-problem use)."""
    try:
        request = next(searcher)
        while True:
            request = searcher.send(serve(request))
    except StopIteration as stop:
        return stop.value
