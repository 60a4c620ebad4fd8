"""Final-answer extraction for RewardMap's TorF / Counting questions.

Mirrors the released extraction (answer phrase fallback, last \\boxed{},
LaTeX/unit stripping) so rewards are comparable, with one deliberate fix:
`\\text{X}` is unwrapped to `X`. The released code deletes only the `\\text`
token and leaves `{x}`, so a correct `\\boxed{\\text{Yes}}` scored 0 there;
`unwrap_text=False` reproduces that.

Also: the character span of the final answer (`answer_char_span`: R1 `<answer>` tags, else the last box)
and the reasoning before it (`split_reasoning`), for GRPO-CARE's answer likelihood and consistency.
"""

from __future__ import annotations

import re

# Answer phrases used when there is no boxed{...}; tried in this order, each in
# lower-case and capitalised form ("the answer is" / "The answer is").
ANSWER_PHRASES = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")

_BOX = "boxed{"
# Greedy: from the first boxed{ to the LAST "}" (the released regex); the
# stray-"}" cut in `clean_answer` then trims any text after the box.
_GREEDY_BOX = re.compile(r"boxed\{(.*)\}", flags=re.S)
# \text{X}, \textbf{X}, \mathrm{X}, \mbox{X} -> X (innermost, no nested braces).
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
# Tokens the released `find_math_answer` deletes: spacing, \left/\right,
# degrees, dollars, percent and the few units it knows.
_DROP_TOKENS = (
    " ", "\\,", "\\!", "\n", "\\left", "\\right", "^{\\circ}", "^\\circ", "\\%",
    "\\$", "$", "{m}^3", "m^3", "{units}", "units", "{km}", "km", "\\text", "\\mbox",
)
# The Counting1 `Stops: [...]` list; brackets are matched by hand below.
# R1-style answer tags (GRPO-CARE's format).
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", flags=re.S)
_STOPS_HEAD = re.compile(r"Stops\s*:\s*\[", flags=re.IGNORECASE)
_LEADING_AND = re.compile(r"^and\s+", flags=re.IGNORECASE)


def _after_answer_phrase(text: str) -> str:
    """Narrow `text` to the first line/sentence after the last answer phrase.

    Phrases are applied one after another on the narrowed text, as released.
    """
    text = text.strip()
    for phrase in ANSWER_PHRASES:
        for variant in (phrase, phrase.capitalize()):
            if variant in text:
                text = text.rsplit(variant, 1)[1].strip()
                text = text.split("\n")[0].split(". ")[0].strip()
    return text


def clean_answer(text: str, unwrap_text: bool = True) -> str:
    """Normalise a raw answer: lower-case, unwrap LaTeX text, keep after '='.

    This is everything the released pipeline does after locating the box.
    """
    ans = text.lower().replace("{}", "")
    if unwrap_text:
        ans = _TEXT_WRAPPER.sub(r"\1", ans)
    # A "}" before any "{" closes the box: keep what is before it.
    close, open_ = ans.find("}"), ans.find("{")
    if close != -1 and (open_ == -1 or close < open_):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for token in _DROP_TOKENS:
        ans = ans.replace(token, "")
    return ans.rstrip(".").lstrip(":").strip()


def has_answer_marker(response: str) -> bool:
    """Whether `extract_final_answer` has a marker to read the answer from: a "boxed{" or an answer phrase.
    Without one it cleans the whole response, which is no extracted answer (COPO's released classes give every
    such sample its own class)."""
    if not isinstance(response, str):
        return False
    return _BOX in response or any(v in response for p in ANSWER_PHRASES for v in (p, p.capitalize()))


def extract_final_answer(response: str, unwrap_text: bool = True) -> str:
    """The final answer of a TorF/Counting response ("" when there is none).

    No boxed{: narrow to the text after the last answer phrase (else the whole
    response). Several boxed{: keep the last. Then take the greedy box
    content and `clean_answer` it.
    """
    if not isinstance(response, str) or not response.strip():
        return ""
    text = response
    if _BOX not in text:
        text = _after_answer_phrase(text)
    elif text.count(_BOX) > 1:
        text = "\\" + _BOX + text.rsplit(_BOX, 1)[1]
    text = text.lower().replace("{}", "")
    match = _GREEDY_BOX.search(text)
    return clean_answer(match.group(1) if match else text, unwrap_text)


def _matching_close(text: str, open_at: int, opener: str, closer: str) -> int:
    """Index of the bracket closing the one at `open_at`, or -1 if unbalanced."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == opener:
            depth += 1
        elif text[i] == closer:
            depth -= 1
            if depth == 0:
                return i
    return -1


def _boxed_span(text: str) -> tuple[int, int] | None:
    """[start, end) of the content of the last boxed{...}; None if there is none or its braces never close."""
    start = text.rfind(_BOX)
    if start == -1:
        return None
    brace = start + len(_BOX) - 1
    end = _matching_close(text, brace, "{", "}")
    return None if end == -1 else (brace + 1, end)


def boxed_content(response: str) -> str | None:
    """Content of the last boxed{...} with balanced braces, else None."""
    span = _boxed_span(response) if isinstance(response, str) else None
    return None if span is None else response[span[0]:span[1]]


def answer_char_span(text: str) -> tuple[int, int] | None:
    """[start, end) of the final answer content in `text`, else None.

    Tags win: the content after the LAST "<answer>", up to the next "</answer>" or, when it is never closed
    (a truncated rollout), to the end of the text. The last opener is the one GRPO-CARE's backward token scan
    finds. Without "<answer>": the content of the last boxed{...} (braces matched, nesting allowed; None if it
    never closes). "<answer></answer>" gives an empty span (start == end), not None.
    """
    if not isinstance(text, str):
        return None
    opener = text.rfind(ANSWER_OPEN)
    if opener == -1:
        return _boxed_span(text)
    start = opener + len(ANSWER_OPEN)
    close = text.find(ANSWER_CLOSE, start)
    return (start, len(text) if close == -1 else close)


def _answer_marker_start(text: str, span: tuple[int, int]) -> int:
    """Index where the marker opening `span` begins: "<answer>", or "boxed{" with its backslash."""
    if text.endswith(ANSWER_OPEN, 0, span[0]):
        return span[0] - len(ANSWER_OPEN)
    at = span[0] - len(_BOX)
    return at - 1 if at > 0 and text[at - 1] == "\\" else at


def split_reasoning(text: str) -> tuple[str, str | None]:
    """(reasoning, answer content). Reasoning = the first <think>...</think> block's content if there is one,
    else all text before the answer's opening marker ("<answer>" / "\\boxed{"), else the whole text.
    Answer content = the text of `answer_char_span`, or None."""
    if not isinstance(text, str):
        return "", None
    span = answer_char_span(text)
    answer = None if span is None else text[span[0]:span[1]]
    think = _THINK_BLOCK.search(text)
    if think:
        return think.group(1), answer
    return (text if span is None else text[:_answer_marker_start(text, span)]), answer


def _split_top_level(inner: str) -> list[str]:
    """Split on commas (ASCII or full-width) outside parentheses."""
    parts, buf, depth = [], [], 0
    for ch in inner:
        if ch in "(（":
            depth += 1
        elif ch in ")）":
            depth = max(depth - 1, 0)
        elif ch in ",，" and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return parts


def extract_stops(response: str) -> list[str]:
    """The names in a `Stops: [a, b, c]` list (Counting1 detail format).

    Items need no quotes; commas inside parentheses do not split; "..." and a
    leading "and " are dropped. [] when there is no complete list.
    """
    if not isinstance(response, str):
        return []
    head = _STOPS_HEAD.search(response)
    if not head:
        return []
    open_at = head.end() - 1
    close_at = _matching_close(response, open_at, "[", "]")
    if close_at == -1:
        return []
    stops = []
    for item in _split_top_level(response[open_at + 1:close_at]):
        # Quotes are tolerated although not required.
        item = item.strip().strip(".;").strip().strip("\"'`").strip()
        item = _LEADING_AND.sub("", item).strip()
        if item and item not in ("...", "…"):
            stops.append(item)
    return stops
