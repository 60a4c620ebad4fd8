"""Every generated question is right on its own table (checked by brute force written here, never by the
generator's own queries) and its reference response scores full marks with the RewardMap scorer."""
import json
import re
from collections import Counter

import pytest

from data.corpus import tokenizer_corpus
from data.prompts import FORMAT_INSTRUCTIONS, build_messages, prompt_text
from data.questions import synthetic_dataset
from data.real import real_dataset, reasonmap_root
from data.schema import ROW_FIELDS
from rewards.map_vqa import QUESTION_TYPES, score

N_NETWORKS = 150


@pytest.fixture(scope="module")
def synthetic_rows():
    return synthetic_dataset(N_NETWORKS, per_type=2, seed=11, render_images=False)


@pytest.fixture(scope="module")
def real_rows():
    return real_dataset(reasonmap_root(), per_type=4, seed=5, images=False)


def _line_named(lines, text):
    """The table key a question's line phrase ("Line 2", "line A") refers to."""
    hits = [k for k in lines if text in (k, f"line {k}")]
    assert len(hits) == 1, (text, list(lines))
    return hits[0]


def _min_transfers(lines, a, b):
    """BFS over the line graph (lines adjacent when they share a station)."""
    dist = {ln: 0 for ln, stops in lines.items() if a in stops}
    frontier = list(dist)
    while frontier:
        nxt = []
        for ln in frontier:
            for other, stops in lines.items():
                if other not in dist and set(stops) & set(lines[ln]):
                    dist[other] = dist[ln] + 1
                    nxt.append(other)
        frontier = nxt
    return min(d for ln, d in dist.items() if b in lines[ln])


def check_answer(row):
    """Recompute the truth from the row's own JSON table."""
    lines = json.loads(row["json"])
    q, ans, t = row["question"], row["answer"], row["type"]
    a, b = row["station_1"], row["station_2"]
    if t == "torf1":
        line = _line_named(lines, re.fullmatch(rf"Is {re.escape(a)} on (.+)\?", q).group(1))
        assert ans == int(a in lines[line])
    elif t == "torf2":
        assert ans == int(any(a in s and b in s for s in lines.values()))
        assert row["question_transfer_count"] == (0 if ans else _min_transfers(lines, a, b))
    elif t == "counting1":
        line = _line_named(lines, re.search(r" on (.+) \(not counting", q).group(1))
        stops = lines[line]
        assert stops.count(a) == 1 and stops.count(b) == 1
        truth = abs(stops.index(a) - stops.index(b)) - 1
        opts = row["options"]
        assert len(opts) == 4 and len(set(opts)) == 4 and opts[ans] == str(truth)
        assert all(f"\n{'ABCD'[i]}. {o}" in q for i, o in enumerate(opts))
    elif t == "counting2":
        assert ans == len(lines)
    elif t == "counting3":
        line = _line_named(lines, re.fullmatch(r"How many transfer stations are on (.+)\?", q).group(1))
        others = {s for ln, st in lines.items() if ln != line for s in st}
        assert ans == len({s for s in lines[line] if s in others})
    elif t == "planning":
        assert ans == -1
        route = json.loads(row["routes"])[0]
        assert route[0]["departure_stop"] == a and route[-1]["arrival_stop"] == b
        for sec, nxt in zip(route, route[1:] + [None]):
            assert sec["departure_stop"] in lines[sec["route_name"]] and sec["arrival_stop"] in lines[sec["route_name"]]
            if nxt:
                assert nxt["departure_stop"] == sec["arrival_stop"]
        assert len(route) - 1 == row["question_transfer_count"] == _min_transfers(lines, a, b)
    else:
        raise AssertionError(t)


def _check_rows(rows):
    for row in rows:
        assert set(row) == set(ROW_FIELDS)
        check_answer(row)
        result = score(row["reference_response"], row)
        assert result["accuracy"] == 1.0 and result["format"] == 1.0, (row["id"], result)
        if row["type"] == "planning":
            assert result["detail"] > 0
        # station columns are empty exactly when unused
        assert bool(row["station_1"]) == (row["type"] not in ("counting2", "counting3"))


def test_synthetic_answers_and_references(synthetic_rows):
    _check_rows(synthetic_rows)
    counts = Counter(r["type"] for r in synthetic_rows)
    assert counts == {t: (N_NETWORKS if t == "counting2" else 2 * N_NETWORKS) for t in QUESTION_TYPES}


def test_real_answers_and_references(real_rows):
    _check_rows(real_rows)
    assert {r["source"] for r in real_rows} == {"real"}
    assert len({r["city"] for r in real_rows}) == 25


def test_torf_balanced(synthetic_rows, real_rows):
    for rows in (synthetic_rows, real_rows):
        for t in ("torf1", "torf2"):
            answers = Counter(r["answer"] for r in rows if r["type"] == t)
            assert answers[1] == answers[0] > 0


def test_counting1_letters_spread(synthetic_rows):
    letters = Counter(r["answer"] for r in synthetic_rows if r["type"] == "counting1")
    assert set(letters) == {0, 1, 2, 3} and min(letters.values()) > 0.15 * sum(letters.values())


def test_planning_has_transfers(synthetic_rows):
    transfers = Counter(r["question_transfer_count"] for r in synthetic_rows if r["type"] == "planning")
    assert transfers[0] > 0 and transfers[1] > 0 and transfers[2] > 0


def test_ids_unique_and_deterministic(synthetic_rows):
    assert len({r["id"] for r in synthetic_rows}) == len(synthetic_rows)
    again = synthetic_dataset(N_NETWORKS, per_type=2, seed=11, render_images=False)
    assert again == synthetic_rows
    other = synthetic_dataset(5, per_type=2, seed=12, render_images=False)
    assert [r["question"] for r in other] != [r["question"] for r in synthetic_rows[: len(other)]]


def test_images_attached_and_deterministic():
    rows = synthetic_dataset(2, types=["torf1", "planning"], per_type=2, seed=1, image_size=256)
    assert all(r["figure"] and r["figure"].startswith(b"\x89PNG") for r in rows)
    assert rows == synthetic_dataset(2, types=["torf1", "planning"], per_type=2, seed=1, image_size=256)


def test_unknown_type_rejected():
    with pytest.raises(ValueError, match="unknown question type"):
        synthetic_dataset(1, types=["torf9"], render_images=False)


def test_map_text_matches_table(synthetic_rows):
    row = synthetic_rows[0]
    lines = json.loads(row["json"])
    assert row["map_text"].splitlines() == [f"{k}: {' - '.join(v)}" for k, v in lines.items()]


def test_prompts(synthetic_rows):
    row = next(r for r in synthetic_rows if r["type"] == "planning")
    text = prompt_text(row)
    # what a network's questions share comes first (a common token prefix): the map, the instruction
    assert text == ("Metro lines:\n" + row["map_text"] + "\n\n" + FORMAT_INSTRUCTIONS["planning"] + "\n\n"
                    + row["question"])
    assert "Metro lines" not in prompt_text(row, include_map_text=False)
    msgs = build_messages(row, modality="image")
    assert msgs == [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    assert build_messages(row)[0]["content"] == [{"type": "text", "text": text}]
    with pytest.raises(ValueError):
        build_messages(row, modality="video")
    assert set(FORMAT_INSTRUCTIONS) == set(QUESTION_TYPES)


def test_tokenizer_corpus():
    texts = tokenizer_corpus(n_networks=4, seed=0)
    assert texts == tokenizer_corpus(n_networks=4, seed=0)
    assert any("Route Name:" in t for t in texts) and any("\\boxed{" in t for t in texts)
    assert any("Metro lines:" in t for t in texts)
