"""cluster.evaluate's report: every number worked out by hand (the actor path is in test_e2e_loop.py)."""
import math

import numpy as np
import pytest

from cluster.config import load_config
from cluster.eval_report import (
    constant_answer_text, evaluation_report, mean_interval, report_table, wilson_interval,
)
from cluster.evaluate import HELDOUT_SEED_OFFSET, eval_config


def s(pid, qtype, city, acc, fmt=1.0, detail=0.0, weight=1.0, failure=None, truth=None):
    return {"prompt_id": pid, "type": qtype, "difficulty_city": city, "accuracy": acc, "format": fmt,
            "detail": detail, "weight": weight, "failure": failure, "truth": truth}


SAMPLES = [
    s("a", "torf1", "easy", 1.0, truth="1"),                    # W 1.0
    s("a", "torf1", "easy", 0.0, fmt=0.0, truth="1"),
    s("b", "torf1", "hard", 0.0, weight=1.5, truth="0"),
    s("b", "torf1", "hard", 0.0, weight=1.5, failure="timeout", truth="0"),
    s("c", "planning", "middle", 1.0, detail=7.0, weight=1.7),   # 1.2 + 0.5 for transfers
    s("c", "planning", "middle", 0.0, detail=-1.0, weight=1.7),
]


def test_overall():
    o = evaluation_report(SAMPLES)["overall"]
    assert (o["samples"], o["prompts"], o["failures"]) == (6, 3, 1)
    assert o["accuracy"] == pytest.approx(2 / 6)
    assert o["pass_at_n"] == pytest.approx(2 / 3)                 # a and c have a correct sample
    # (1.0 * 1 + 1.7 * 1) / (1 + 1 + 1.5 + 1.5 + 1.7 + 1.7)
    assert o["weighted_accuracy"] == pytest.approx(2.7 / 8.4)
    assert o["format_rate"] == pytest.approx(5 / 6)
    assert o["detail"] == pytest.approx(3.0)                      # planning only: (7 - 1) / 2


def test_breakdowns():
    r = evaluation_report(SAMPLES)
    assert list(r["by_type"]) == ["planning", "torf1"] and "detail" not in r["by_type"]["torf1"]
    t = r["by_type"]["torf1"]
    assert t["accuracy"] == 0.25 and t["pass_at_n"] == 0.5 and t["weighted_accuracy"] == pytest.approx(1 / 5)
    assert r["by_difficulty"]["hard"]["accuracy"] == 0.0 and r["by_difficulty"]["middle"]["detail"] == 3.0
    table = report_table(r, "t")
    assert "type torf1" in table and "difficulty hard" in table and table.splitlines()[-3].startswith("overall")
    assert table.splitlines()[-2].startswith("most frequent answer: planning")


def test_empty_and_data_choices(tmp_path):
    with pytest.raises(ValueError, match="no scored samples"):
        evaluation_report([])
    cfg = load_config("configs/cpu_tiny.yaml")
    held = eval_config(cfg, "synthetic")
    assert held.data.source == "synthetic" and held.data.seed == cfg.data.seed + HELDOUT_SEED_OFFSET
    assert eval_config(cfg, "real").data.source == "real"
    f = tmp_path / "rows.parquet"
    f.write_bytes(b"")
    assert eval_config(cfg, str(f)).data.path == str(f)
    with pytest.raises(FileNotFoundError, match="not 'synthetic', 'real'"):
        eval_config(cfg, str(tmp_path / "missing.parquet"))
    assert math.isnan(evaluation_report([s("z", "torf1", "easy", 1.0, weight=0.0)])["overall"]["weighted_accuracy"])


def test_wilson_intervals_by_hand():
    # p = 1/2, n = 10: centre (0.5 + z^2/20) / (1 + z^2/10) = 0.5, half z sqrt(1/40 + z^2/400) / (1 + z^2/10)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)   # never below 0, never [0, 0]
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    # several samples per prompt: normal interval on the per-prompt means 0.5, 0.5, 1, 0
    lo, hi = mean_interval([0.5, 0.5, 1.0, 0.0])
    half = 1.959964 * float(np.std([0.5, 0.5, 1.0, 0.0], ddof=1)) / 2
    assert (lo, hi) == pytest.approx((max(0.0, 0.5 - half), min(1.0, 0.5 + half)), abs=1e-6)


def test_intervals_formatted_accuracy_and_chance_in_the_report():
    r = evaluation_report(SAMPLES)
    t = r["by_type"]["torf1"]
    # per-prompt mean accuracies a 0.5, b 0 -> normal interval; formatted: 3 samples, 1 right
    assert t["accuracy_interval"] == pytest.approx(list(mean_interval([0.5, 0.0])))
    assert (t["formatted"], t["formatted_accuracy"]) == (3, pytest.approx(1 / 3))
    assert t["formatted_interval"] == pytest.approx(list(wilson_interval(1, 3)))
    assert t["chance"] == 0.5 and "chance" not in r["by_type"]["planning"] and "chance" not in r["overall"]


def test_constant_answer_baseline_is_the_best_fixed_answer_per_type():
    samples = SAMPLES + [s("d", "torf1", "easy", 0.0, truth="1"), s("e", "counting1", "easy", 1.0, truth="2"),
                         s("f", "counting1", "easy", 0.0, truth="2"), s("g", "counting1", "easy", 0.0, truth="0")]
    r = evaluation_report(samples)
    # torf1: truths a 1, b 0, d 1 -> always "yes" is right on 2 of 3 prompts
    assert r["by_type"]["torf1"]["constant"]["accuracy"] == pytest.approx(2 / 3)
    assert r["by_type"]["torf1"]["constant"]["answers"] == {"torf1": "yes"}
    assert r["by_type"]["counting1"]["constant"]["answers"] == {"counting1": "c"}       # index 2 -> c
    assert r["by_type"]["planning"]["constant"]["accuracy"] == 0.0                     # no constant route
    # overall: each type its own constant: (2 torf1 + 0 planning + 2 counting1) / 7 prompts
    o = r["overall"]["constant"]
    assert o["accuracy"] == pytest.approx(4 / 7) and o["interval"] == pytest.approx(list(wilson_interval(4, 7)))
    table = report_table(r)
    assert "const" in table and "torf1 'yes'" in table and "pass@n" in table      # 2 samples of a and b
    assert "pass@n" not in report_table(evaluation_report([s("z", "torf1", "easy", 1.0, truth="1")]))
    assert constant_answer_text("torf2", "0") == "no" and constant_answer_text("counting2", "7") == "7"


def test_the_most_frequent_answer_and_its_share():
    samples = [{**s(str(i), "torf1", "easy", float(i < 3), truth="1"), "answer": "yes" if i < 3 else "no"}
               for i in range(4)]
    assert evaluation_report(samples)["overall"]["top_answer"] == ["yes", 0.75]
