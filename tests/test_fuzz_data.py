"""Property-based fuzz of the row loaders: a file that cannot be read at all is a DataFileError naming the
file; bad records among good ones are counted with a reason, never raised and never dropped silently."""
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from data.dataset import DataFileError, load_rows, read_records, write_parquet
from data.math_problems import load_math_rows, synthetic_math_problems
from data.normalize import normalize_row
from rewards.errors import RowError

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
GOOD_MAP = {"question": "Is A on line 1?", "answer": "yes", "type": "torf1", "difficulty_city": "easy",
            "json": json.dumps({"Line 1": ["A", "B"], "Line 2": ["B", "C"]})}
GOOD_MATH = {"problem": "Compute 1 + 1.", "solution": "1 + 1 = 2. \\boxed{2}", "level": "Level 1"}
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=False),
              st.text(max_size=12), st.sampled_from(["9" * 5000, "²", "-", " 7 ", "A", "yes", "Level 9"])),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8)
MAP_KEYS = ["question", "answer", "type", "difficulty_city", "json", "options", "city_line_count",
            "city_transfer_count", "question_transfer_count", "station_1", "station_2", "routes", "figure", "id"]


def _mutated(base: dict, keys: list[str]):
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=4).map(lambda d: {**base, **d})


@FUZZ
@given(record=st.one_of(_mutated(GOOD_MAP, MAP_KEYS), json_values))
@example(record={**GOOD_MAP, "type": "counting2", "answer": "²"})          # was: int('²') ValueError escaped
@example(record={**GOOD_MAP, "type": "counting2", "answer": "9" * 5000})   # was: int() digit-limit ValueError
@example(record={**GOOD_MAP, "options": 5})                                # was: TypeError (int not iterable)
@example(record={**GOOD_MAP, "city_line_count": 10**30})                  # was: accepted, cannot be written
def test_any_map_record_is_a_row_or_a_row_error(tmp_path, record):
    try:
        row = normalize_row(record, 0, base_dir=tmp_path)
    except RowError as exc:
        assert ":" in str(exc) or str(exc).startswith(("missing", "bad", "unknown"))
        return
    write_parquet([row], tmp_path / "row.parquet")     # an accepted row fits the Arrow schema


@FUZZ
@given(records=st.lists(st.one_of(st.just(GOOD_MATH), _mutated(GOOD_MATH, ["problem", "solution", "level", "id"]),
                                  json_values), min_size=1, max_size=6))
def test_math_jsonl_rows_plus_errors_is_every_record(tmp_path, records):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    loaded = load_math_rows(path)
    assert len(loaded.rows) + len(loaded.errors) == len(records)
    assert sorted(i for i, _ in loaded.errors) == [i for i, _ in loaded.errors]
    assert str(path) in loaded.summary()


@FUZZ
@given(junk=st.lists(st.text(max_size=30).filter(lambda t: "\n" not in t and t.strip()), max_size=4))
@example(junk=["{\"problem\": \"a\u2028b\"}"])   # U+2028 inside a JSON string: was split into two bad lines
def test_jsonl_bad_lines_are_counted_good_lines_kept(tmp_path, junk):
    good = json.dumps({**GOOD_MATH, "problem": "x\u2028y\x85z"}, ensure_ascii=False)
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([good, *junk, good]) + "\n", encoding="utf-8")
    loaded = load_math_rows(path)
    assert len(loaded.rows) + len(loaded.errors) == len(junk) + 2
    assert sum(r["question"] == "x\u2028y\x85z" for r in loaded.rows) == 2
    assert all(reason.split(":", 1)[0] in ("bad json line", "not a record", "missing problem", "missing solution",
                                           "no boxed answer") for _, reason in loaded.errors)


def test_jsonl_invalid_utf8_line_is_counted(tmp_path):
    path = tmp_path / "bytes.jsonl"
    good = json.dumps(GOOD_MATH).encode()
    path.write_bytes(good + b"\n\xff\xfe{\n" + good + b"\n")
    loaded = load_math_rows(path)
    assert len(loaded.rows) == 2 and [i for i, _ in loaded.errors] == [1]
    assert loaded.errors[0][1].startswith("bad json line: line 2")


def _parquet_bytes(tmp_path) -> bytes:
    rows = synthetic_math_problems(6, seed=1)
    write_parquet(rows, tmp_path / "ok.parquet")
    return (tmp_path / "ok.parquet").read_bytes()


@FUZZ
@given(cut=st.floats(0.0, 0.999))
@example(cut=0.0)
def test_truncated_parquet_names_the_file(tmp_path, cut):
    data = _parquet_bytes(tmp_path)
    path = tmp_path / "cut.parquet"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(DataFileError) as e:
        read_records(path)
    assert str(path) in str(e.value)
    with pytest.raises(DataFileError):
        load_math_rows(path)
    with pytest.raises(DataFileError):
        load_rows(path)


@FUZZ
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".parquet", ".json", ".jsonl"]))
@example(data=b"", suffix=".json")
@example(data=b"[" * 5000, suffix=".json")                  # was: RecursionError escaped
@example(data=b"\xff\xfe", suffix=".json")                  # was: UnicodeDecodeError, no file named
def test_random_bytes_are_rows_errors_or_a_named_file_error(tmp_path, data, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(data)
    for loader in (load_rows, load_math_rows):
        try:
            loaded = loader(path)
        except DataFileError as e:
            assert str(path) in str(e)
            continue
        assert suffix != ".parquet"                      # random bytes are never a valid parquet file
        if suffix == ".jsonl":                           # one record (row or counted error) per non-blank line
            assert len(loaded.rows) + len(loaded.errors) == sum(map(_non_blank, data.split(b"\n")))


def _non_blank(line: bytes) -> bool:
    try:
        return bool(line.decode("utf-8").strip())
    except UnicodeDecodeError:
        return True


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_rows(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_math_rows(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_math_rows(tmp_path)                        # a folder is not a math problem file


def test_a_bad_file_in_a_folder_is_named(tmp_path):
    (tmp_path / "good.jsonl").write_text(json.dumps(GOOD_MAP) + "\n", encoding="utf-8")
    (tmp_path / "z.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataFileError, match="z.parquet"):
        load_rows(tmp_path)
