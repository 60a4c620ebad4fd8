"""Final-answer extraction for RewardMap's TorF / Counting questions.

Mirrors the released extraction (answer phrase fallback, last \\boxed{},
LaTeX/unit stripping) so rewards are comparable, with one deliberate fix:
`\\text{X}` is unwrapped to `X`. The released code deletes only the `\\text`
token and leaves `{x}`, so a correct `\\boxed{\\text{Yes}}` scored 0 there;
`unwrap_text=False` reproduces that.
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


def boxed_content(response: str) -> str | None:
    """Content of the last boxed{...} with balanced braces, else None."""
    if not isinstance(response, str):
        return None
    start = response.rfind(_BOX)
    if start == -1:
        return None
    brace = start + len(_BOX) - 1
    end = _matching_close(response, brace, "{", "}")
    return None if end == -1 else response[brace + 1:end]


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
