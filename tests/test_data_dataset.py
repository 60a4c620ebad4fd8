"""Parquet round-trip and the loader for ReasonMap / ReasonMap-Plus style files, malformed rows included."""
import base64
import io
import json

import pytest
from PIL import Image

from data.dataset import load_rows, write_parquet
from data.images import load_image
from data.questions import synthetic_dataset
from data.schema import ROW_FIELDS
from rewards.map_vqa import score

TABLE = {
    "Line 1": ["Alpha Station (Transfer Station)", "Beta Station", "Gamma Station"],
    "Line 2": ["Delta Station", "Alpha Station (Transfer Station)", "Omega Station"],
}


def _png(size=(64, 32)):
    buf = io.BytesIO()
    Image.new("RGB", size, "green").save(buf, format="PNG")
    return buf.getvalue()


def test_parquet_round_trip(tmp_path):
    rows = synthetic_dataset(3, per_type=2, seed=4, image_size=224)
    path = tmp_path / "sub" / "rows.parquet"
    write_parquet(rows, path)
    loaded = load_rows(path)
    assert loaded.errors == [] and loaded.rows == rows
    assert load_image(loaded.rows[0]["figure"]).size == (224, 224)
    text_only = synthetic_dataset(2, per_type=1, seed=4, render_images=False)
    write_parquet(text_only, tmp_path / "t.parquet")
    assert load_rows(tmp_path / "t.parquet").rows == text_only


def test_write_parquet_needs_core_fields(tmp_path):
    with pytest.raises(KeyError, match="question"):
        write_parquet([{"id": "x"}], tmp_path / "x.parquet")


def _plus_rows(tmp_path):
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "city.png").write_bytes(_png())
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "city.json").write_text(json.dumps(TABLE), encoding="utf-8")
    b64 = base64.b64encode(_png((20, 10))).decode()
    common = {"difficulty_city": "easy", "city_line_count": 2, "city_transfer_count": 1, "country": "c",
              "city": "city", "json": "tables/city.json"}
    return [
        {**common, "question": "Is Beta Station on Line 2?", "answer": 0, "type": "TorF1",
         "station_1": "Beta Station", "figure": b64},
        {**common, "question": "How many metro lines are shown?", "answer": "2", "type": "Counting2",
         "figure": "maps/city.png", "json": TABLE},
        {**common, "question": "How many stops between Delta Station and Omega Station?", "answer": "B",
         "type": "Counting1", "options": ["0", "1", "2", "3"], "figure": {"bytes": None, "path": "maps/city.png"},
         "json": json.dumps(TABLE)},
    ]


def test_reasonmap_plus_jsonl(tmp_path):
    rows = _plus_rows(tmp_path)
    path = tmp_path / "plus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    result = load_rows(path)
    assert result.errors == [], result.summary()
    torf, count2, count1 = result.rows
    assert [r["type"] for r in result.rows] == ["torf1", "counting2", "counting1"]
    assert (torf["answer"], count2["answer"], count1["answer"]) == (0, 2, 1)
    assert load_image(torf["figure"]).size == (20, 10)
    assert load_image(count2["figure"]).size == (64, 32) and load_image(count1["figure"]).size == (64, 32)
    clean = json.loads(torf["json"])
    assert clean["Line 1"][0] == "Alpha Station" and list(clean) == ["Line 1", "Line 2"]
    assert torf["map_text"].splitlines()[1] == "Line 2: Delta Station - Alpha Station - Omega Station"
    assert all(set(r) == set(ROW_FIELDS) and r["source"] == "reasonmap" for r in result.rows)
    for row in result.rows:
        assert score(row["reference_response"], row)["accuracy"] == 1.0
    assert "3 rows loaded, 0 malformed" in result.summary()


def test_reasonmap_json_planning(tmp_path):
    (tmp_path / "city.json").write_text(json.dumps(TABLE), encoding="utf-8")
    base = {"country": "c", "city": "city", "figure": base64.b64encode(_png()).decode(), "json": "city.json",
            "station_1": "Beta Station", "station_2": "Omega Station (Transfer Station)",
            "question_short": "Route from Beta to Omega?", "question_long": "Route with via stops?",
            "difficulty_city": "easy", "difficulty_question": "easy", "city_line_count": 2,
            "city_transfer_count": 1, "question_transfer_count": 1,
            "routes": [[{"route_name": "Line 1", "departure_stop": "Beta Station", "arrival_stop": "Alpha Station"},
                        {"route_name": "Line 2", "departure_stop": "Alpha Station", "arrival_stop": "Omega Station"}]]}
    path = tmp_path / "reasonmap.json"
    path.write_text(json.dumps([base, {**base, "station_1": "Gamma Station"}]), encoding="utf-8")
    result = load_rows(path)
    assert result.errors == []
    row = result.rows[0]
    assert row["type"] == "planning" and row["answer"] == -1
    assert row["question"] == "Route from Beta to Omega?" and row["station_2"] == "Omega Station"
    assert json.loads(row["routes"])[0][1]["arrival_stop"] == "Omega Station"
    assert score(row["reference_response"], row)["accuracy"] == 1.0
    assert score(result.rows[1]["reference_response"], result.rows[1])["accuracy"] == 1.0
    long = load_rows(path, question_field="question_long").rows[0]
    assert long["question"] == "Route with via stops?"


def test_malformed_rows_are_counted(tmp_path):
    good = {"question": "Is A on Line 1?", "answer": 1, "type": "torf1", "json": {"Line 1": ["A", "B"]}}
    lines = [
        json.dumps(good),
        json.dumps({**good, "type": None}),                 # missing type
        json.dumps({**good, "type": "torf9"}),              # unknown type
        json.dumps({**good, "answer": "maybe"}),            # bad answer
        json.dumps({**good, "figure": "definitely not base64 or a file"}),
        json.dumps({**good, "json": "missing_table.json"}),
        json.dumps({"question": "Plan it", "type": "planning", "station_1": "A", "station_2": "B"}),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({**good, "question": ""}),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    result = load_rows(path)
    assert len(result.rows) == 1 and len(result.errors) == 9
    assert [i for i, _ in result.errors] == list(range(1, 10))
    reasons = [r.split(":")[0] for _, r in result.errors]
    assert reasons == ["missing type", "unknown type", "bad answer", "bad figure", "bad json", "missing json",
                       "bad json line", "not an object", "missing question"]
    summary = result.summary()
    assert "1 rows loaded, 9 malformed" in summary and "bad json: 1" in summary
    assert load_rows(path, default_type="torf1").errors[0][0] != 1  # default_type fills a missing type


def test_folder_and_missing_path(tmp_path):
    rows = synthetic_dataset(1, per_type=1, seed=0, render_images=False)
    write_parquet(rows, tmp_path / "a" / "x.parquet")
    (tmp_path / "a" / "y.jsonl").write_text(json.dumps({**rows[0], "id": "other", "figure": None}), encoding="utf-8")
    result = load_rows(tmp_path / "a")
    assert len(result.rows) == len(rows) + 1 and not result.errors
    with pytest.raises(FileNotFoundError):
        load_rows(tmp_path / "nope.parquet")
