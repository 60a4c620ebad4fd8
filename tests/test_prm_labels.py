"""GroundedPRM labels (agreement, truncation, binarisation, path choice) and the PRM conversation format.
Expectations are computed by hand in the comments."""
import json

import pytest

from rewards.prm import rationale
from rewards.prm.labels import (
    binarize,
    full_paths,
    label_paths,
    signs_agree,
    truncate_negative,
    truncation_length,
)
from rewards.prm.mcts import MCTSSettings, Node, SearchTree, StepCheck


def _node(parent, step, value, check, visits=1, virtual=False, final=0):
    node = Node(step=step, parent=parent, value=value, visits=visits, virtual=virtual, depth=parent.depth + 1,
                check=StepCheck(check, f"verify {step}", f"why {step}"), terminal=final != 0, final=final)
    parent.children.append(node)
    return node


def _chain(values_checks):
    root = Node()
    node, path = root, []
    for i, (value, check) in enumerate(values_checks):
        node = _node(node, f"s{i}", value, check)
        path.append(node)
    return path


# --- sign agreement ----------------------------------------------------------------------------------------

def test_signs_agree_kept_and_dropped():
    assert signs_agree(_chain([(0.9, 1), (-0.5, -1), (1.0, 1)]))
    assert not signs_agree(_chain([(0.9, 1), (0.5, -1)]))           # positive score, tool said wrong
    assert not signs_agree(_chain([(-0.2, 1)]))                     # negative score, tool said right
    assert signs_agree(_chain([(0.4, 0), (-0.7, 0)]))               # check 0: no sign constraint
    assert not signs_agree(_chain([(0.4, 1), (0.0, 0)]))            # a 0 score is dropped, even with check 0
    assert not signs_agree(_chain([(0.0, 1)]))


def test_truncation():
    # first score <= 0 at index 1; the next score >= 0 is at index 3: keep [0, 3)
    assert truncation_length([0.5, -0.3, -0.1, 0.2, -0.4]) == 3
    assert truncation_length([0.5, 0.2]) == 2                        # no error: keep all
    assert truncation_length([0.5, -0.3, -0.1]) == 3                 # no recovery: keep all
    assert truncation_length([-0.1, 0.3]) == 1
    assert truncation_length([0.0, 0.4]) == 1                        # 0 counts as the error and as a recovery
    assert truncation_length([]) == 0
    path = _chain([(0.5, 1), (-0.3, -1), (-0.1, -1), (0.2, 1), (-0.4, -1)])
    assert [n.step for n in truncate_negative(path)] == ["s0", "s1", "s2"]


def test_binarize():
    assert [binarize(s) for s in (0.7, 1e-9, 0.0, -0.3)] == ["+", "+", "-", "-"]


# --- paths from a hand-built tree --------------------------------------------------------------------------

def _tree():
    """root
    a (0.9, +1) -> t1 (1.0, +1, F=+1)                               positive, sum 1.9, agrees
                -> b (-0.5, -1) -> t2 (V -1.0, check 0, F=-1)       negative, sum -0.6, agrees
    c (-0.8, +1) -> t3 (V -1.0, -1, F=-1)                           negative, sum -1.8, c disagrees
    d (0.5, 0) -> t4 (V 1.0, +1, F=+1)                              positive, sum 1.5, agrees (d: check 0)
               -> t5 (terminal, never scored: visits 0)             not a full path
    e (0.3, +1) -> t6 (V 1.0, +1, F=+1)                             positive, sum 1.3, agrees
    f (0.2, +1) -> g (V -1, -1) -> h (V 1, +1) -> t7 (V -1, -1, F=-1)   negative, sum -0.8, agrees
    """
    root = Node(visits=7)
    a = _node(root, "a", 0.9, 1, visits=2)
    _node(a, "t1", 1.0, 1, final=1)
    b = _node(a, "b", -0.5, -1)
    _node(b, "t2", -1.0, 0, virtual=True, final=-1)
    c = _node(root, "c", -0.8, 1)
    _node(c, "t3", -1.0, -1, virtual=True, final=-1)
    d = _node(root, "d", 0.5, 0)
    _node(d, "t4", 1.0, 1, virtual=True, final=1)
    _node(d, "t5", 0.0, 1, visits=0, final=1)
    e = _node(root, "e", 0.3, 1)
    _node(e, "t6", 1.0, 1, virtual=True, final=1)
    f = _node(root, "f", 0.2, 1)
    g = _node(f, "g", -1.0, -1, virtual=True)
    h = _node(g, "h", 1.0, 1, virtual=True)
    _node(h, "t7", -1.0, -1, virtual=True, final=-1)
    return SearchTree(root=root, settings=MCTSSettings(paths_per_label=2))


def _names(paths):
    return [[n.step for n in p] for p in paths]


def test_full_paths_ranking_and_cap():
    positives, negatives = full_paths(_tree())
    # positives by summed score high -> low: 1.9, 1.5 (1.3 is over the cap of 2)
    assert _names(positives) == [["a", "t1"], ["d", "t4"]]
    # negatives low -> high: -1.8, -0.8 (-0.6 is over the cap)
    assert _names(negatives) == [["c", "t3"], ["f", "g", "h", "t7"]]


def test_label_paths_records_and_counts():
    paths, counts = label_paths(_tree(), "math/42")
    # positives: [a,t1] and [d,t4] kept, [e,t6] over the limit; negatives: [c,t3] dropped (c disagrees),
    # [f,g,h,t7] and [a,b,t2] kept
    assert counts == {"positive": 2, "negative": 2, "dropped_sign": 1, "over_limit": 1}
    assert [(p.polarity, p.steps) for p in paths] == [("positive", ["a", "t1"]), ("positive", ["d", "t4"]),
                                                      ("negative", ["f", "g"]), ("negative", ["a", "b", "t2"])]
    truncated = paths[2]
    # scores [0.2, -1, 1, -1]: the error at g, recovery at h -> keep [f, g]
    assert (truncated.scores, truncated.labels, truncated.full_length) == ([0.2, -1.0], ["+", "-"], 4)
    assert truncated.answer_correct is False and paths[0].answer_correct is True
    assert paths[3].labels == ["+", "-", "-"]
    record = json.loads(json.dumps(paths[0].record()))
    assert record["problem_id"] == "math/42"
    assert record["checks"][0] == {"value": 1, "verify": "verify a", "rationale": "why a"}
    messages = truncated.conversation("Q?")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == "Q?\nf" and "[Right]" in messages[2]["content"]
    assert "\\boxed{-}" in messages[4]["content"]


# --- the conversation format -------------------------------------------------------------------------------

VERIFIED = ("<verify>\n"
            "The expression I needed to verify is: 2 + 3 = 5, the result is: lhs - rhs = 0\n"
            "</verify>\n"
            "<judge>\n"
            "The sum 2 + 3 is 5. The conclusion is [Right]\n"
            "</judge>\n"
            "<output>\n"
            "According to the judgement conclusion, the label of this step is: \\boxed{+}\n"
            "</output>")
THINKING = ("<verify>\n"
            "This is a thinking step, no specific calculations are needed\n"
            "</verify>\n"
            "<judge>\n"
            "The plan ignores the second condition. The conclusion is [Wrong]\n"
            "</judge>\n"
            "<output>\n"
            "According to the judgement conclusion, the label of this step is: \\boxed{-}\n"
            "</output>")


def test_assistant_turn_exact_text():
    verify = rationale.verify_text("verified", "2 + 3 = 5", "lhs - rhs = 0")
    assert rationale.assistant_turn(verify, "The sum 2 + 3 is 5.", True) == VERIFIED
    thinking = rationale.verify_text("not_checkable", "", "")
    assert thinking == rationale.THINKING_STEP
    assert rationale.assistant_turn(thinking, "The plan ignores the second condition", False) == THINKING
    assert rationale.verify_text("not_checkable", "2*x = 6", "") == (
        "The expression I needed to verify is: 2*x = 6, the result is: the tool could not check it")


def test_conversation_and_scoring_messages():
    checks = [StepCheck(1, rationale.verify_text("verified", "2 + 3 = 5", "lhs - rhs = 0"), "The sum 2 + 3 is 5."),
              StepCheck(0, rationale.THINKING_STEP, "The plan ignores the second condition")]
    messages = rationale.conversation("What is 2 + 3?", ["2 + 3 = 5", "Next we plan."], checks, ["+", False])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == rationale.SYSTEM_PROMPT
    assert messages[1]["content"] == "What is 2 + 3?\n2 + 3 = 5"
    assert messages[2]["content"] == VERIFIED
    assert messages[3]["content"] == "Next we plan."
    assert messages[4]["content"] == THINKING
    with pytest.raises(ValueError):
        rationale.conversation("Q", ["a"], checks, [True])
    scoring = rationale.scoring_messages("What is 2 + 3?", ["2 + 3 = 5"], [VERIFIED], "Next we plan.")
    assert scoring == messages[:4]
    first = rationale.scoring_messages("Q", [], [], "s1")
    assert [m["role"] for m in first] == ["system", "user"] and first[1]["content"] == "Q\ns1"


def test_label_words_are_parameters():
    prompt = rationale.system_prompt("correct", "incorrect")
    assert "[correct]" in prompt and "[incorrect]" in prompt
    text = rationale.assistant_turn("v", "r", False, "correct", "incorrect")
    assert "The conclusion is [incorrect]" in text
    assert rationale.find_label(text, "correct", "incorrect") is False


def test_find_label_takes_the_last():
    assert rationale.find_label("first [Wrong] ... then [Right]") is True
    assert rationale.find_label("Right at first, but [Wrong]") is False
    assert rationale.find_label(VERIFIED) is True and rationale.find_label(THINKING) is False
    assert rationale.find_label("no verdict here \\boxed{+}") is None
    # 'incorrect' contains 'correct': the longer word wins where they overlap
    assert rationale.find_label("correct? no: incorrect", "correct", "incorrect") is False
    assert rationale.find_label("incorrect? no: correct", "correct", "incorrect") is True
    with pytest.raises(ValueError):
        rationale.find_label("x", "Right", "Right")
