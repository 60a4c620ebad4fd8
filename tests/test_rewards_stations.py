"""Station normalisation and line-table loading (rewards.stations)."""

import json

import pytest

from data.real import reasonmap_root
from rewards.errors import RowError
from rewards.stations import clean_station, load_line_table, strip_markers

RAW = {
    "Line 1": ["Alpha Station (Transfer Station)", "Bravo Station", "Charlie Station (Branch-starting Station)"],
    "昌平线": ["昌平西山口站（换乘站）", "十三陵景区站", "昌平站（支线起始站）"],
    "Line 0": ["Zed Station"],  # keys must keep insertion order, not sorted
}
STRIPPED = {
    "Line 1": ["Alpha Station", "Bravo Station", "Charlie Station"],
    "昌平线": ["昌平西山口站", "十三陵景区站", "昌平站"],
    "Line 0": ["Zed Station"],
}
REAL_STATIONS = reasonmap_root() / "stations"   # the copy shipped in data/reasonmap/ unless overridden


def test_strip_markers():
    assert strip_markers("Alpha Station (Transfer Station)") == "Alpha Station"
    assert strip_markers("Beta (Branch-starting Station)") == "Beta"
    assert strip_markers("苹果园站（换乘站）") == "苹果园站"
    assert strip_markers("昌平站（支线起始站） ") == "昌平站"
    assert strip_markers("  Plain  ") == "Plain"
    assert strip_markers("Court St Station(Transfer Station)") == "Court St Station"  # unspaced, real NYC data


@pytest.mark.parametrize("raw, expected", [
    # "Univ." -> "University", then "Univ" inside it -> "Universityersity" (released order);
    # "Road" -> "lu"; "Station" removed; spaces removed; lower-cased.
    ("Univ. Road Station", "universityersitylu"),
    ("University Road", "universityersitylu"),  # same key as the abbreviation above
    # "Metro" removed; "Tech." -> "Technology" -> "Tech" inside -> "Technologynology".
    ("Tech. Park Metro Station", "technologynologypark"),
    ("Asian Games Village", "yayuncun"),
    ("苹果园站", "苹果园"),                   # one trailing 站 dropped
    ("北京西站站", "北京西站"),               # only one
    ("Foo (Line 2) Station", "foo"),          # ASCII parenthetical
    ("Foo（东）", "foo"),                     # full-width parenthetical
    ("St. Mary's", "st.marys"),              # quote removed, '.' kept
    ("Tai-Koo\n", "taikoo"),                 # hyphen and newline removed
    ("Main St, *Central*", "mainstcentral"),  # comma and '*' removed
    ("Broadway", "bluway"),                  # "road" -> "lu" even inside words
])
def test_clean_station(raw, expected):
    assert clean_station(raw) == expected


def test_load_line_table_from_dict_json_and_path(tmp_path):
    path = tmp_path / "city.json"
    path.write_text(json.dumps(RAW, ensure_ascii=False), encoding="utf-8")
    for source in (RAW, json.dumps(RAW, ensure_ascii=False), str(path), path):
        table = load_line_table(source)
        assert table == STRIPPED
        assert list(table) == ["Line 1", "昌平线", "Line 0"]


def test_load_line_table_returns_fresh_copies(tmp_path):
    path = tmp_path / "city.json"
    path.write_text(json.dumps(RAW), encoding="utf-8")
    first = load_line_table(path)
    first["Line 1"].append("Mutated")
    assert load_line_table(path) == STRIPPED  # the path cache is not corrupted
    assert RAW["Line 1"][0].endswith("(Transfer Station)")  # input dict untouched


@pytest.mark.parametrize("bad", [
    [["Line 1", ["A"]]],            # not a dict
    {},                             # empty
    {"Line 1": "A, B"},             # stations not a list
    {"Line 1": ["A", 3]},           # non-string station
    "{not json",                    # broken JSON string
    "/nonexistent/city.json",       # missing file
    42,                             # wrong type
])
def test_load_line_table_errors(bad):
    with pytest.raises(RowError):
        load_line_table(bad)


def test_row_error_is_value_error():
    assert issubclass(RowError, ValueError)


def test_real_tables_load_without_markers():
    files = sorted(REAL_STATIONS.glob("*/*.json"))
    assert len(files) == 25
    for path in files:
        table = load_line_table(path)
        for stations in table.values():
            for name in stations:
                assert "换乘站" not in name and "Transfer Station" not in name
                assert "支线起始站" not in name and "Branch-starting" not in name
