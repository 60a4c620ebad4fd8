"""GroundedPRM labels from a search tree (arXiv 2510.14942, docs/algorithms.md#groundedprm-labels; released
`extract_path.py` -> `construct.py`).

    full path   root -> scored terminal node (root excluded); positive when F = +1, else negative
    score       the node's accumulated MCTS value
    keep        every score is non-zero and its sign equals the step's check (+1 / -1)
    truncate    negatives only: at the first score <= 0, cut before the next score >= 0
    label       score > 0 -> "+", else "-"

Which paths: `paths_per_label` of each polarity, ranked by summed score (positives highest first, negatives
lowest first: the most clearly good / bad paths; ties keep tree order). The cap is applied to the paths that pass
sign agreement, and every path left out is counted (dropped_sign, over_limit): nothing is dropped silently.
Pure: stdlib only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from rewards.prm import rationale
from rewards.prm.mcts import Node, SearchTree, StepCheck, path_nodes


@dataclass
class LabelledPath:
    problem_id: str
    polarity: str                 # "positive" | "negative"
    steps: list[str]
    scores: list[float]
    labels: list[str]             # "+" | "-"
    checks: list[StepCheck]       # verify, rationale, value per step
    answer_correct: bool          # the full path's final answer matched the ground truth (F = +1)
    full_length: int              # steps before truncation

    def record(self) -> dict:
        """JSON-ready dict (checks become dicts)."""
        return asdict(self)

    def conversation(self, question: str, right: str = rationale.RIGHT, wrong: str = rationale.WRONG) -> list[dict]:
        return rationale.conversation(question, self.steps, self.checks, self.labels, right, wrong)


def scored_terminals(root: Node) -> list[Node]:
    """Terminal nodes that received a score (visits > 0), in depth-first tree order.

    A terminal child of an expansion that was not the one simulated never gets a value: its path has no score to
    label with, so it is not a full path.
    """
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.terminal and node.visits > 0:
            out.append(node)
        stack.extend(reversed(node.children))
    return out


def ranked_paths(tree: SearchTree) -> tuple[list[list[Node]], list[list[Node]]]:
    """All full paths: positives by summed score high -> low, negatives low -> high (stable: ties in tree order)."""
    paths = [path_nodes(t) for t in scored_terminals(tree.root)]
    positives = [p for p in paths if p[-1].final > 0]
    negatives = [p for p in paths if p[-1].final <= 0]
    positives.sort(key=lambda p: -sum(n.value for n in p))
    negatives.sort(key=lambda p: sum(n.value for n in p))
    return positives, negatives


def full_paths(tree: SearchTree) -> tuple[list[list[Node]], list[list[Node]]]:
    """At most paths_per_label positive and negative root -> terminal paths (root excluded), ranked as above."""
    k = tree.settings.paths_per_label
    positives, negatives = ranked_paths(tree)
    return positives[:k], negatives[:k]


def signs_agree(path: list[Node]) -> bool:
    """Every score is non-zero and has the sign of the step's check.

    A check of 0 (no evidence) imposes no sign constraint (waypoint decision: in tool-only mode thinking steps
    have no judge, and requiring a marker would drop every path holding one). Its score must still be non-zero.
    """
    for node in path:
        if node.value == 0:
            return False
        if node.check is not None and node.check.value != 0 and (node.value > 0) != (node.check.value > 0):
            return False
    return True


def truncation_length(scores: list[float]) -> int:
    """How many steps a negative path keeps: at the first score <= 0 (the first error), the next score >= 0 marks
    where the path recovered; cut before it so the path ends in its error. No such pair: keep everything."""
    first_bad = next((i for i, s in enumerate(scores) if s <= 0), None)
    if first_bad is None:
        return len(scores)
    recovery = next((j for j in range(first_bad + 1, len(scores)) if scores[j] >= 0), None)
    return len(scores) if recovery is None else recovery


def truncate_negative(path: list[Node]) -> list[Node]:
    return path[:truncation_length([n.value for n in path])]


def binarize(score: float) -> str:
    return "+" if score > 0 else "-"


def _labelled(problem_id: str, polarity: str, path: list[Node]) -> LabelledPath:
    kept = truncate_negative(path) if polarity == "negative" else path
    scores = [n.value for n in kept]
    return LabelledPath(problem_id=problem_id, polarity=polarity, steps=[n.step for n in kept], scores=scores,
                        labels=[binarize(s) for s in scores], checks=[n.check for n in kept],
                        answer_correct=path[-1].final > 0, full_length=len(path))


def label_paths(tree: SearchTree, problem_id: str) -> tuple[list[LabelledPath], dict[str, int]]:
    """Labelled paths of one search and the counts: positive, negative (kept), dropped_sign, over_limit."""
    k = tree.settings.paths_per_label
    counts = {"positive": 0, "negative": 0, "dropped_sign": 0, "over_limit": 0}
    out = []
    for polarity, paths in zip(("positive", "negative"), ranked_paths(tree)):
        for path in paths:
            if not signs_agree(path):       # agreement is judged on the whole path, before truncation
                counts["dropped_sign"] += 1
            elif counts[polarity] >= k:
                counts["over_limit"] += 1
            else:
                out.append(_labelled(problem_id, polarity, path))
                counts[polarity] += 1
    return out, counts
