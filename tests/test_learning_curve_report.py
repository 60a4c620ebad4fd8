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
