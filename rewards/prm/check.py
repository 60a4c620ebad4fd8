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
from decimal import Decimal

import sympy

from rewards.prm.claims import Claim, extract_claims
from rewards.prm.parse import MAX_STEP_CHARS, ParseError, normalise_latex, parse

MAX_ABS_EXPONENT = 1000          # numeric exponent cap (brief): refuse before Pow evaluates
MAX_EXPANDED_EXPONENT = 64       # exponent cap when the base holds a sum: expand() of (a+b+c)^n grows like n^2
MAX_RESULT_BITS = 200_000        # size of an exact rational power, estimated before it is computed
MAX_FACTORIAL = 1000
REL_TOL = 1e-9
ABS_TOL = 1e-20                  # for values that should be 0 but come out of evalf as ~1e-31
N_POINTS, MAX_POINT_TRIES = 3, 12
SHOW_CHARS = 200                 # cap on expression / result strings handed back


@dataclass
class ClaimVerdict:
    claim: Claim
    verdict: str                 # verified | refuted | not_checkable
    reason: str = ""
    expression: str = ""         # normalised "lhs = rhs" as SymPy prints it
    result: str = ""             # what the tool found; becomes the <verify> content


@dataclass
class StepVerdict:
    verdict: str                 # verified | refuted | not_checkable
    claims: list[ClaimVerdict] = field(default_factory=list)
    reason: str = ""


class Refused(ValueError):
    """A value-dependent cap refused to build the expression; str(e) is the reason."""


def _show(expr) -> str:
    try:
        text = sympy.sstr(expr)
    except ValueError:           # an integer past Python's 4300-digit str() limit
        text = sympy.sstr(sympy.N(expr, 15))
    return text if len(text) <= SHOW_CHARS else text[:SHOW_CHARS] + "..."


# --- AST -> SymPy ------------------------------------------------------------------------------------------

def _bits(r: sympy.Rational) -> int:
    return max(int(r.p).bit_length(), int(r.q).bit_length(), 1)


def _power(base, exponent):
    """Pow with the caps checked first: |numeric exponent| <= 1000, bounded exact size, bounded expansion."""
    if exponent.is_Number:
        if abs(exponent) > MAX_ABS_EXPONENT:
            raise Refused(f"exponent {_show(exponent)} larger than {MAX_ABS_EXPONENT}")
        if base.is_Rational and exponent.is_Integer and _bits(base) * abs(int(exponent)) > MAX_RESULT_BITS:
            raise Refused(f"power too large (about {_bits(base) * abs(int(exponent))} bits)")
        if base.has(sympy.Add) and abs(exponent) > MAX_EXPANDED_EXPONENT:
            raise Refused(f"power of a sum with exponent above {MAX_EXPANDED_EXPONENT}")
    return sympy.Pow(base, exponent)


def _call(name: str, arg):
    if name == "factorial":
        if arg.is_Number and abs(arg) > MAX_FACTORIAL:
            raise Refused(f"factorial argument {_show(arg)} larger than {MAX_FACTORIAL}")
        return sympy.factorial(arg)
    return {"sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "log": sympy.log,
            "exp": sympy.exp, "abs": sympy.Abs}[name](arg)


def build(node, env: dict | None = None):
    """SymPy expression of a parse() AST (recursion is bounded by the parser's depth cap). `env` maps a symbol's
    letter to a value put in its place while building, so every power and factorial of the value is capped."""
    kind = node[0]
    if kind == "num":
        return sympy.Rational(node[1])           # exact: '0.1' is 1/10, not a binary float
    if kind == "sym":
        return env[node[1]] if env and node[1] in env else sympy.Symbol(node[1])
    if kind == "const":
        return sympy.pi
    if kind == "neg":
        return -build(node[1], env)
    if kind == "call":
        return _call(node[1], build(node[2], env))
    a, b = build(node[1], env), build(node[2], env)
    if kind == "pow":
        return _power(a, b)
    return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b}[kind]()


def has_decimal(node) -> bool:
    """A decimal literal means the writer rounded: compare to REL_TOL instead of exactly."""
    if node[0] == "num":
        return "." in node[1]
    return any(has_decimal(child) for child in node[1:] if isinstance(child, tuple))


def to_sympy(text: str):
    """(SymPy expression, AST) of text; ParseError / Refused with the reason."""
    node = parse(text)
    return build(node), node


# --- comparison --------------------------------------------------------------------------------------------

def _finite_number(value) -> bool:
    return bool(value.is_number) and not value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo)


def _close(lv, rv, exact: bool) -> tuple[bool | None, str]:
    """Whether two closed values are equal: (None, why) when they cannot be evaluated."""
    if not (_finite_number(lv) and _finite_number(rv)):
        return None, "undefined value (division by zero or infinity)"
    if lv.is_Rational and rv.is_Rational and exact:
        return lv == rv, f"lhs - rhs = {_show(lv - rv)}"
    if exact and sympy.expand(lv - rv) == 0:
        return True, "lhs - rhs = 0"
    ln, rn = sympy.N(lv, 30), sympy.N(rv, 30)
    if not (_finite_number(ln) and _finite_number(rn)) or ln.has(sympy.Function) or rn.has(sympy.Function):
        return None, "could not evaluate numerically"
    gap = abs(ln - rn)
    scale = max(abs(ln), abs(rn))
    ok = bool(gap <= max(REL_TOL * scale, ABS_TOL))
    return ok, f"lhs ~ {_show(sympy.N(ln, 15))}, rhs ~ {_show(sympy.N(rn, 15))}"


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
        equal, why = _close(lhs.xreplace(point), rhs.xreplace(point), exact)
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


def _half_unit(node):
    """Half a unit in the last place a literal states (1.414 -> 1/2000, -3 -> 1/2, 1200 -> 50, 1.5*10^3 -> 50);
    None when the node is not such a literal (no stated precision)."""
    if node[0] == "neg":
        return _half_unit(node[1])
    if node[0] == "num":
        digits = node[1]
        if "." in digits:
            return sympy.Rational(1, 2 * 10 ** len(digits.split(".")[1]))
        zeros = len(digits) - len(digits.rstrip("0")) if digits.strip("0") else 0
        return sympy.Rational(10 ** zeros, 2)
    if node[0] == "mul" and node[2][0] == "pow" and node[2][1] == ("num", "10"):
        exponent = node[2][2]
        sign = -1 if exponent[0] == "neg" else 1
        exponent = exponent[1] if sign < 0 else exponent
        mantissa = _half_unit(node[1])
        if mantissa is not None and exponent[0] == "num" and exponent[1].isdigit() and len(exponent[1]) <= 3:
            return mantissa * sympy.Rational(10) ** (sign * int(exponent[1]))
    return None


def _show_text(text: str) -> str:
    return text if len(text) <= SHOW_CHARS else text[:SHOW_CHARS] + "..."


def decimal_text(r) -> str:
    """A power-of-ten multiple of 1/2 as a short decimal: 1/2000 -> '0.0005', 50 -> '50'."""
    return str(Decimal(int(r.p)) / Decimal(int(r.q)))


def _check_approx(claim: Claim, lhs, lnode, rhs, rnode) -> ClaimVerdict:
    """'value ≈ literal' (either order): within half a unit of the literal's last place (module docstring)."""
    literal = claim.rhs
    if _half_unit(rnode) is None and _half_unit(lnode) is not None:
        lhs, lnode, rhs, rnode, literal = rhs, rnode, lhs, lnode, claim.lhs      # '1.414 ≈ sqrt(2)'
    half = _half_unit(rnode)
    expression = f"{_show(lhs)} ≈ {_show(rhs) if half is None else literal}"
    why = ("approximation in unknowns" if lhs.free_symbols or rhs.free_symbols else
           "no stated precision (neither side is a decimal literal)" if half is None else
           "undefined value" if not (_finite_number(lhs) and _finite_number(rhs)) else "")
    value = lhs if why or lhs.is_Rational else sympy.N(lhs, 30)
    if not why and (not _finite_number(value) or value.has(sympy.Function)):
        why = "could not evaluate numerically"
    if why:
        return ClaimVerdict(claim, "not_checkable", why, expression, why)
    gap = abs(value - rhs)
    ok = bool(gap <= half)
    result = (f"{_show(lhs)} = {_show(value if value.is_Integer else sympy.N(value, 12))}, |difference| = "
              f"{_show(sympy.N(gap, 3))} {'<=' if ok else '>'} {decimal_text(half)}")
    if ok:
        return ClaimVerdict(claim, "verified", "", expression, result)
    if gap < 2 * half and abs(rhs) < abs(value) and rhs * value >= 0:
        return ClaimVerdict(claim, "not_checkable", "truncated rather than rounded", expression, result)
    return ClaimVerdict(claim, "refuted", "", expression, result)


def check_claim(claim: Claim) -> ClaimVerdict:
    """Verdict for one claim (see the module docstring for the rule)."""
    if claim.kind == "solution":
        from rewards.prm.solutions import check_solution    # solutions.py imports this module
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
    expression = f"{_show(lhs)} = {_show(rhs)}"
    exact = not (has_decimal(lnode) or has_decimal(rnode))
    lfree, rfree = lhs.free_symbols, rhs.free_symbols
    if not lfree and not rfree:
        equal, why = _close(lhs, rhs, exact)
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
    return bool(_close(x, y, True)[0])
