"""Claims a reasoning step makes, found in its text (GroundedPRM tool verifier). Pure: stdlib only.

Kinds: equalities and chains ('2 + 3 = 5', 'a = b = c'), approximations ('sqrt(2) ≈ 1.414') and solutions of an
equation ('3x + 4 = 19, so x = 5'). Each side is kept as normalised text that parses with `parse.parse`; the
checker (`check.py`, `solutions.py`) builds SymPy objects from that AST, never from the string.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rewards.prm.parse import MAX_EXPR_CHARS, MAX_STEP_CHARS, ParseError, normalise_latex, parse, parses


@dataclass(frozen=True)
class Claim:
    kind: str      # "equality" | "approx" (lhs ≈ rhs) | "solution" (values of `var` that solve lhs = rhs)
    lhs: str       # normalised text of each side (parsed again, safely, by the checker)
    rhs: str
    source: str    # the normalised text the claim came from
    var: str = ""                                   # solution: the unknown (one letter)
    values: tuple[str, ...] = ()                    # solution: the claimed values, closed expressions
    equations: tuple[tuple[str, str], ...] = ()     # solution: every equation in scope; equations[0] == (lhs, rhs)
    complete: bool = False                          # solution: the step claims these are ALL the real solutions


# --- claim extraction --------------------------------------------------------------------------------------

# Clause breaks: newline, ; , : and a sentence period (a '.' not followed by a digit, so 0.5 survives).
_CLAUSE = re.compile(r"[\n;,:?]|\.(?!\d)")
# A relation: '≈', or '=' but not part of <=, >=, !=, ==.
_RELATION = re.compile(r"(≈|(?<![<>!=])=(?!=))")
# 'is approximately', '= approximately', 'approx.' -> '≈' (before the clause split takes the '.').
_APPROX_WORDS = re.compile(
    r"\s*(?:\b(?:is|equals)\s+|=\s*)?\b(?:approximately|approx\b\.?)(?:\s+equals?(?:\s+to)?)?\s*", re.I)
# 'the solutions are', 'all roots', 'the only solution', 'solution set': the step lists every solution...
_ALL_SOLUTIONS = re.compile(r"\b(?:the|all)\s+(?:real\s+)?(?:solutions|roots)\b|"
                            r"\bthe\s+(?:only|unique)\s+(?:real\s+)?(?:solution|root)\b|\bsolution\s+set\b", re.I)
# ...unless a qualifier says some were set aside on purpose (x > 0, integer, reject the extraneous root...).
_QUALIFIER = re.compile(r"positive|negative|integer|natural|whole|valid|accept|reject|discard|extraneous|exclud|"
                        r"domain|\bnot\b|\bbut\b|however|[<>≤≥≠]|!=|\\[gl]eq?\b|\\neq", re.I)
# No solution claims in a step about degrees or congruences: 'sin(x) = 1/2, so x = 30 degrees', '3x = 1 mod 7'.
_NOT_REAL_EQUATION = re.compile(r"°|\\circ|\bdeg|\bmod\b|\\pmod|≡|\\equiv", re.I)
# 'x = 5 solves / satisfies / is a solution of <equation>': the equation comes after the value.
_FORWARD = re.compile(r"\s*(?:solves|satisfies|is\s+(?:a|the)\s+(?:solution|root|zero))\b", re.I)
_CONNECTIVE = re.compile(r"\s+(or|and)\s+", re.I)
MAX_VALUES = 8                   # values after one 'x =' ('x = 1 or 2 or ...')


def _word_bounds(part: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", part)]


def _longest_suffix(part: str) -> str:
    """Longest run of trailing words that parses ('we get 2 + 3' -> '2 + 3'); the whole part if none does, so
    the checker can report why."""
    words = _word_bounds(part)
    for start, _ in words:
        candidate = part[start:].strip()
        if len(candidate) <= MAX_EXPR_CHARS and parses(candidate):
            return candidate
    return part.strip()


def _longest_prefix(part: str) -> str:
    """Longest run of leading words that parses ('5 apples' -> '5'); the whole part if none does."""
    words = _word_bounds(part)
    for _, end in reversed(words):
        candidate = part[:end].strip()
        if len(candidate) <= MAX_EXPR_CHARS and parses(candidate):
            return candidate
    return part.strip()


def _ast(text: str):
    try:
        return parse(text)
    except ParseError:
        return None


def _symbols(node) -> set[str]:
    return {node[1]} if node[0] == "sym" else set().union(*(_symbols(c) for c in node[1:] if isinstance(c, tuple)))


def _closed(text: str) -> bool:
    return (node := _ast(text)) is not None and not _symbols(node)


def _values(right: str) -> tuple[list[str], bool, str]:
    """Closed values at the head of the text after 'x =' ('2', '2 or 3', '±2', '1 ± sqrt(2)'; at most
    MAX_VALUES): (values, whether they are joined by 'or' / '±', the prose right after the last one)."""
    if right.count("±") == 1:
        plus, minus = _longest_prefix(right.replace("±", "+")), _longest_prefix(right.replace("±", "-"))
        if _closed(plus) and _closed(minus):
            return [plus, minus], True, right.replace("±", "+").strip()[len(plus):]
        return [], False, ""
    chunks = _CONNECTIVE.split(right.strip(), maxsplit=MAX_VALUES)      # [value, 'or', value, 'and', ...]
    values, joined = [], False
    for k in range(0, len(chunks), 2):
        head = _longest_prefix(chunks[k])
        if not _closed(head):
            break
        values.append(head)
        rest = chunks[k].strip()[len(head):]
        if rest.strip() or k + 1 >= len(chunks) or len(values) == MAX_VALUES:
            return values, joined, rest
        joined = joined or chunks[k + 1].lower() == "or"      # 'x = 2 or x = 3' as well as 'x = 2 or 3'
    return values, joined, ""


def _classify(claim: Claim, right: str):
    """('assign', var, values, joined, forward) for 'x = <closed values>', ('eq', var) for an equation in one
    unknown ('3x + 4 = 19', '2x = x + 3'), else None."""
    if claim.kind != "equality":
        return None
    lnode, rnode = _ast(claim.lhs), _ast(claim.rhs)
    if lnode is not None and lnode[0] == "sym":
        values, joined, rest = _values(right)
        if values:
            return "assign", lnode[1], values, joined, bool(_FORWARD.match(rest))
    if lnode is None or rnode is None:
        return None
    names = _symbols(lnode) | _symbols(rnode)
    return ("eq", names.pop()) if len(names) == 1 else None


def _solutions(items: list[tuple[Claim, int, str]], text: str) -> list[Claim]:
    """Each run 'equations in x, then assignments of closed values to x' becomes one solution claim, in place of
    its equations (their equality claims would only say not_checkable, 'equation in unknowns'). The assignments
    stay as they were (not_checkable, 'assignment': neutral under `overall`), so claims[-1].rhs is still what
    follows the last '=', as rewards/math_answer.py reads it. A later equation in x starts a new run; 'x = 5
    solves <equation>' pairs with the equation after it in the same clause. Assignments with no equation before
    them, and equations no assignment follows, are left alone."""
    if _NOT_REAL_EQUATION.search(text):
        return [claim for claim, _, _ in items]
    kinds = [_classify(claim, right) for claim, _, right in items]
    last_eq = {(items[i][1], k[1]): i for i, k in enumerate(kinds) if k is not None and k[0] == "eq"}
    groups, open_group, pending, forward = [], {}, {}, {}
    for i, kind in enumerate(kinds):
        if kind is None:
            continue
        var = kind[1]
        if kind[0] == "eq":
            if open_group.pop(var, None) is not None:
                pending[var] = []
            waiting = forward.pop(var, [])
            if waiting:
                groups.append(([i], waiting))
            else:
                pending.setdefault(var, []).append(i)
        elif kind[4] and last_eq.get((items[i][1], var), -1) > i:      # 'x = 5 solves <equation>'
            forward.setdefault(var, []).append(i)
        elif var in open_group:
            open_group[var][1].append(i)
        elif pending.get(var):
            open_group[var] = (pending.pop(var), [i])
            groups.append(open_group[var])
    says_all = _ALL_SOLUTIONS.search(text) is not None and len(groups) == 1
    qualified = _QUALIFIER.search(text) is not None
    first = {min(eqs): (eqs, assigns) for eqs, assigns in groups}
    used = {j for eqs, _ in groups for j in eqs}
    out = []
    for i, (claim, _, _) in enumerate(items):
        if i in first:
            eqs, assigns = first[i]
            equations = tuple((items[j][0].lhs, items[j][0].rhs) for j in eqs)
            values = tuple(dict.fromkeys(v for j in assigns for v in kinds[j][2]))
            joined = any(kinds[j][3] for j in assigns)
            source = "; ".join(dict.fromkeys(items[j][0].source for j in sorted(eqs + assigns)))
            out.append(Claim("solution", *equations[0], source, kinds[eqs[0]][1], values, equations,
                             (joined or says_all) and not qualified))
        if i not in used:
            out.append(claim)
    return out


def extract_claims(step_text: str) -> list[Claim]:
    """Claims of a step. Each '=' gives an equality claim (longest parseable tail before it, longest parseable
    head after it), so a chain a = b = c gives (a, b) and (b, c); each '≈' ('\\approx', '~=', 'approximately')
    gives an approx claim the same way; then equations in one unknown followed by values for it become solution
    claims (see _solutions). Steps over MAX_STEP_CHARS give []."""
    if len(step_text) > MAX_STEP_CHARS:
        return []
    text = _APPROX_WORDS.sub(" ≈ ", normalise_latex(step_text))
    items = []
    for n, clause in enumerate(_CLAUSE.split(text)):
        pieces = _RELATION.split(clause)
        for i in range(1, len(pieces) - 1, 2):
            left, relation, right = pieces[i - 1], pieces[i], pieces[i + 1]
            claim = Claim("approx" if relation == "≈" else "equality", _longest_suffix(left), _longest_prefix(right),
                          clause.strip())
            items.append((claim, n, right))
    return _solutions(items, text)
