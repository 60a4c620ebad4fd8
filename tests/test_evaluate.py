"""cluster.evaluate's report: every number worked out by hand (the actor path is in test_e2e_loop.py)."""
import math

import pytest

from cluster.config import load_config
from cluster.evaluate import HELDOUT_SEED_OFFSET, eval_config, evaluation_report, report_table


def s(pid, qtype, city, acc, fmt=1.0, detail=0.0, weight=1.0, failure=None):
    return {"prompt_id": pid, "type": qtype, "difficulty_city": city, "accuracy": acc, "format": fmt,
            "detail": detail, "weight": weight, "failure": failure}


SAMPLES = [
    s("a", "torf1", "easy", 1.0),                               # W 1.0
    s("a", "torf1", "easy", 0.0, fmt=0.0),
    s("b", "torf1", "hard", 0.0, weight=1.5),
    s("b", "torf1", "hard", 0.0, weight=1.5, failure="timeout"),
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
    assert "type torf1" in table and "difficulty hard" in table and table.splitlines()[-1].startswith("overall")


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
