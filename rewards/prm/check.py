"""SymPy checking of claims found by `rewards/prm/claims.py` (runs inside the sandbox child; see verify.py).

SymPy objects are built from the tuple AST directly, never from strings, and every operation whose cost grows
with the *value* (powers, factorials) is refused past a cap before SymPy evaluates it. `simplify` is never used:
its cost is unbounded. Rule: closed expressions are compared exactly (rationals) or to relative 1e-9 (when a
decimal literal or an irrational value is involved); expressions with symbols are verified when
expand(lhs - rhs) == 0, else by exact/numeric spot checks at 3 random rational points (fixed seed). A symbolic
claim that fails is not refuted (it may be an equation being solved): only closed claims are refuted.

Approx claims ('sqrt(2) ≈ 1.414'): closed sides only; verified when |lhs - rhs| is at most half a unit in the
last place of the side that is a decimal literal (1.414 -> 0.0005, 3 -> 0.5, 1200 -> 50, 1.5*10^3 -> 50),
refuted past one unit, and past half a unit only when the literal is not the truncation of the value (2/3 ≈ 0.666
is truncated, not wrong: not_checkable). Solution claims ('3x + 4 = 19, so x = 5'): see solutions.py.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import sympy

from rewards.prm.claims import Claim, extract_claims
from rewards.prm.parse import MAX_STEP_CHARS, ParseError, normalise_latex
from rewards.prm.solutions import check_solution
from rewards.prm.sympy_values import (
    SHOW_CHARS, ClaimVerdict, Refused, close, decimal_text, finite_number, half_unit, has_decimal, show, to_sympy,
)

N_POINTS, MAX_POINT_TRIES = 3, 12


@dataclass
class StepVerdict:
    verdict: str                 # verified | refuted | not_checkable
    claims: list[ClaimVerdict] = field(default_factory=list)
    reason: str = ""


def _spot_points(symbols: list, seed: int = 0):
    """Deterministic random rational points p/q, p in [-9, 9], q in [1, 7]."""
    rng = random.Random(seed)
    for _ in range(MAX_POINT_TRIES):
        yield {s: sympy.Rational(rng.randint(-9, 9), rng.randint(1, 7)) for s in symbols}


def _identity(lhs, rhs, exact: bool) -> tuple[str, str]:
    """(verdict, result) for a claimed identity in free symbols."""
    if exact and sympy.expand(lhs - rhs) == 0:
        return "verified", "expand(lhs - rhs) = 0"
    symbols = sorted(lhs.free_symbols | rhs.free_symbols, key=lambda s: s.name)
    checked = 0
    for point in _spot_points(symbols):
        equal, why = close(lhs.xreplace(point), rhs.xreplace(point), exact)
        if equal is None:
            continue                    # a pole or log(0) at this point: try another one
        where = ", ".join(f"{s}={v}" for s, v in point.items())
        if not equal:
            return "refuted", f"at {where}: {why}"
        checked += 1
        if checked == N_POINTS:
            return "verified", f"expand inconclusive; lhs = rhs at {N_POINTS} random rational points"
    return "not_checkable", "could not evaluate at enough points"


def _is_bare_symbol(node) -> bool:
    return node[0] == "sym"


def _show_text(text: str) -> str:
    return text if len(text) <= SHOW_CHARS else text[:SHOW_CHARS] + "..."


def _check_approx(claim: Claim, lhs, lnode, rhs, rnode) -> ClaimVerdict:
    """'value ≈ literal' (either order): within half a unit of the literal's last place (module docstring)."""
    literal = claim.rhs
    if half_unit(rnode) is None and half_unit(lnode) is not None:
        lhs, lnode, rhs, rnode, literal = rhs, rnode, lhs, lnode, claim.lhs      # '1.414 ≈ sqrt(2)'
    half = half_unit(rnode)
    expression = f"{show(lhs)} ≈ {show(rhs) if half is None else literal}"
    why = ("approximation in unknowns" if lhs.free_symbols or rhs.free_symbols else
           "no stated precision (neither side is a decimal literal)" if half is None else
           "undefined value" if not (finite_number(lhs) and finite_number(rhs)) else "")
    value = lhs if why or lhs.is_Rational else sympy.N(lhs, 30)
    if not why and (not finite_number(value) or value.has(sympy.Function)):
        why = "could not evaluate numerically"
    if why:
        return ClaimVerdict(claim, "not_checkable", why, expression, why)
    gap = abs(value - rhs)
    ok = bool(gap <= half)
    result = (f"{show(lhs)} = {show(value if value.is_Integer else sympy.N(value, 12))}, |difference| = "
              f"{show(sympy.N(gap, 3))} {'<=' if ok else '>'} {decimal_text(half)}")
    if ok:
        return ClaimVerdict(claim, "verified", "", expression, result)
    if gap < 2 * half and abs(rhs) < abs(value) and rhs * value >= 0:
        return ClaimVerdict(claim, "not_checkable", "truncated rather than rounded", expression, result)
    return ClaimVerdict(claim, "refuted", "", expression, result)


def check_claim(claim: Claim) -> ClaimVerdict:
    """Verdict for one claim (see the module docstring for the rule)."""
    if claim.kind == "solution":
        return check_solution(claim)
    try:
        lhs, lnode = to_sympy(claim.lhs)
        rhs, rnode = to_sympy(claim.rhs)
    except (ParseError, Refused) as e:
        if claim.kind == "approx":
            return ClaimVerdict(claim, "not_checkable", str(e), _show_text(f"{claim.lhs} ≈ {claim.rhs}"), str(e))
        return ClaimVerdict(claim, "not_checkable", str(e))
    if claim.kind == "approx":
        return _check_approx(claim, lhs, lnode, rhs, rnode)
    expression = f"{show(lhs)} = {show(rhs)}"
    exact = not (has_decimal(lnode) or has_decimal(rnode))
    lfree, rfree = lhs.free_symbols, rhs.free_symbols
    if not lfree and not rfree:
        equal, why = close(lhs, rhs, exact)
        if equal is None:
            return ClaimVerdict(claim, "not_checkable", why, expression, why)
        return ClaimVerdict(claim, "verified" if equal else "refuted", "", expression, why)
    if _is_bare_symbol(lnode) or _is_bare_symbol(rnode):
        return ClaimVerdict(claim, "not_checkable", "assignment", expression)
    if lfree != rfree or not lfree or not rfree:
        # '2x + 3 = 9' states a condition on x, not an identity: spot checks would wrongly refute it.
        return ClaimVerdict(claim, "not_checkable", "equation in unknowns", expression)
    verdict, result = _identity(lhs, rhs, exact)
    if verdict == "refuted":
        # not an identity, but '2x = x + 3' or '(x+1)^2 = x^2 + 1' may be an equation the step solves (true at
        # some x): refuting it would label a correct step wrong, so only closed claims are ever refuted
        return ClaimVerdict(claim, "not_checkable", "not an identity (may be an equation in its symbols)",
                            expression, result)
    return ClaimVerdict(claim, verdict, "" if verdict != "not_checkable" else result, expression, result)


def overall(verdicts: list[ClaimVerdict]) -> str:
    """refuted if any claim is refuted; verified if at least one is verified; else not_checkable."""
    kinds = {v.verdict for v in verdicts}
    return "refuted" if "refuted" in kinds else "verified" if "verified" in kinds else "not_checkable"


def verify_step(step_text: str) -> StepVerdict:
    """In-process verdict of a step. Unbounded in time: run model text through ToolVerifier instead."""
    if len(step_text) > MAX_STEP_CHARS:
        return StepVerdict("not_checkable", [], "step too long")
    claims = extract_claims(step_text)
    if not claims:
        return StepVerdict("not_checkable", [], "no claims")
    verdicts = [check_claim(c) for c in claims]
    return StepVerdict(overall(verdicts), verdicts, "")


def answers_equivalent(a: str, b: str) -> bool:
    """Two final answers are equivalent when their stripped, lower-cased strings match or both parse and are
    equal by the claim rule. In-process and unbounded in time: use ToolVerifier.answers_equivalent on model text."""
    sa, sb = a.strip().lower(), b.strip().lower()
    if sa == sb:
        return True
    try:
        (x, xn), (y, yn) = to_sympy(normalise_latex(a.strip())), to_sympy(normalise_latex(b.strip()))
    except (ParseError, Refused):
        return False
    exact = not (has_decimal(xn) or has_decimal(yn))
    if x.free_symbols or y.free_symbols:
        return x.free_symbols == y.free_symbols and _identity(x, y, exact)[0] == "verified"
    # '0.5' means exactly 1/2 as a final answer; tolerance only guards irrational evaluation.
    return bool(close(x, y, True)[0])
