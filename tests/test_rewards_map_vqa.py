"""RewardMap map-VQA reward (rewards.map_vqa): every expectation computed by hand.

Table (after marker stripping):
  Line 1: Alpha, Bravo, Charlie, Delta
  Line 2: Echo, Charlie, Foxtrot, Golf
  Line 3: Foxtrot, Hotel, India
  Line 4: Alpha, Bravo, Juliet          (2nd line holding Alpha and Bravo)
r = W * (fw*F + 10*acc + 0.5*D);  W: easy 1.0, middle 1.2, hard 1.5, +0.5 planning with T > 0.
"""

import json

import numpy as np
import pytest
from map_rows import LINES, choice_row, plan_row, route

from rewards.errors import RowError
from rewards.map_vqa import (
    counting1_detail, difficulty_weight, normalize_type, planning_accuracy, planning_detail, score,
)
from rewards.routes import Section, parse_route_sections
from rewards.stations import load_line_table


def released(response, row):
    return score(response, row, detail_penalty="released", format_weight=0.0)


T0 = route(("Line 1", "Alpha", "Delta"))
T1 = route(("Line 1", "Alpha", "Charlie"), ("Line 2", "Charlie", "Golf"))
T2 = route(("Line 1", "Alpha", "Charlie"), ("Line 2", "Charlie", "Foxtrot"), ("Line 3", "Foxtrot", "India"))


# ------------------------------------------------------------ correct routes
@pytest.mark.parametrize("start, end, response, answer", [
    ("Alpha Station", "Delta Station", T0, "Line 1:alpha>delta"),
    # Alpha -> Bravo: Line 1 and Line 4 both hold both endpoints; the answer rides the second one.
    ("Alpha", "Bravo", route(("Line 4", "Alpha", "Bravo")), "Line 4:alpha>bravo"),
], ids=["first_direct_line", "second_direct_line"])
def test_correct_t0_both_modes(start, end, response, answer):
    row = plan_row(start, end, 0, city="easy")
    out = score(response, row)
    assert out["accuracy"] == 1.0 and out["format"] == 1.0
    assert out["detail"] == 6.0                       # 2 + 4 (any direct line earns +4)
    assert out["total"] == pytest.approx(14.0)        # 1.0 * (1 + 10 + 0.5*6)
    assert out["answer"] == answer
    rel = released(response, row)
    assert rel["detail"] == 1.0                       # 2 - 5 (1 > 0) + 4
    assert rel["total"] == pytest.approx(10.5)        # 1.0 * (0 + 10 + 0.5*1)


def test_t0_line_with_one_endpoint_gets_no_direct_bonus():
    # Alpha -> Juliet: only Line 4 holds both; Line 1 holds Alpha but not Juliet.
    row = plan_row("Alpha", "Juliet", 0, city="easy")
    response = route(("Line 1", "Alpha", "Juliet"))
    out = score(response, row)
    assert out["accuracy"] == 0.0                     # Juliet is not on Line 1
    assert out["detail"] == 2.0                       # 2 + 0 (Line 1 is a table line, not a direct one)
    assert out["total"] == pytest.approx(2.0)         # 1.0 * (1 + 0 + 0.5*2)
    rel = released(response, row)
    assert rel["detail"] == -3.0                      # 2 - 5 + 0
    assert rel["total"] == pytest.approx(-1.5)        # 1.0 * (0 + 0 + 0.5*-3)
    assert score(route(("Line 4", "Alpha", "Juliet")), row)["detail"] == 6.0   # 2 + 4


@pytest.mark.parametrize("penalty, per_line", [
    ("paper", {"Red": 6.0, "Blue": 6.0, "Green": 2.0}),      # 2 + 4 | 2 + 4 | 2 + 0
    ("released", {"Red": 1.0, "Blue": 1.0, "Green": -3.0}),  # 2 - 5 + 4 | 2 - 5 + 4 | 2 - 5 + 0
])
def test_planning_detail_any_direct_line(penalty, per_line):
    # Own network: Red and Blue both hold P and R (Blue is listed second); Green holds only P.
    lines = load_line_table({"Red": ["P", "Q", "R"], "Blue": ["S", "P", "R"], "Green": ["P", "T"]})
    for line, expected in per_line.items():
        sections = [Section(line, "P", "R")]
        assert planning_detail(sections, lines, "P", "R", 0, penalty=penalty) == expected, line


def test_correct_t1_both_modes():
    row = plan_row("Alpha Station", "Golf Station", 1)
    out = score(T1, row)
    assert out["accuracy"] == 1.0
    assert out["weight"] == pytest.approx(1.7)        # middle 1.2 + 0.5
    assert out["detail"] == 9.0                       # 2 + (3 + 1) + 3
    assert out["total"] == pytest.approx(26.35)       # 1.7 * (1 + 10 + 4.5)
    rel = released(T1, row)
    assert rel["detail"] == 4.0                       # 2 + (3 + 1) + (-5 + 3)
    assert rel["total"] == pytest.approx(20.4)        # 1.7 * (10 + 2)
    both = score(T1, row, detail_penalty="released")  # format on, released penalty
    assert both["total"] == pytest.approx(22.1)       # 1.7 * (1 + 10 + 2)


def test_correct_t2_both_modes():
    row = plan_row("Alpha", "India", 2, city="hard")
    out = score(T2, row)
    assert out["weight"] == pytest.approx(2.0)        # 1.5 + 0.5
    assert out["detail"] == 10.0                      # 2 + (3+1) + (3+1) + 3 = 13, capped at 10
    assert out["total"] == pytest.approx(32.0)        # 2.0 * (1 + 10 + 5)
    rel = released(T2, row)
    assert rel["detail"] == 8.0                       # 13 - 5 (section 3: 3 > 2)
    assert rel["total"] == pytest.approx(28.0)        # 2.0 * (10 + 4)


# -------------------------------------------------------------- wrong routes
def test_wrong_line_name():
    row = plan_row("Alpha", "Golf", 1)
    response = route(("Line 9", "Alpha", "Charlie"), ("Line 2", "Charlie", "Golf"))
    out = score(response, row)
    assert out["accuracy"] == 0.0
    assert out["detail"] == 5.0                       # 2 + 0 (Line 9 unknown) + 3
    assert out["total"] == pytest.approx(5.95)        # 1.7 * (1 + 0 + 2.5)
    assert released(response, row)["detail"] == 0.0   # 2 + 0 + (-5 + 3)


def test_broken_transfer():
    row = plan_row("Alpha", "Golf", 1)
    response = route(("Line 1", "Alpha", "Bravo"), ("Line 2", "Charlie", "Golf"))
    out = score(response, row)
    assert out["accuracy"] == 0.0                     # Bravo != Charlie
    assert out["detail"] == 8.0                       # 2 + 3 (no +1) + 3
    assert out["total"] == pytest.approx(8.5)         # 1.7 * (1 + 0 + 4)


@pytest.mark.parametrize("response", [
    route(("Line 1", "Bravo", "Charlie"), ("Line 2", "Charlie", "Golf")),    # wrong first departure
    route(("Line 1", "Alpha", "Charlie"), ("Line 2", "Charlie", "Foxtrot")),  # wrong last arrival
])
def test_missing_endpoint(response):
    out = score(response, plan_row("Alpha", "Golf", 1))
    assert out["accuracy"] == 0.0 and out["detail"] == 0.0
    assert out["format"] == 1.0
    assert out["total"] == pytest.approx(1.7)         # 1.7 * (1 + 0 + 0)


def test_extra_section_penalty():
    row = plan_row("Alpha", "Golf", 1)
    response = route(("Line 1", "Alpha", "Bravo"), ("Line 1", "Bravo", "Charlie"),
                     ("Line 2", "Charlie", "Golf"))
    out = score(response, row)
    assert out["accuracy"] == 1.0                     # membership-only check passes
    # 2 + (3 + 1) + (3; 2 <= T? no) + (-5 since 3 > T+1; + 3) = 7
    assert out["detail"] == 7.0
    assert out["total"] == pytest.approx(24.65)       # 1.7 * (1 + 10 + 3.5)
    rel = released(response, row)
    assert rel["detail"] == 2.0                       # 2 + (3+1) + (-5+3) + (-5+3)
    assert rel["total"] == pytest.approx(18.7)        # 1.7 * (10 + 1)


def test_extra_section_t0_and_negative_detail():
    row = plan_row("Alpha", "Delta", 0, city="easy")
    same_line = route(("Line 1", "Alpha", "Bravo"), ("Line 1", "Bravo", "Delta"))
    assert score(same_line, row)["detail"] == 5.0     # 2 + 4 + (-5 + 4)
    assert released(same_line, row)["detail"] == 0.0  # 2 + (-5 + 4) + (-5 + 4)
    unknown = route(("Line 9", "Alpha", "Bravo"), ("Line 9", "Bravo", "Delta"))
    out = score(unknown, row)
    assert out["detail"] == -3.0                      # 2 + 0 - 5: no lower clamp
    assert out["total"] == pytest.approx(-0.5)        # 1.0 * (1 + 0 - 1.5)
    assert released(unknown, row)["total"] == pytest.approx(-4.0)  # 0.5 * (2 - 5 - 5)


@pytest.mark.parametrize("response", [
    "", "asdf qwer", None, "--\n--", "Route Name: Line 1\nArrival Stop: Delta",  # a label missing
    "Route Name: Line 1 -- Departure Stop: Alpha -- Arrival Stop: Delta",       # labels split apart
])
def test_unparseable_planning(response):
    out = score(response, plan_row("Alpha", "Golf", 1))
    assert (out["format"], out["accuracy"], out["detail"], out["total"]) == (0.0, 0.0, 0.0, 0.0)
    assert out["weight"] == pytest.approx(1.7) and out["answer"] == ""


def test_trailing_prose_spoils_last_arrival():
    # As released: the arrival is everything after "Arrival Stop:".
    out = score(T0 + "\nThis ride has 2 stops.", plan_row("Alpha", "Delta", 0, city="easy"))
    assert out["format"] == 1.0 and out["accuracy"] == 0.0 and out["detail"] == 0.0
    assert out["total"] == pytest.approx(1.0)         # 1.0 * (1 + 0 + 0)


def test_parse_route_sections_tolerant():
    text = "Plan:\nRoute Name: Line 1\nDeparture Stop: Alpha\nArrival Stop: Charlie\n--\n" \
           "Route Name:Line 2 Departure Stop: Charlie Arrival Stop: Golf "
    assert parse_route_sections(text) == [Section("Line 1", "Alpha", "Charlie"),
                                          Section("Line 2", "Charlie", "Golf")]


def test_beijing_aliases():
    table = {"Line 1": ["苹果园站（换乘站）", "古城站", "八角游乐园站"],
             "Line 4": ["安河桥北站", "北宫门站（换乘站）", "西苑站"]}
    lines = load_line_table(table)
    batong = parse_route_sections(route(("八通线", "苹果园站", "八角游乐园")))
    assert planning_accuracy(batong, lines, "苹果园站", "八角游乐园站")
    assert planning_detail(batong, lines, "苹果园站", "八角游乐园站", 0) == 6.0  # 2 + 4
    daxing = parse_route_sections(route(("大兴线", "安河桥北", "西苑站")))
    assert planning_accuracy(daxing, lines, "安河桥北站", "西苑站")
    wrong = parse_route_sections(route(("Line 2", "安河桥北", "西苑站")))
    assert not planning_accuracy(wrong, lines, "安河桥北站", "西苑站")
    out = score(route(("八通线", "苹果园", "八角游乐园站")), plan_row("苹果园站", "八角游乐园站", 0, "hard", table))
    assert out["answer"] == "Line 1:苹果园>八角游乐园"
    assert out["total"] == pytest.approx(21.0)        # 1.5 * (1 + 10 + 0.5*6)


def test_numpy_scalars_in_row():
    # Rows read through pyarrow / pandas carry numpy scalars.
    row = {**plan_row("Alpha", "Golf", np.int64(1)), "station_1": np.str_("Alpha")}
    assert score(T1, row)["total"] == pytest.approx(26.35)                                  # as above
    assert score(r"\boxed{5}", choice_row("counting2", np.int64(5)))["total"] == 11.0        # 1 * (1 + 10)
    assert score(r"\boxed{5}", choice_row("counting2", np.float64(5.0)))["total"] == 11.0
    with pytest.raises(RowError, match="answer"):
        score(r"\boxed{5}", choice_row("counting2", np.float64(5.5)))


def test_table_as_path_and_json_string(tmp_path):
    path = tmp_path / "city.json"
    path.write_text(json.dumps(LINES), encoding="utf-8")
    for table in (str(path), json.dumps(LINES)):
        assert score(T1, plan_row("Alpha", "Golf", 1, table=table))["total"] == pytest.approx(26.35)


# ------------------------------------------------------------ torf / counting
@pytest.mark.parametrize("qtype, answer, response, fmt, acc", [
    ("torf1", 1, r"Both lines meet. \boxed{Yes}", 1.0, 1.0),
    ("TorF2", 1, r"\boxed{no}", 1.0, 0.0),
    ("torf1", 0, r"\boxed{\text{No}}", 1.0, 1.0),
    ("torf1", 1, "so the answer is yes. Done.", 0.0, 1.0),          # right but unboxed: F = 0
    ("torf2", 0, "The answer is No", 0.0, 1.0),
    ("torf1", 1, r"\boxed{no} hmm, wait: \boxed{yes}", 1.0, 1.0),  # last box
    ("torf1", 1, r"\boxed{maybe}", 0.0, 0.0),                      # outside yes/no
    ("counting2", 5, r"\boxed{5}", 1.0, 1.0),
    ("Counting2", 5, r"\boxed{6}", 1.0, 0.0),
    ("counting3", 5, r"\boxed{x = 5}", 1.0, 1.0),
    ("counting3", 5, r"\boxed{5 stops}", 0.0, 0.0),                # "5stops" is no integer
    ("counting2", 5, "I count them: the answer is 5.", 0.0, 1.0),
    ("counting1", 2, r"\boxed{C}", 1.0, 1.0),
    ("Counting1", 2, r"\boxed{B}", 1.0, 0.0),
    ("counting1", 2, r"\boxed{E}", 0.0, 0.0),
])
def test_choice_types(qtype, answer, response, fmt, acc):
    out = score(response, choice_row(qtype, answer))
    assert (out["format"], out["accuracy"], out["detail"]) == (fmt, acc, 0.0)
    assert out["total"] == pytest.approx(1.0 * (fmt + 10 * acc))  # easy: W = 1


@pytest.mark.parametrize("letter, index", [("A", 0), ("b", 1), ("C", 2), ("d", 3)])
def test_counting1_letter_mapping(letter, index):
    assert score(rf"\boxed{{{letter}}}", choice_row("counting1", index))["accuracy"] == 1.0
    assert score(rf"\boxed{{{letter}}}", choice_row("counting1", (index + 1) % 4))["accuracy"] == 0.0


def test_choice_weights_and_format_weight():
    assert score(r"\boxed{5}", choice_row("counting2", 5, "middle"))["total"] == pytest.approx(13.2)  # 1.2*11
    assert score(r"\boxed{6}", choice_row("counting2", 5, "middle"))["total"] == pytest.approx(1.2)   # 1.2*1
    # 1.5 * 11
    assert score(r"There are \boxed{12}.", choice_row("counting3", 12, "hard"))["total"] == pytest.approx(16.5)
    assert score(r"\boxed{yes}", choice_row("torf1", 1), format_weight=0.0)["total"] == 10.0        # 1*(0+10)
    assert score("", choice_row("torf1", 1, "hard")) == {
        "format": 0.0, "accuracy": 0.0, "detail": 0.0, "weight": 1.5, "total": 0.0, "answer": "",
        "accuracy_reward": 0.0, "consistent": 0.0, "answer_class": "", "answer_raw": None}


def test_text_wrapper_released_quirk():
    # Released reads \boxed{\text{Yes}} as "{yes}": wrong answer and, here, no format credit.
    row = choice_row("torf1", 1)
    assert score(r"\boxed{\text{Yes}}", row)["total"] == 11.0                      # 1 * (1 + 10)
    old = score(r"\boxed{\text{Yes}}", row, unwrap_text=False)
    assert (old["format"], old["accuracy"], old["answer"]) == (0.0, 0.0, "{yes}")   # total 0


def test_counting1_detail_on_off():
    row = choice_row("counting1", 0, "middle", station_1="Alpha Station", station_2="Delta Station", json=LINES)
    response = "Stops: [Bravo, Charlie, Zulu]\nSo \\boxed{A}"
    off = score(response, row)
    assert off["detail"] == 0.0 and off["total"] == pytest.approx(13.2)    # 1.2 * (1 + 10)
    on = score(response, row, counting1_detail_enabled=True)
    assert on["detail"] == 0.5                                             # +0.5 +0.5 -0.5 (Zulu)
    assert on["total"] == pytest.approx(13.5)                              # 1.2 * (1 + 10 + 0.25)


def test_counting1_detail_function():
    lines = load_line_table(LINES)
    # intermediates of Alpha..Delta on Line 1: {Bravo, Charlie}
    assert counting1_detail(["Bravo", "Charlie", "Zulu", "Bravo"], lines, "Alpha", "Delta") == 0.0  # .5+.5-.5-.5
    assert counting1_detail(["Charlie Station", "Bravo"], lines, "Delta", "Alpha") == 1.0            # reversed order
    assert counting1_detail(["Alpha"], lines, "Alpha", "Delta") == -0.5          # endpoint is no intermediate
    assert counting1_detail([], lines, "Alpha", "Delta") == 0.0
    with pytest.raises(RowError):
        counting1_detail(["Bravo"], lines, "Alpha", "India")                                         # no common line


def test_garbage_never_raises():
    rows = [choice_row("torf1", 1), choice_row("counting2", 3), choice_row("counting1", 0),
            plan_row("Alpha", "Golf", 1)]
    junk = ["", None, 12, r"\boxed{", r"\boxed{" + "9" * 5000 + "}", "}{}{", "Stops: [",
            "Route Name:\nDeparture Stop:\nArrival Stop:", "--" * 50, "\x00\ufffd"]
    for row in rows:
        for response in junk:
            out = score(response, row)
            assert out["accuracy"] == 0.0 and out["detail"] == 0.0


# -------------------------------------------------------------------- weights
@pytest.mark.parametrize("qtype, city, transfers, weight", [
    ("torf1", "easy", None, 1.0),
    ("Counting2", "middle", 3, 1.2),       # transfers ignored outside planning
    ("counting3", "hard", 0, 1.5),
    ("planning", "easy", 0, 1.0),
    ("planning", "middle", 0, 1.2),
    ("planning", "hard", 0, 1.5),
    ("planning", "easy", 1, 1.5),          # 1.0 + 0.5
    ("planning", "hard", 2, 2.0),          # 1.5 + 0.5
    ("Planning", "Middle", "2", 1.7),      # 1.2 + 0.5; case and digit strings accepted
])
def test_difficulty_weight(qtype, city, transfers, weight):
    assert difficulty_weight(qtype, city, transfers) == pytest.approx(weight)


def test_normalize_type():
    assert [normalize_type(t) for t in ("TorF1", "torf2", "Counting1", "COUNTING3", " planning ")] == \
        ["torf1", "torf2", "counting1", "counting3", "planning"]


# ------------------------------------------------------------------ row errors
@pytest.mark.parametrize("row, field", [
    ({k: v for k, v in plan_row("Alpha", "Golf", 1).items() if k != "type"}, "type"),
    ({**plan_row("Alpha", "Golf", 1), "type": "torf3"}, "type"),
    ({**plan_row("Alpha", "Golf", 1), "difficulty_city": "extreme"}, "difficulty_city"),
    ({k: v for k, v in plan_row("Alpha", "Golf", 1).items() if k != "difficulty_city"}, "difficulty_city"),
    ({**plan_row("Alpha", "Golf", 1), "station_1": None}, "station_1"),
    ({**plan_row("Alpha", "Golf", 1), "station_2": ""}, "station_2"),
    ({**plan_row("Alpha", "Golf", 1), "question_transfer_count": -1}, "question_transfer_count"),
    ({**plan_row("Alpha", "Golf", 1), "question_transfer_count": None}, "question_transfer_count"),
    ({**plan_row("Alpha", "Golf", 1), "json": "/nonexistent/city.json"}, "json"),
    ({**plan_row("Alpha", "Golf", 1), "json": {"Line 1": "Alpha"}}, "json"),
    ({k: v for k, v in plan_row("Alpha", "Golf", 1).items() if k != "json"}, "json"),
    ({k: v for k, v in choice_row("torf1", 1).items() if k != "answer"}, "answer"),
    (choice_row("torf1", "yes"), "answer"),
    (choice_row("counting1", 0, station_1="Alpha"), "station_2"),
])
def test_row_errors(row, field):
    for response in (T1, "", r"\boxed{A}"):
        with pytest.raises(RowError, match=field):
            score(response, row, counting1_detail_enabled=True)


def test_row_not_dict_and_bad_penalty():
    with pytest.raises(RowError):
        score("x", None)
    with pytest.raises(ValueError):
        score(T1, plan_row("Alpha", "Golf", 1), detail_penalty="strict")
    with pytest.raises(ValueError):
        planning_detail([], {}, "a", "b", 0, penalty="other")
