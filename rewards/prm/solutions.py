"""Checking of solution claims ('3x + 4 = 19, so x = 5'), built by `rewards/prm/claims.py` (`_solutions`).

Runs inside the sandbox child like check.py, which calls it for solution claims. Rule:
- Each claimed value is put into each equation in scope by rebuilding the equation's AST with the unknown bound
  to the value (`sympy_values.build(node, env)`), so the value passes the same power / factorial caps as any literal;
  never `subs` on an uncapped expression. The two sides are then closed and compared like a closed equality
  claim: exactly, or to relative 1e-9 when a decimal is involved (`sympy_values.close`).
- A decimal value states a precision (x = 1.414: half a unit in the last place, 0.0005, as for approx claims in
  check.py): when it does not satisfy the equation to 1e-9, it still counts as satisfying it when lhs - rhs
  changes sign (or vanishes) between x - 0.0005 and x + 0.0005, so a rounded irrational root is not refuted;
  a sign change only within one full unit (a truncated root) is not_checkable; otherwise not satisfied. Only
  for equations without poles in the unknown (no division by it, tan, log...); else the 1e-9 rule alone.
- A value is accepted when it satisfies at least one equation in scope: '|x+1| = 3, so x + 1 = 3 or x + 1 = -3,
  so x = 2 or x = -4' pairs each value with a different equation. It is refuted when it provably satisfies none
  (safe: the check is closed after substitution). Any refuted value refutes the claim; all accepted verifies it;
  otherwise (a value or an equation refused by a cap, an undefined value) not_checkable.
- Completeness, only when the claim says the list is complete (claim.complete: 'x = 2 or x = 3', 'x = ±2',
  'the solutions are ...', with no qualifier such as 'positive' or 'x > 0' in the step) and every value was
  accepted: each equation in scope that is a polynomial of degree <= 4 with rational coefficients (degree bounded
  from the AST before anything is expanded) must have every real root (exact: `Poly.real_roots`) among the
  values, else the claim is refuted ('missing real root'). Complex roots are not asked for. Higher degree, a
  non-polynomial equation or irrational coefficients: completeness is not checked and the result says so; the
  verdict stays what the values gave.
"""
from __future__ import annotations

import sympy

from rewards.prm.claims import Claim
from rewards.prm.parse import ParseError
from rewards.prm.sympy_values import (
    SHOW_CHARS, ClaimVerdict, Refused, build, close, decimal_text, finite_number, half_unit, has_decimal, show,
    to_sympy,
)

MAX_DEGREE = 4                   # completeness: roots in closed form / exact isolation stay cheap
MAX_COEFF_BITS = 2000            # completeness: size of a polynomial coefficient


def _cap(text: str) -> str:
    return text if len(text) <= 2 * SHOW_CHARS else text[:2 * SHOW_CHARS] + "..."


def _huge(value) -> bool:
    return bool(value.is_Rational) and max(int(value.p).bit_length(), int(value.q).bit_length()) > 128


def _degree_bound(node) -> int | None:
    """Upper bound of the degree in the (only) unknown, from the AST; None when not polynomial in shape."""
    kind = node[0]
    if kind in ("num", "const"):
        return 0
    if kind == "sym":
        return 1
    if kind == "neg":
        return _degree_bound(node[1])
    if kind == "call":
        return 0 if _degree_bound(node[2]) == 0 else None
    a, b = _degree_bound(node[1]), _degree_bound(node[2])
    if a is None or b is None:
        return None
    if kind in ("add", "sub"):
        return max(a, b)
    if kind == "mul":
        return a + b
    if kind == "div":
        return a if b == 0 else None
    if a == 0 and b == 0:                                  # pow of constants
        return 0
    exponent = node[2]
    return a * int(exponent[1]) if exponent[0] == "num" and exponent[1].isdigit() else None


def _real_roots(lnode, lhs, rnode, rhs, var) -> tuple[list | None, str]:
    """(distinct real roots, '') of lhs - rhs as a polynomial in var, or (None, why completeness is not checked)."""
    bound = _degree_bound(("sub", lnode, rnode))
    if bound is None:
        return None, "not a polynomial equation"
    if bound > MAX_DEGREE:
        return None, f"degree above {MAX_DEGREE}"
    poly = sympy.Poly(lhs - rhs, var)
    if not (poly.domain.is_ZZ or poly.domain.is_QQ):
        return None, "coefficients not rational"
    if any(max(int(c.p).bit_length(), int(c.q).bit_length()) > MAX_COEFF_BITS for c in poly.coeffs()):
        return None, "coefficients too large"
    if poly.is_zero:
        return None, "holds for every value"
    return list(dict.fromkeys(poly.real_roots())), ""


def _sign(lnode, rnode, name: str, point) -> int | None:
    """Sign of lhs - rhs at a closed point (capped build), None when it cannot be evaluated."""
    diff = build(lnode, {name: point}) - build(rnode, {name: point})
    if not diff.is_Rational:
        diff = sympy.N(diff, 30)
        if not finite_number(diff) or diff.has(sympy.Function) or not diff.is_real:
            return None
    return int(bool(diff > 0)) - int(bool(diff < 0))


def _has_symbol(node) -> bool:
    return node[0] == "sym" or any(_has_symbol(c) for c in node[1:] if isinstance(c, tuple))


def _continuous(node) -> bool:
    """No pole or jump in the unknown (so a sign change brackets a root): no division by, negative or symbolic
    power of, tan / log / factorial of an expression in it."""
    kind = node[0]
    if kind == "div" and _has_symbol(node[2]):
        return False
    if kind == "pow" and _has_symbol(node[1]) and node[2][0] != "num":
        return False
    if kind == "call" and node[1] in ("tan", "log", "factorial") and _has_symbol(node[2]):
        return False
    return all(_continuous(c) for c in node[1:] if isinstance(c, tuple))


def _root_near(lnode, rnode, name: str, value, half) -> tuple[bool | None, str]:
    """For a decimal value that misses the equation: True when lhs - rhs changes sign (or vanishes) within
    +-half of it, None when only between it and one unit further from 0 (a truncated root) or undecidable,
    False otherwise."""
    spans = [(value - half, value + half, True, f"a root lies within {decimal_text(half)}")]
    if value != 0:
        spans.append((value, value + (1 if value > 0 else -1) * 2 * half, None, "truncated rather than rounded"))
    for low, high, verdict, why in spans:
        a, b = _sign(lnode, rnode, name, low), _sign(lnode, rnode, name, high)
        if a is None or b is None:
            return None, "could not evaluate near the value"
        if a * b <= 0:
            return verdict, why
    return False, f"no root within {decimal_text(half)} (lhs - rhs keeps its sign)"


def _at_value(sides, name: str, value, vnode) -> tuple[bool | None, int, str]:
    """(satisfies one equation?, which, why): True at the first equation it satisfies, False when it provably
    satisfies none, None when some equation could not be decided and none was satisfied."""
    if not finite_number(value):
        return None, 0, "undefined value"
    half = half_unit(vnode) if has_decimal(vnode) else None
    undecided, why_not = "", ""
    for k, ((_, lnode), (_, rnode)) in enumerate(sides):
        try:
            lv, rv = build(lnode, {name: value}), build(rnode, {name: value})
            equal, why = close(lv, rv, not (has_decimal(lnode) or has_decimal(rnode) or has_decimal(vnode)))
            if equal is False and half is not None and _continuous(lnode) and _continuous(rnode):
                equal, why = _root_near(lnode, rnode, name, value, half)
        except Refused as e:
            equal, why = None, str(e)
        if equal:
            return True, k, why
        if equal is None:
            undecided = undecided or why
        else:
            why_not = why_not or why
    return (None, 0, undecided) if undecided else (False, 0, why_not)


def _matches(root, value, vnode) -> bool:
    """A real root is listed: equal to a value, or within the stated precision of a decimal value."""
    if close(root, value, True)[0]:
        return True
    half = half_unit(vnode) if has_decimal(vnode) else None
    return half is not None and bool(abs(sympy.N(root - value, 30)) <= half)


def check_solution(claim: Claim) -> ClaimVerdict:
    """Verdict for a solution claim (see the module docstring for the rule)."""
    name, var = claim.var, sympy.Symbol(claim.var)
    raw = f"{'; '.join(f'{lt} = {rt}' for lt, rt in claim.equations)} at {name} = {', '.join(claim.values)}"
    if not (claim.equations and claim.values):
        return ClaimVerdict(claim, "not_checkable", "no equation or no value", _cap(raw), "no equation or no value")
    try:
        sides = [(to_sympy(lt), to_sympy(rt)) for lt, rt in claim.equations]
    except (ParseError, Refused) as e:
        return ClaimVerdict(claim, "not_checkable", str(e), _cap(raw), str(e))
    values = []                  # (text, value, AST) or (text, None, why it was refused)
    for text in claim.values:
        try:
            values.append((text, *to_sympy(text)))
        except (ParseError, Refused) as e:
            values.append((text, None, str(e)))
    shown = [text if v is None or has_decimal(node) or _huge(v) or len(show(v)) > 40 else show(v)
             for text, v, node in values]           # '1.414', '(2^500)^399' as written; '+ 2' -> '2
    equations = "; ".join(f"{show(lhs)} = {show(rhs)}" for (lhs, _), (rhs, _) in sides)
    expression = _cap(f"{equations} at {name} = {', '.join(shown)}")
    it = "it" if len(sides) == 1 else "any of them"
    satisfied, unknown = [], []
    for (text, value, vnode), written in zip(values, shown):
        if value is None:
            unknown.append(f"{name} = {written}: {vnode}")
            continue
        ok, k, why = _at_value(sides, name, value, vnode)
        if ok is False:
            return ClaimVerdict(claim, "refuted", "", expression,
                                _cap(f"{name} = {written} does not satisfy {it}: {why}"))
        if ok is None:
            unknown.append(f"{name} = {written}: {why}")
        else:
            satisfied.append((written, k, value, vnode, why))
    if unknown:
        return ClaimVerdict(claim, "not_checkable", _cap(unknown[0]), expression, _cap("; ".join(unknown)))
    near = "".join(f" ({name} = {written}: {why})" for written, _, _, _, why in satisfied if why.startswith("a root"))
    if len(sides) == 1:
        names = " and ".join(f"{name} = {written}" for written, _, _, _, _ in satisfied)
        result = f"{names} {'satisfies' if len(satisfied) == 1 else 'satisfy'} it{near}"
    else:
        result = "; ".join(f"{name} = {written} satisfies {show(sides[k][0][0])} = {show(sides[k][1][0])}"
                           for written, k, _, _, _ in satisfied) + near
    if not claim.complete:
        return ClaimVerdict(claim, "verified", "", expression, _cap(result))
    for (lhs, lnode), (rhs, rnode) in sides:
        roots, why = _real_roots(lnode, lhs, rnode, rhs, var)
        if roots is None:
            result += f"; completeness not checked ({why})"
            continue
        missing = [r for r in roots if not any(_matches(r, value, vnode) for _, _, value, vnode, _ in satisfied)]
        listed = ", ".join(show(r if r.is_Rational else sympy.N(r, 10)) for r in roots) or "none"
        if missing:
            root = missing[0] if missing[0].is_Rational else sympy.N(missing[0], 10)
            return ClaimVerdict(claim, "refuted", "", expression,
                                _cap(f"{result}, but misses the real root {name} = {show(root)} "
                                     f"of {show(lhs)} = {show(rhs)} (real roots: {listed})"))
        of = f" of {show(lhs)} = {show(rhs)}" if len(sides) > 1 else ""
        result += f"; all real roots{of} listed ({listed})"
    return ClaimVerdict(claim, "verified", "", expression, _cap(result))
