"""benchmarks.learning_curve's verdicts: "beats" only with non-overlapping 95% intervals (hand-made reports)."""
from benchmarks.learning_curve import markdown, verdicts
from cluster.eval_report import evaluation_report


def _samples(acc_by_type: dict[str, tuple[int, int]], fmt: float = 1.0) -> list[dict]:
    """n questions per type with k right; truths balanced yes/no so the best constant scores 0.5."""
    out = []
    for qtype, (k, n) in acc_by_type.items():
        for i in range(n):
            out.append({"prompt_id": f"{qtype}-{i}", "type": qtype, "difficulty_city": "easy",
                        "accuracy": float(i < k), "format": fmt, "detail": 0.0, "weight": 1.0,
                        "truth": str(i % 2)})
    return out


def test_only_non_overlapping_intervals_count_as_beating():
    untrained = evaluation_report(_samples({"torf1": (10, 200), "torf2": (12, 200)}, fmt=0.0))
    strong = evaluation_report(_samples({"torf1": (150, 200), "torf2": (104, 200)}))
    v = verdicts(strong, untrained)
    assert v["beats_untrained"]
    assert v["torf1_beats_constant"] and not v["torf2_beats_constant"]       # 0.52 vs 0.5: inside the noise
    assert v["torf1_formatted_beats_chance"] and not v["torf2_formatted_beats_chance"]
    assert not v["beats_constant"] or strong["overall"]["accuracy_interval"][0] > 0.5
    flat = verdicts(evaluation_report(_samples({"torf1": (100, 200), "torf2": (100, 200)})), untrained)
    assert flat["beats_untrained"] and not flat["beats_constant"] and not flat["torf1_beats_constant"]


def test_the_markdown_table_has_a_row_per_type_and_policy():
    untrained = evaluation_report(_samples({"torf1": (2, 20)}, fmt=0.0))
    trained = evaluation_report(_samples({"torf1": (18, 20)}))
    results = {"policies": {"untrained": {"eval": untrained},
                            "sft": {"stages": [{"kind": "sft", "steps": 7}], "eval": trained,
                                    "verdicts": verdicts(trained, untrained)}}}
    table = markdown(results)
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 2 * 2                                            # header + (torf1, all) x 2 policies
    assert "| sft | sft 7 | torf1 | 20 | 0.900 |" in table and "| - |" in table and "- sft: beats_untrained" in table


def test_a_rerun_keeps_the_arms_already_measured_and_runs_only_the_missing(tmp_path, monkeypatch):
    import json

    import benchmarks.learning_curve as lc
    report = evaluation_report(_samples({"torf1": (10, 20)}))
    calls = []

    def fake_stage(kind, config, minutes, policy, out, lr, extra):
        calls.append(("stage", kind, str(out.parent.name), minutes))
        return {"kind": kind, "steps": 3, "policy": str(out / "hf")}

    def fake_eval(config, policy, out, extra):
        calls.append(("eval", out.name if policy is None else out.parent.name))
        return report
    monkeypatch.setattr(lc, "run_stage", fake_stage)
    monkeypatch.setattr(lc, "evaluate", fake_eval)
    out = tmp_path / "curve"
    args = ["--minutes", "2", "--work", str(tmp_path / "work"), "--out", str(out)]
    assert lc.main([*args, "--arms", "rl"]) == 0
    assert calls == [("eval", "untrained"), ("stage", "rl", "rl", 2.0), ("eval", "rl")]
    (tmp_path / "work" / "sft_rl" / "0-sft").mkdir(parents=True)           # an arm a killed run cut short
    calls.clear()
    assert lc.main([*args, "--arms", "rl,sft_rl"]) == 0
    assert calls == [("stage", "sft", "sft_rl", 1.0), ("stage", "rl", "sft_rl", 1.0), ("eval", "sft_rl")]
    saved = json.loads((tmp_path / "curve.json").read_text())
    assert list(saved["policies"]) == ["untrained", "rl", "sft_rl"]
    assert "| rl | rl 3 |" in (tmp_path / "curve.md").read_text()
    calls.clear()                                                            # other settings: nothing is mixed
    assert lc.main([*args[:1], "3", *args[2:], "--arms", "rl"]) == 0
    assert [c[0] for c in calls] == ["eval", "stage", "eval"]
    calls.clear()
    assert lc.main([*args[:1], "3", *args[2:], "--arms", "rl", "--fresh"]) == 0
    assert [c[0] for c in calls] == ["eval", "stage", "eval"]
