"""Curriculum stages and switch rules, the released single-pass order, and PromptSampler.set_types."""
import json

import numpy as np
import pytest

from data.curriculum import DEFAULT_STAGES, Curriculum, OrderedSampler, Stage, released_order, stage_metrics
from data.sampler import PromptSampler
from rewards.map_vqa import QUESTION_TYPES


def roundtrip(state: dict) -> dict:
    return json.loads(json.dumps(state))                      # checkpoints are JSON


def test_default_stages_cover_every_type_once_in_the_released_order():
    assert [s.types for s in DEFAULT_STAGES] == [("torf1", "torf2"), ("counting2", "counting3"), ("counting1",),
                                                 ("planning",)]
    assert sorted(t for s in DEFAULT_STAGES for t in s.types) == sorted(QUESTION_TYPES)


# ---- after_steps ----------------------------------------------------------------------------------------------

def test_after_steps_switches_exactly_every_n_observes_and_stops_at_the_last_stage():
    cur = Curriculum(rule="after_steps", after_steps=3)
    events = {step: cur.observe(step, ["torf1"], [0.0]) for step in range(15)}
    assert {s: e for s, e in events.items() if e} == {
        2: {"step": 2, "from": "yes-no", "to": "counting", "reason": "after 3 steps"},
        5: {"step": 5, "from": "counting", "to": "stops-between", "reason": "after 3 steps"},
        8: {"step": 8, "from": "stops-between", "to": "planning", "reason": "after 3 steps"},
    }
    assert cur.current == DEFAULT_STAGES[3] and cur.index == 3 and cur.finished
    assert cur.steps_in_stage == 6                            # steps 9..14, still counted, never a switch


def test_after_steps_resume_mid_stage_keeps_the_step_count():
    cur = Curriculum(rule="after_steps", after_steps=4)
    for step in range(6):                                     # switch at step 3, then 2 steps in "counting"
        cur.observe(step, [], [])
    state = roundtrip(cur.state_dict())
    assert state == {"mode": "staged", "stages": ["yes-no", "counting", "stops-between", "planning"], "index": 1,
                     "steps_in_stage": 2, "window": []}
    fresh = Curriculum(rule="after_steps", after_steps=4)
    fresh.load_state_dict(state)
    assert fresh.observe(6, [], []) is None
    assert fresh.observe(7, [], [])["to"] == "stops-between"  # 4th step in the stage


# ---- when_accuracy --------------------------------------------------------------------------------------------

def accuracy_curriculum():
    return Curriculum(rule="when_accuracy", accuracy=0.6, window=4)


def test_when_accuracy_waits_for_a_full_window_above_the_threshold_of_the_stage_own_groups():
    cur = accuracy_curriculum()
    # counting2 is not a yes-no type: ignored. Window [0.5]
    assert cur.observe(0, ["torf1", "counting2"], [0.5, 1.0]) is None
    # window [0.5, 0.25, 0.5]: not full
    assert cur.observe(1, ["torf2", "torf1"], [0.25, 0.5]) is None
    # full, [0.5, 0.25, 0.5, 0.5] mean 0.4375 < 0.6
    assert cur.observe(2, ["torf1"], [0.5]) is None
    assert cur.state_dict()["window"] == [0.5, 0.25, 0.5, 0.5]
    # [0.5, 0.5, 1.0, 1.0] mean 0.75 (had the counting2 0.0 counted: [0.5, 1.0, 0.0, 1.0] mean 0.625)
    event = cur.observe(3, ["torf2", "counting2", "torf1"], [1.0, 0.0, 1.0])
    assert event == {"step": 3, "from": "yes-no", "to": "counting", "reason": "accuracy 0.75 >= 0.60 over 4 groups"}
    # window and step count start over in the new stage; late yes-no groups no longer count
    assert cur.observe(4, ["torf1", "counting3"], [1.0, 1.0]) is None
    assert (cur.index, cur.steps_in_stage, cur.state_dict()["window"]) == (1, 1, [1.0])


def test_when_accuracy_threshold_is_inclusive_despite_float_sums():
    cur = Curriculum(rule="when_accuracy", accuracy=0.7, window=3)
    assert sum([0.7] * 3) / 3 < 0.7                           # the float mean falls just short ...
    event = cur.observe(0, ["torf1"] * 3, [0.7] * 3)          # ... yet 0.7 >= 0.7 switches
    assert event["reason"] == "accuracy 0.70 >= 0.70 over 3 groups"


def test_when_accuracy_never_switches_past_the_last_stage():
    cur = Curriculum(stages=[Stage("a", ("torf1",)), Stage("b", ("planning",))], rule="when_accuracy",
                     accuracy=0.5, window=1)
    assert cur.observe(0, ["torf1"], [1.0])["to"] == "b"
    assert all(cur.observe(s, ["planning"], [1.0]) is None for s in range(1, 5))
    assert cur.current.name == "b" and cur.finished


def test_when_accuracy_resume_mid_window_makes_the_same_decisions():
    cur = accuracy_curriculum()
    cur.observe(0, ["torf1", "torf2"], [1.0, 0.0])
    cur.observe(1, ["torf1"], [0.5])
    state = roundtrip(cur.state_dict())
    assert state["window"] == [1.0, 0.0, 0.5] and state["steps_in_stage"] == 2
    fresh = accuracy_curriculum()
    fresh.load_state_dict(state)
    future = [(["torf2"], [0.25]), (["torf1"], [1.0]), (["torf2", "torf1"], [1.0, 0.75]),
              (["counting2"], [1.0]), (["counting3", "counting2", "counting3"], [1.0, 0.0, 0.0])]
    ours = [cur.observe(2 + i, *args) for i, args in enumerate(future)]
    theirs = [fresh.observe(2 + i, *args) for i, args in enumerate(future)]
    assert ours == theirs
    # hand trace: [1,0,.5,.25] .4375 no; [0,.5,.25,1] .4375 no; [.25,1,1,.75] .75 switch at step 4;
    # counting: [1] not full; [1,1,0,0] .5 no
    assert [e and e["step"] for e in ours] == [None, None, 4, None, None]
    assert fresh.state_dict()["window"] == [1.0, 1.0, 0.0, 0.0]
    assert cur.state_dict() == fresh.state_dict()


def test_loading_a_state_from_other_stages_or_mode_is_an_error():
    state = Curriculum().state_dict()
    with pytest.raises(ValueError, match="mode"):
        Curriculum(mode="released_order").load_state_dict(state)
    with pytest.raises(ValueError, match="stages"):
        Curriculum(stages=DEFAULT_STAGES[:2]).load_state_dict(state)


def test_stage_metrics_are_numbers():
    cur = accuracy_curriculum()
    assert stage_metrics(cur) == {"curriculum/stage": 0.0, "curriculum/steps_in_stage": 0.0}
    cur.observe(0, ["torf1", "torf2"], [1.0, 0.5])
    assert stage_metrics(cur) == {"curriculum/stage": 0.0, "curriculum/steps_in_stage": 1.0,
                                  "curriculum/window_accuracy": 0.75}


# ---- validation -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"stages": [Stage("a", ("torf1", "torf9"))]}, "unknown question type 'torf9'"),
    ({"stages": [Stage("a", ("torf1",)), Stage("b", ())]}, "stage 'b' has no question types"),
    ({"stages": []}, "at least one stage"),
    ({"stages": [Stage("a", ("torf1",)), Stage("b", ("planning", "torf1"))]},
     "'torf1' is in stage 'a' and in stage 'b'"),
    ({"stages": [Stage("a", ("torf1",)), Stage("a", ("planning",))]}, "duplicate stage names"),
    ({"after_steps": 0}, "after_steps must be >= 1"),
    ({"accuracy": 1.5}, r"accuracy must be in \[0, 1\]"),
    ({"accuracy": -0.1}, r"accuracy must be in \[0, 1\]"),
    ({"window": 0}, "window must be >= 1"),
    ({"rule": "sometimes"}, "unknown curriculum rule"),
    ({"mode": "shuffled"}, "unknown curriculum mode"),
])
def test_invalid_curricula_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Curriculum(**kwargs)


def test_observe_needs_one_accuracy_per_group():
    with pytest.raises(ValueError, match="2 group types but 1 group accuracies"):
        Curriculum().observe(0, ["torf1", "torf2"], [1.0])


# ---- released order -------------------------------------------------------------------------------------------

ROWS = [{"id": i, "type": t} for i, t in enumerate(
    ["planning", "torf2", "Counting1", "torf1", "counting3", "other", "counting2", "torf1"])]


def test_released_order_is_stable_by_stage_with_unstaged_rows_last():
    assert [r["id"] for r in released_order(ROWS)] == [1, 3, 7, 4, 6, 2, 0, 5]


def test_released_order_with_a_seed_shuffles_only_within_stages():
    ids = [r["id"] for r in released_order(ROWS, seed=3)]
    assert sorted(ids[:3]) == [1, 3, 7] and sorted(ids[3:5]) == [4, 6] and ids[5:] == [2, 0, 5]
    assert ids == [r["id"] for r in released_order(ROWS, seed=3)]
    assert any([r["id"] for r in released_order(ROWS, seed=s)] != [1, 3, 7, 4, 6, 2, 0, 5] for s in range(10))


def test_ordered_sampler_walks_the_seeded_order_then_repeats_it_and_resumes():
    sampler = OrderedSampler(ROWS[:4], seed=5)                # stages: yes-no {1, 3}, stops-between {2}, planning {0}
    order = [r["id"] for r in sampler.next(4)]
    assert sorted(order[:2]) == [1, 3] and order[2:] == [2, 0]
    assert [r["id"] for r in sampler.next(2)] == order[:2]    # the second pass repeats the same order
    state = roundtrip(sampler.state_dict())
    assert state == {"passes": 1, "position": 2, "seed": 5, "rows": 4}
    fresh = OrderedSampler(ROWS[:4], seed=5)
    fresh.load_state_dict(state)
    fresh.set_types(["planning"])                             # a no-op: the order is the curriculum
    assert [r["id"] for r in fresh.next(3)] == [2, 0, order[0]] == [r["id"] for r in sampler.next(3)]


def test_ordered_sampler_refuses_a_state_of_another_order():
    state = roundtrip(OrderedSampler(ROWS, seed=1).state_dict())
    with pytest.raises(ValueError, match="seed 1, 8 rows"):
        OrderedSampler(ROWS, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="has no seed"):
        OrderedSampler(ROWS, seed=1).load_state_dict({"passes": 0, "position": 3})
    with pytest.raises(ValueError, match="integer seed"):
        OrderedSampler(ROWS, seed=None)


def test_ordered_sampler_shuffles_each_stage_of_generated_rows_with_the_seed():
    from data.questions import synthetic_dataset
    generated = synthetic_dataset(4, types=("torf1", "torf2", "counting2", "planning"), per_type=2,
                                  render_images=False)        # network by network: n0's rows, then n1's, ...
    by_stage = [ids for s in DEFAULT_STAGES if (ids := [r["id"] for r in generated if r["type"] in s.types])]
    assert len(by_stage) == 3 and min(len(b) for b in by_stage) >= 4     # yes-no, counting, planning

    def served(seed):
        return [r["id"] for r in OrderedSampler(generated, seed=seed).next(len(generated))]

    order = served(11)
    ends = np.cumsum([len(b) for b in by_stage])
    blocks = [order[end - len(b):end] for b, end in zip(by_stage, ends)]   # the stages stay in order
    for block, stage_ids in zip(blocks, by_stage):
        assert sorted(block) == sorted(stage_ids)             # a permutation of the stage's rows
        assert block != stage_ids                             # not the generator's order
    assert served(11) == order                                # same seed, same order
    assert served(12) != order


def test_released_order_mode_never_switches_and_reports_the_latest_consumed_stage():
    cur = Curriculum(rule="after_steps", after_steps=1, mode="released_order")
    assert cur.observe(0, ["torf1", "torf2"], [1.0, 1.0]) is None and cur.index == 0
    assert cur.observe(1, ["torf2", "counting3"], [1.0, 1.0]) is None and cur.current.name == "counting"
    assert cur.observe(2, ["other"], [1.0]) is None and cur.index == 1      # type in no stage: unchanged
    assert cur.observe(3, ["planning"], [1.0]) is None and cur.finished
    assert cur.observe(4, ["torf1"], [1.0]) is None and cur.index == 0     # the repeated pass starts over


# ---- PromptSampler.set_types ----------------------------------------------------------------------------------

MIXED = [{"id": i, "type": t} for i, t in enumerate(["torf1", "planning", "TORF2", "counting1", "torf1",
                                                    "planning", "counting2", "torf2", "planning", "torf1"])]


def ids(rows):
    return [r["id"] for r in rows]


def test_sampler_without_set_types_keeps_the_original_permutation():
    sampler = PromptSampler(MIXED, seed=5)
    expected = list(np.random.default_rng([5, 0]).permutation(10)) + list(np.random.default_rng([5, 1]).permutation(10))
    assert ids(sampler.next(20)) == expected
    sampler.set_types(None)                                   # already unrestricted: no-op
    assert sampler.state_dict() == {"seed": 5, "epoch": 1, "position": 10, "types": None}   # no new pass


def test_set_types_restricts_to_a_fresh_deterministic_pass():
    sampler = PromptSampler(MIXED, seed=5)
    sampler.next(3)
    sampler.set_types(["TorF1", "torf2"])                     # case-insensitive on both sides
    pool = np.array([0, 2, 4, 7, 9])
    expected = [int(pool[i]) for i in np.random.default_rng([5, 1]).permutation(5)]
    expected += [int(pool[i]) for i in np.random.default_rng([5, 2]).permutation(5)]
    assert ids(sampler.next(10)) == expected
    assert sampler.state_dict() == {"seed": 5, "epoch": 2, "position": 5, "types": ["torf1", "torf2"]}
    sampler.set_types(["torf2", "torf1"])                     # same set: no-op
    assert sampler.state_dict()["epoch"] == 2
    sampler.set_types(["planning"])
    assert sampler.state_dict() == {"seed": 5, "epoch": 3, "position": 0, "types": ["planning"]}
    assert sorted(ids(sampler.next(3))) == [1, 5, 8]


def test_set_types_state_resumes_exactly():
    sampler = PromptSampler(MIXED, seed=11)
    sampler.next(4)
    sampler.set_types(["planning", "counting1", "counting2"])
    sampler.next(7)
    fresh = PromptSampler(MIXED, seed=11)
    fresh.load_state_dict(roundtrip(sampler.state_dict()))
    assert ids(fresh.next(50)) == ids(sampler.next(50))
    assert {r["type"] for r in fresh.next(20)} == {"planning", "counting1", "counting2"}


def test_old_sampler_state_without_types_still_loads():
    sampler = PromptSampler(MIXED, seed=2)
    sampler.load_state_dict({"seed": 2, "epoch": 3, "position": 4})
    assert ids(sampler.next(1)) == [int(np.random.default_rng([2, 3]).permutation(10)[4])]


def test_set_types_with_no_rows_names_them_and_changes_nothing():
    sampler = PromptSampler(MIXED, seed=0)
    before = sampler.state_dict()
    with pytest.raises(ValueError, match="no rows of type\\(s\\) counting3"):
        sampler.set_types(["counting3"])
    with pytest.raises(ValueError, match="pass None"):
        sampler.set_types([])
    assert sampler.state_dict() == before
    with pytest.raises(ValueError, match="no rows of type"):
        PromptSampler(MIXED).load_state_dict({"seed": 0, "epoch": 0, "position": 0, "types": ["counting3"]})
