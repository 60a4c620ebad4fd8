"""R1 answer tags (<think>/<answer>): answer spans, tags-mode scoring, consistency, answer classes, prompts and
the tiny tokenizer's tag tokens. Every expected value is worked out by hand.

Table and row builders as in test_rewards_map_vqa.py:
  Line 1: Alpha, Bravo, Charlie, Delta        Line 2: Echo, Charlie, Foxtrot, Golf
  Line 3: Foxtrot, Hotel, India               Line 4: Alpha, Bravo, Juliet
r = W * (F + 10*acc + 0.5*D); W: easy 1.0, middle 1.2, hard 1.5, +0.5 planning with T > 0.
"""
import pytest
from map_rows import choice_row, plan_row, route

from data.prompts import FORMAT_INSTRUCTIONS, TAG_INSTRUCTIONS, build_messages, prompt_text
from data.questions import synthetic_dataset
from rewards.map_vqa import QUESTION_TYPES
from rewards.answer import answer_char_span, split_reasoning
from rewards.consistency import consistency, implied_answer
from rewards.map_vqa import score


def tags(response, *args, **kwargs):
    return score(response, *args, answer_format="tags", **kwargs)


T0 = route(("Line 1", "Alpha", "Delta"))
T1 = route(("Line 1", "Alpha", "Charlie"), ("Line 2", "Charlie", "Golf"))


# ------------------------------------------------------------ answer_char_span
@pytest.mark.parametrize("text, span", [
    ("<think>x</think><answer>yes</answer>", (24, 27)),       # 7 + 1 + 8 + 8 = 24; "yes" ends at 27
    (r"so \boxed{\frac{1}{2}} ok", (10, 21)),                  # "so \boxed{" = 10; "\frac{1}{2}" = 11 chars
    (r"\boxed{no} <answer>yes</answer>", (19, 22)),            # tags win over an earlier box
    (r"<answer>yes</answer> \boxed{no}", (8, 11)),             # ... and over a later one
    ("<answer>a</answer><answer>b</answer>", (26, 27)),        # the last pair
    ("<think>a</think><answer>yes", (24, 27)),                 # unclosed: runs to the end
    ("<answer></answer>", (8, 8)),                             # empty content: empty span
    (r"\boxed{a} then \boxed{b}", (22, 23)),                   # last box
])
def test_answer_char_span(text, span):
    assert answer_char_span(text) == span


@pytest.mark.parametrize("text", ["the answer is yes", r"\boxed{yes", "", None])
def test_answer_char_span_none(text):
    assert answer_char_span(text) is None


def test_span_slices_the_content():
    text = r"<think>t</think><answer>\boxed{3}</answer>"
    start, end = answer_char_span(text)
    assert text[start:end] == r"\boxed{3}"


@pytest.mark.parametrize("text, expected", [
    ("<think>on Line 1, so yes</think><answer>yes</answer>", ("on Line 1, so yes", "yes")),
    (r"Count: 3 stops. \boxed{3}", ("Count: 3 stops. ", "3")),        # before the backslash of \boxed{
    ("I think no. <answer>no</answer>", ("I think no. ", "no")),      # no think block: text before <answer>
    ("no marker here", ("no marker here", None)),
    ("<think>a</think> b", ("a", None)),
])
def test_split_reasoning(text, expected):
    assert split_reasoning(text) == expected


# ------------------------------------------------------------ tags-mode scoring
def test_tags_torf_correct():
    out = tags("<think>Bravo is on Line 1, so yes.</think><answer>yes</answer>", choice_row("torf1", 1))
    assert (out["format"], out["accuracy"], out["answer"]) == (1.0, 1.0, "yes")
    assert out["total"] == pytest.approx(11.0)                  # 1.0 * (1 + 10)
    assert out["accuracy_reward"] == pytest.approx(10.0)
    assert out["consistent"] == 1.0


def test_tags_whitespace_and_case():
    out = tags("\n<think>t</think>\n<answer> Yes </answer>\n", choice_row("torf2", 1))
    assert (out["format"], out["accuracy"], out["answer"]) == (1.0, 1.0, "yes")


@pytest.mark.parametrize("response, fmt, acc, answer", [
    (r"\boxed{yes}", 0.0, 0.0, ""),                                  # no tags: no boxed fallback
    ("the answer is yes", 0.0, 0.0, ""),
    ("<answer>yes</answer>", 0.0, 1.0, "yes"),                       # no <think>: read, but F = 0
    ("<think>t</think><answer>yes</answer> extra", 0.0, 1.0, "yes"),  # text after </answer>
    ("<think>t</think><answer>maybe</answer>", 0.0, 0.0, "maybe"),   # out of domain
    (r"<think>t</think><answer>\boxed{yes}</answer>", 1.0, 1.0, "yes"),  # a box inside is read
    (r"<think>t</think><answer>\text{Yes}</answer>", 1.0, 1.0, "yes"),   # bare content cleaned like a box
])
def test_tags_torf_cases(response, fmt, acc, answer):
    out = tags(response, choice_row("torf1", 1))
    assert (out["format"], out["accuracy"], out["answer"]) == (fmt, acc, answer)
    assert out["total"] == pytest.approx(fmt + 10 * acc)           # easy: W = 1


def test_tags_counting_weighted():
    out = tags("<think>Stops between: 4</think><answer>4</answer>", choice_row("counting2", 4, "middle"))
    assert out["weight"] == pytest.approx(1.2)
    assert out["total"] == pytest.approx(13.2)                  # 1.2 * (1 + 10)
    assert out["accuracy_reward"] == pytest.approx(12.0)        # 1.2 * 10 * 1
    wrong = tags("<think>t</think><answer>5</answer>", choice_row("counting2", 4, "middle"))
    assert (wrong["format"], wrong["accuracy_reward"], wrong["total"]) == (1.0, 0.0, pytest.approx(1.2))


def test_tags_counting1_letter():
    out = tags("<think>Option C fits.</think><answer>C</answer>", choice_row("counting1", 2))
    assert (out["format"], out["accuracy"], out["answer"], out["consistent"]) == (1.0, 1.0, "c", 1.0)
    assert tags("<think>t</think><answer>E</answer>", choice_row("counting1", 2))["format"] == 0.0


def test_tags_planning():
    row = plan_row("Alpha Station", "Delta Station", 0, city="easy")
    out = tags(f"<think>Take Line 1.</think><answer>{T0}</answer>", row)
    assert (out["format"], out["accuracy"], out["detail"]) == (1.0, 1.0, 6.0)   # D = 2 + 4
    assert out["total"] == pytest.approx(14.0)                  # 1 * (1 + 10 + 0.5*6)
    assert out["answer"] == "Line 1:alpha>delta"
    assert out["consistent"] == 0.0                             # no route in the reasoning


def test_tags_planning_weighted_t1():
    out = tags(f"<think>{T1}</think>\n<answer>\n{T1}\n</answer>", plan_row("Alpha", "Golf", 1, city="hard"))
    assert out["weight"] == pytest.approx(2.0)                  # 1.5 + 0.5
    assert (out["format"], out["accuracy"], out["detail"]) == (1.0, 1.0, 9.0)   # 2 + (3 + 1) + 3
    assert out["total"] == pytest.approx(31.0)                  # 2 * (1 + 10 + 4.5)
    assert out["accuracy_reward"] == pytest.approx(20.0)
    assert out["consistent"] == 1.0                             # same route reasoned and answered


@pytest.mark.parametrize("response", [T0, "<think>x</think><answer>Line 1</answer>", ""])
def test_tags_planning_no_route(response):
    out = tags(response, plan_row("Alpha", "Delta", 0, city="easy"))
    assert (out["format"], out["accuracy"], out["detail"], out["total"], out["answer"]) == (0, 0, 0, 0, "")


def test_planning_inconsistent_route():
    reasoning = route(("Line 4", "Alpha", "Bravo"))
    out = tags(f"<think>{reasoning}</think><answer>{T0}</answer>", plan_row("Alpha", "Delta", 0))
    assert out["accuracy"] == 1.0 and out["consistent"] == 0.0


def test_unknown_answer_format():
    with pytest.raises(ValueError):
        score("<answer>yes</answer>", choice_row("torf1", 1), answer_format="xml")


# ------------------------------------------------------------ boxed mode: new keys
def test_boxed_accuracy_reward_weighted():
    row = choice_row("counting3", 12, "hard")
    assert score(r"There are \boxed{12}.", row)["accuracy_reward"] == pytest.approx(15.0)   # 1.5 * 10
    assert score(r"There are \boxed{11}.", row)["accuracy_reward"] == 0.0
    plan = score(T1, plan_row("Alpha", "Golf", 1))
    assert plan["accuracy_reward"] == pytest.approx(17.0)       # (1.2 + 0.5) * 10


@pytest.mark.parametrize("qtype, truth, response, consistent", [
    ("torf1", 1, r"Line 1 and Line 2 meet, so yes. \boxed{yes}", 1.0),
    ("torf1", 1, r"So no. \boxed{yes}", 0.0),
    ("torf1", 1, r"\boxed{yes}", 0.0),                           # no reasoning: nothing implied
    ("torf1", 1, "Yes. The answer is yes", 0.0),                # phrase fallback: no answer marker
    ("torf1", 1, r"Yes at first, then NO. \boxed{no}", 1.0),    # the last mention counts
    ("counting2", 5, r"I count 2 stops, then 3 more: 5. \boxed{5}", 1.0),
    ("counting2", 5, r"Roughly 2.5? \boxed{5}", 0.0),           # 2.5 holds no standalone integer
    ("counting1", 1, r"Stops: [Bravo]. Option B. \boxed{B}", 1.0),  # "Bravo" is no option letter
    ("counting1", 2, r"Option A looks right. \boxed{C}", 0.0),
])
def test_boxed_consistent(qtype, truth, response, consistent):
    assert score(response, choice_row(qtype, truth))["consistent"] == consistent


def test_boxed_planning_is_never_consistent():
    # the route is the whole response: no reasoning apart from the answer
    assert score(T0 + "\n" + T0, plan_row("Alpha", "Delta", 0))["consistent"] == 0.0


@pytest.mark.parametrize("response", ["<think>Surely yes.</think><answer>no</answer>",
                                      "<think>Nothing decided.</think><answer>no</answer>",
                                      "Surely no. " + r"\boxed{no}"])
def test_tags_consistency_needs_tags_and_mention(response):
    # inconsistent; no implied answer; no tags (tags mode reads no box)
    assert tags(response, choice_row("torf1", 0))["consistent"] == 0.0


# ------------------------------------------------------------ implied_answer / consistency
@pytest.mark.parametrize("reasoning, qtype, implied", [
    ("Yes, wait, NO.", "torf1", "no"),
    ("nobody says yesterday", "torf2", None),                   # word boundaries
    ("Line 3 has 07 stops", "counting3", "7"),
    ("about 2.5", "counting2", None),
    ("it is 3.", "counting2", "3"),
    ("a b c", "counting1", None),                               # lower-case letters are not options
    ("A or D", "counting1", "d"),
    (route(("Line 1", "Alpha Station", "Delta")), "planning", "Line 1:alpha>delta"),
    ("take Line 1", "planning", None),
])
def test_implied_answer(reasoning, qtype, implied):
    assert implied_answer(reasoning, qtype) == implied


def test_consistency_rule():
    assert consistency("there are 3", "+3", "counting2") == 1.0   # counts compare as integers
    assert consistency("there are 3", "", "counting2") == 0.0     # no final answer
    assert consistency(None, "3", "counting2") == 0.0
    assert consistency("yes", "yes", "torf1") == 1.0


# ------------------------------------------------------------ answer classes
def test_answer_class_equivalence():
    plus = score(r"\boxed{+3}", choice_row("counting2", 1))
    tagged = tags("<think>t</think><answer>3</answer>", choice_row("counting2", 1))
    assert (plus["answer"], tagged["answer"]) == ("+3", "3")
    assert plus["answer_class"] == tagged["answer_class"] == "3"
    # answers outside the type's domain (no whole number here) all share the "no answer" class
    half = score(r"\boxed{0.5}", choice_row("counting2", 1))
    junk = score("Line 3 then Line 4 maybe", choice_row("counting2", 1))
    assert half["answer"] == "0.5" and half["answer_class"] == junk["answer_class"] == ""
    assert score(r"\boxed{Yes}", choice_row("torf1", 1))["answer_class"] == "yes"
    assert score("", choice_row("torf1", 1))["answer_class"] == ""


@pytest.mark.parametrize("text, answer_format, answer_class, raw", [
    (r"\boxed{+3}", "boxed", "3", "+3"),                             # raw keeps the sign SymPy folds away
    (r"There are \boxed{ 3 }.", "boxed", "3", "3"),                  # cleaned like `answer`: spaces dropped
    ("The answer is 4.", "boxed", "4", "4"),                          # the answer-phrase fallback extracts too
    (r"\boxed{0.5}", "boxed", "", "0.5"),                            # out of domain: class "", raw its own string
    ("Line 3 then Line 4 maybe", "boxed", "", None),                 # no box, no phrase: nothing extracted
    ("", "boxed", "", None),
    ("<think>t</think><answer>3</answer>", "tags", "3", "3"),
    (r"<think>t</think><answer>\boxed{0.5}</answer>", "tags", "", "0.5"),
    ("<think>3</think>", "tags", "", None),                          # no <answer>: no boxed fallback
])
def test_answer_raw_is_the_extracted_string_or_none(text, answer_format, answer_class, raw):
    out = score(text, choice_row("counting2", 1), answer_format=answer_format)
    assert (out["answer_class"], out["answer_raw"]) == (answer_class, raw)


def test_answer_raw_of_planning_is_the_route_string():
    row = plan_row("Alpha Station", "Delta Station", 0)
    out = score(route(("Line 1", "Alpha", "Delta")), row)
    assert (out["answer_class"], out["answer_raw"]) == ("line 1:alpha>delta", "Line 1:alpha>delta")   # raw keeps case
    assert score("no route here", row)["answer_raw"] is None


# ------------------------------------------------------------ prompts
@pytest.fixture(scope="module")
def rows_by_type():
    rows = synthetic_dataset(3, per_type=1, seed=5, render_images=False)
    return {r["type"]: r for r in rows}


@pytest.mark.parametrize("qtype, example", [
    ("torf1", "<answer>yes</answer>"), ("torf2", "<answer>yes</answer>"), ("counting1", "<answer>A</answer>"),
    ("counting2", "<answer>3</answer>"), ("counting3", "<answer>3</answer>"),
    ("planning", "<answer>Route Name: ..."),
])
def test_tags_prompt(rows_by_type, qtype, example):
    row = rows_by_type[qtype]
    text = prompt_text(row, answer_format="tags")
    assert text.endswith(TAG_INSTRUCTIONS[qtype] + "\n\n" + row["question"])
    assert "<think></think>" in text and "<answer></answer>" in text and example in text
    assert "\\boxed" not in text
    assert prompt_text(row) == prompt_text(row, answer_format="boxed")
    assert prompt_text(row).endswith(FORMAT_INSTRUCTIONS[qtype] + "\n\n" + row["question"])
    msgs = build_messages(row, modality="image", answer_format="tags")
    assert msgs == [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def test_prompt_rejects_unknown_format(rows_by_type):
    with pytest.raises(ValueError):
        prompt_text(rows_by_type["torf1"], answer_format="xml")
    assert set(TAG_INSTRUCTIONS) == set(QUESTION_TYPES)


def test_prompt_example_scores_full_format():
    # the example the prompt shows is what the scorer rewards with F = 1
    out = tags("<think>...</think><answer>yes</answer>", choice_row("torf1", 1))
    assert out["format"] == 1.0


# ------------------------------------------------------------ tiny tokenizer
@pytest.fixture(scope="module")
def tok():
    from data.corpus import tokenizer_corpus
    from learner.tiny_models import train_tokenizer
    return train_tokenizer(tokenizer_corpus(40, 0), vocab_size=1024)


def test_tag_tokens_are_whole(tok):
    from learner.tiny_models import TAG_TOKENS
    ids = [tok.convert_tokens_to_ids(t) for t in TAG_TOKENS]
    assert len(set(ids)) == 4 and tok.unk_token_id not in ids
    assert len(tok) == 1024                                     # the tags count towards vocab_size
    for text, middle in (("<answer>yes</answer>", "yes"), ("<answer>no</answer>", "no"),
                         ("<answer>3</answer>", "3")):
        enc = tok.encode(text)
        assert enc == [ids[2], *tok.encode(middle), ids[3]] and len(enc) == 3
        assert tok.decode(enc) == text
    enc = tok.encode("<think>x</think>")
    assert enc[0] == ids[0] and enc[-1] == ids[1] and tok.decode(enc) == "<think>x</think>"


def test_encode_prompt_passes_answer_format(tok, rows_by_type):
    from learner.prompting import encode_prompt
    row = rows_by_type["torf1"]
    tagged = tok.decode(encode_prompt(tok, row, vision=False, answer_format="tags").input_ids)
    boxed = tok.decode(encode_prompt(tok, row, vision=False).input_ids)
    assert TAG_INSTRUCTIONS["torf1"] in tagged and FORMAT_INSTRUCTIONS["torf1"] in boxed


def test_new_reward_modules_stay_pure():
    import subprocess
    import sys
    code = ("import sys, rewards.canonical, rewards.consistency, rewards.routes, rewards.map_vqa; "
            "bad = sorted(m for m in ('ray', 'torch') if m in sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
