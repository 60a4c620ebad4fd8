"""TaskSchedule (curriculum x VAS) without Ray: stage switches restrict sampling, a scoring pass sets the VAS
weights, and the checkpointed state restores exactly."""
import json

import numpy as np
import pytest

from cluster.config import ConfigError, load_config
from cluster.schedule import TaskSchedule, curriculum_stages

ROWS = [{"id": f"{t}-{i}", "type": t} for t in ("torf1", "torf2", "counting2") for i in range(6)]
PASS_RATE = {"torf1-0": 0.5, "torf1-1": 1.0, "torf2-0": 0.5}     # every other prompt: always wrong


def cfg(*extra):
    return load_config("configs/cpu_tiny.yaml", ["data.types=[torf1, torf2, counting2]", "train.groups_per_step=4",
                                                 *extra])


def fake_score(rows, n, seeds):
    """n samples per row; correct for the first round(p * n); distinct token ids so TDS does not tie."""
    out = []
    for r in rows:
        k = round(PASS_RATE.get(r["id"], 0.0) * n)
        out += [{"prompt_id": r["id"], "accuracy": float(j < k), "token_ids": [j, j + 1, j + 2, 7]}
                for j in range(n)]
    return out


def test_default_stages_keep_the_loaded_types():
    names = [s.name for s in curriculum_stages(cfg("data.curriculum.enabled=true"))]
    assert names == ["yes-no", "counting"]          # counting1 and planning are not loaded
    with pytest.raises(ConfigError, match=r"question types \['planning'\]"):
        cfg("data.curriculum.enabled=true", "data.curriculum.stages=[{name: p, types: [planning]}]")


def test_switch_restricts_sampling_and_vps_weights_prompts():
    s = TaskSchedule(cfg("data.curriculum.enabled=true", "data.curriculum.after_steps=2", "data.vas.enabled=true",
                         "data.vas.update_every=3", "data.vas.beta=0"), ROWS)
    assert {r["type"] for r in s.sampler.next(12)} <= {"torf1", "torf2"}
    assert s.vps_due(0) and not s.vps_due(2) and s.vps_due(3)
    m = s.refresh_vps(fake_score, seed=0)
    assert m == {"vas/scored_prompts": 12.0, "vas/scoring_zero_variance_fraction": 10 / 12}
    # beta 0: VPS = minmax(p(1 - p)): the two half-right prompts get 1, all others 0
    w = dict(zip(s.sampler.ids, s.sampler.weights))
    assert w["torf1-0"] == pytest.approx(1.0) and w["torf2-0"] == pytest.approx(1.0)
    assert w["torf1-1"] == 0.0 and w["torf2-3"] == 0.0 and w["counting2-0"] == 1.0   # unscored: unchanged
    assert s.observe(0, [{"type": "torf1", "accuracy": 0.5}]) is None
    event = s.observe(1, [{"type": "torf2", "accuracy": 0.0}])
    assert event == {"step": 1, "from": "yes-no", "to": "counting", "reason": "after 2 steps"}
    s.sampler.next(len(s.sampler.pending))            # the rest of a batch drawn before the switch, if any
    assert {r["type"] for r in s.sampler.next(12)} == {"counting2"}
    assert s.metrics()["curriculum/stage"] == 1.0


def test_state_restores_exactly_after_a_switch():
    opts = ("data.curriculum.enabled=true", "data.curriculum.after_steps=1", "data.vas.enabled=true")
    a = TaskSchedule(cfg(*opts), ROWS)
    a.refresh_vps(fake_score, seed=0)
    a.sampler.next(5)
    a.observe(0, [{"type": "torf1", "accuracy": 1.0}])
    a.sampler.next(3)
    saved = json.loads(json.dumps(a.state_dict()))     # checkpoints are JSON
    b = TaskSchedule(cfg(*opts), ROWS)
    b.load_state_dict(saved)
    assert b.state_dict() == saved and b.curriculum.index == 1
    np.testing.assert_array_equal(b.sampler.weights, a.sampler.weights)
    assert [r["id"] for r in b.sampler.next(25)] == [r["id"] for r in a.sampler.next(25)]


def test_released_order_and_plain_sampler_states():
    def served(seed):
        s = TaskSchedule(cfg("data.curriculum.enabled=true", "data.curriculum.mode=released_order",
                             f"train.seed={seed}"), ROWS)
        return [r["id"] for r in s.sampler.next(18)]

    order = served(0)                                   # stage yes-no (12 rows), then counting (6), each shuffled
    assert sorted(order[:12]) == sorted(r["id"] for r in ROWS[:12]) != order[:12]
    assert sorted(order[12:]) == sorted(r["id"] for r in ROWS[12:]) != order[12:]
    assert served(0) == order and served(1) != order    # the run's seed draws the permutation
    with pytest.raises(ValueError, match="cannot use VAS"):
        TaskSchedule(cfg("data.curriculum.enabled=true", "data.curriculum.mode=released_order",
                         "data.vas.enabled=true"), ROWS)
    plain = TaskSchedule(cfg(), ROWS)
    old_style = plain.sampler.state_dict()              # a checkpoint written before schedules existed
    plain.load_state_dict(old_style)
    assert plain.metrics() == {}


def drive(s, versions, passes):
    """The controller's order between steps (BetweenSteps.run): observe version - 1's groups, then a scoring
    pass if due. Appends (version, types scored) per pass to `passes`."""
    def scored(rows, n, seeds):
        passes.append((version, sorted({r["type"] for r in rows})))
        return fake_score(rows, n, seeds)

    for version in versions:
        if version > 0:
            s.observe(version - 1, [{"type": s.curriculum.current.types[0], "accuracy": 0.5}])
        if s.vps_due(version):
            s.refresh_vps(scored, seed=version)


def test_a_stage_switch_triggers_a_scoring_pass_over_the_new_stage():
    # after_steps 3: the switch is observed after step 2, so version 3 scores the counting stage at once
    s = TaskSchedule(cfg("data.curriculum.enabled=true", "data.curriculum.after_steps=3", "data.vas.enabled=true",
                         "data.vas.update_every=1000"), ROWS)
    passes = []
    drive(s, range(10), passes)
    assert passes == [(0, ["torf1", "torf2"]), (3, ["counting2"])]
    assert s.vps_due(1003) and not s.vps_due(1000)     # the period counts from the switch


def test_the_period_restarts_at_the_switch_and_survives_a_resume():
    opts = ("data.curriculum.enabled=true", "data.curriculum.after_steps=4", "data.vas.enabled=true",
            "data.vas.update_every=3")
    a = TaskSchedule(cfg(*opts), ROWS)
    passes = []
    drive(a, range(6), passes)                         # switch observed after step 3 -> pass at 4 (not 6)
    assert [v for v, _ in passes] == [0, 3, 4]
    saved = json.loads(json.dumps(a.state_dict()))     # controller_state.json's "sampler"
    assert saved["vps_anchor"] == 4
    b = TaskSchedule(cfg(*opts), ROWS)
    b.load_state_dict(saved)
    resumed = []
    drive(b, range(6, 14), resumed)
    drive(a, range(6, 14), passes)
    assert [v for v, _ in resumed] == [7, 10, 13] == [v for v, _ in passes[3:]]
    assert all(types == ["counting2"] for _, types in resumed)


def test_without_a_switch_passes_stay_periodic_from_zero():
    s = TaskSchedule(cfg("data.vas.enabled=true", "data.vas.update_every=3"), ROWS)   # no curriculum
    assert [v for v in range(10) if s.vps_due(v)] == [0, 3, 6, 9]
    old = s.state_dict()
    del old["vps_anchor"]                              # a checkpoint from before switch-triggered passes
    s.load_state_dict(old)
    assert s.vps_anchor == 0
    assert not TaskSchedule(cfg(), ROWS).vps_due(0)    # VAS off: never
