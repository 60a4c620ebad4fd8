"""SymPy values of parsed model text, built under caps, and the comparison of closed values.

Shared by the claim checks (check.py) and the solution checks (solutions.py), which both run inside the sandbox
child (verify.py). SymPy objects are built from the tuple AST of `rewards/prm/parse.py` directly, never from
strings, and every operation whose cost grows with the *value* (powers, factorials) is refused past a cap
before SymPy evaluates it.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import sympy

from rewards.prm.claims import Claim
from rewards.prm.parse import parse

MAX_ABS_EXPONENT = 1000          # numeric exponent cap (brief): refuse before Pow evaluates
MAX_EXPANDED_EXPONENT = 64       # exponent cap when the base holds a sum: expand() of (a+b+c)^n grows like n^2
MAX_RESULT_BITS = 200_000        # size of an exact rational power, estimated before it is computed
MAX_FACTORIAL = 1000
REL_TOL = 1e-9
ABS_TOL = 1e-20                  # for values that should be 0 but come out of evalf as ~1e-31
SHOW_CHARS = 200                 # cap on expression / result strings handed back


@dataclass
class ClaimVerdict:
    claim: Claim
    verdict: str                 # verified | refuted | not_checkable
    reason: str = ""
    expression: str = ""         # normalised "lhs = rhs" as SymPy prints it
    result: str = ""             # what the tool found; becomes the <verify> content


class Refused(ValueError):
    """A value-dependent cap refused to build the expression; str(e) is the reason."""


def show(expr) -> str:
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
            raise Refused(f"exponent {show(exponent)} larger than {MAX_ABS_EXPONENT}")
        if base.is_Rational and exponent.is_Integer and _bits(base) * abs(int(exponent)) > MAX_RESULT_BITS:
            raise Refused(f"power too large (about {_bits(base) * abs(int(exponent))} bits)")
        if base.has(sympy.Add) and abs(exponent) > MAX_EXPANDED_EXPONENT:
            raise Refused(f"power of a sum with exponent above {MAX_EXPANDED_EXPONENT}")
    return sympy.Pow(base, exponent)


def _call(name: str, arg):
    if name == "factorial":
        if arg.is_Number and abs(arg) > MAX_FACTORIAL:
            raise Refused(f"factorial argument {show(arg)} larger than {MAX_FACTORIAL}")
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

def finite_number(value) -> bool:
    return bool(value.is_number) and not value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo)


def close(lv, rv, exact: bool) -> tuple[bool | None, str]:
    """Whether two closed values are equal: (None, why) when they cannot be evaluated."""
    if not (finite_number(lv) and finite_number(rv)):
        return None, "undefined value (division by zero or infinity)"
    if lv.is_Rational and rv.is_Rational and exact:
        return lv == rv, f"lhs - rhs = {show(lv - rv)}"
    if exact and sympy.expand(lv - rv) == 0:
        return True, "lhs - rhs = 0"
    ln, rn = sympy.N(lv, 30), sympy.N(rv, 30)
    if not (finite_number(ln) and finite_number(rn)) or ln.has(sympy.Function) or rn.has(sympy.Function):
        return None, "could not evaluate numerically"
    gap = abs(ln - rn)
    scale = max(abs(ln), abs(rn))
    ok = bool(gap <= max(REL_TOL * scale, ABS_TOL))
    return ok, f"lhs ~ {show(sympy.N(ln, 15))}, rhs ~ {show(sympy.N(rn, 15))}"


def half_unit(node):
    """Half a unit in the last place a literal states (1.414 -> 1/2000, -3 -> 1/2, 1200 -> 50, 1.5*10^3 -> 50);
    None when the node is not such a literal (no stated precision)."""
    if node[0] == "neg":
        return half_unit(node[1])
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
        mantissa = half_unit(node[1])
        if mantissa is not None and exponent[0] == "num" and exponent[1].isdigit() and len(exponent[1]) <= 3:
            return mantissa * sympy.Rational(10) ** (sign * int(exponent[1]))
    return None


def decimal_text(r) -> str:
    """A power-of-ten multiple of 1/2 as a short decimal: 1/2000 -> '0.0005', 50 -> '50'."""
    return str(Decimal(int(r.p)) / Decimal(int(r.q)))
