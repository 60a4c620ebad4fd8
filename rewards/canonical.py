"""Answer-equivalence classes for COPO's answer entropy: `canonical_answer`.

SymPy's `parse_expr` calls `eval`. The input is restricted below (short arithmetic strings only, no builtins in
the namespace, bounded exponents), but as a second line of defence this must run only inside the reward actor's
sandboxed child process, never in the learner or a driver: that is why it lives in rewards/ and `score()` reports
each rollout's class as "answer_class". Pure: no Ray, no torch; sympy is imported lazily.
"""
from __future__ import annotations

import functools
import re

_SYMPY_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyz+-*/^(). ")
_SYMPY_MAX_LEN = 64
_MAX_EXPONENT = 1000


def _sympy_namespace() -> dict:
    """The only names parse_expr may evaluate: no builtins, just the constructors its transformations emit."""
    import sympy
    names = ("Symbol", "Integer", "Float", "Rational", "Function", "Add", "Mul", "Pow", "And", "Or", "Not", "I")
    ns = {n: getattr(sympy, n) for n in names}
    ns["__builtins__"] = {}
    return ns


def _safe_to_evaluate(text: str) -> bool:
    """Only short arithmetic strings; at most one power operator and no scientific notation (no huge numbers)."""
    if not text or len(text) > _SYMPY_MAX_LEN or not set(text) <= _SYMPY_CHARS:
        return False
    if text.count("^") + text.count("**") > 1:
        return False
    return re.search(r"\d\.?e", text) is None


@functools.lru_cache(maxsize=65536)
def canonical_answer(answer: str) -> str:
    """Answer class for the COPO entropy: strip + lower-case, then SymPy's canonical form where the string is a
    short parsable expression ("0.5", "1/2" -> "1/2"; "x+1", "1 + x" -> "x + 1"; "2*x/4" -> "x/2"), else the
    stripped string. Only <= 64 chars of [0-9a-z+-*/^(). ], one power operator, exponents <= 1000, no builtins."""
    text = str(answer).strip().lower()
    if not _safe_to_evaluate(text):
        return text
    try:
        import sympy
        from sympy.parsing.sympy_parser import (
            convert_xor,
            parse_expr,
            standard_transformations,
        )
        transforms = standard_transformations + (convert_xor,)
        lazy = parse_expr(text, local_dict={}, global_dict=_sympy_namespace(), transformations=transforms,
                          evaluate=False)
        for pw in lazy.atoms(sympy.Pow):  # refuse numerically huge exponents before evaluating anything
            if pw.exp.is_number and abs(complex(pw.exp.doit())) > _MAX_EXPONENT:
                return text
        expr = parse_expr(text, local_dict={}, global_dict=_sympy_namespace(), transformations=transforms,
                          evaluate=True)
        if not isinstance(expr, sympy.Basic):
            return text
        # evaluate=True already orders terms and folds exact arithmetic; floats become simple rationals
        # ("0.5" -> 1/2). sympy.simplify is not used: it is unbounded in time and memory on e.g. (x+1)^1000.
        if expr.atoms(sympy.Float):
            expr = sympy.nsimplify(expr)
        return str(expr)
    except Exception:  # noqa: BLE001 - anything SymPy cannot handle is its own exact-string class
        return text
