"""Safe expression parsing for the GroundedPRM tool verifier (claims are found in `claims.py`). Pure: stdlib only.

Model text is NEVER handed to eval/exec/sympify/parse_expr: a small recursive-descent parser turns it into a
tuple AST (see `parse`), and `rewards/prm/check.py` builds SymPy objects from that AST under size caps.
"""
from __future__ import annotations

import re

MAX_EXPR_CHARS = 500       # one side of a claim
MAX_STEP_CHARS = 5000      # a whole step; longer steps are not checked at all
MAX_DEPTH = 40             # nesting of parentheses / function calls / unary signs
MAX_DIGITS = 50            # digits in one numeric literal
FUNCTIONS = ("sqrt", "sin", "cos", "tan", "log", "ln", "exp", "abs", "factorial")
CONSTANTS = ("pi",)


class ParseError(ValueError):
    """The text is not an expression this parser accepts; str(e) is the reason."""


# --- LaTeX / unicode normalisation -------------------------------------------------------------------------

_SIMPLE_LATEX = [
    (r"\left", ""), (r"\right", ""), (r"\cdot", "*"), (r"\times", "*"), (r"\div", "/"),
    (r"\,", " "), (r"\;", " "), (r"\!", ""), (r"\(", ""), (r"\)", ""), (r"\[", ""), (r"\]", ""),
    ("$", ""), ("×", "*"), ("·", "*"), ("÷", "/"), ("−", "-"), ("π", "pi"),
    (r"\approx", " ≈ "), ("~=", " ≈ "), ("⇒", " ; "),
]
_TEXT_COMMAND = re.compile(r"\\(?:text|textrm|mathrm|mbox)\s*\{([^{}]*)\}")         # \text{ or } -> ' or '
_ARROW = re.compile(r"\\(?:Rightarrow|Longrightarrow|implies|iff|quad|qquad)(?![A-Za-z])")


def _brace_group(text: str, i: int) -> int | None:
    """Index just past the balanced {...} group starting at text[i] == '{', or None."""
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return j + 1
    return None


def _replace_frac_sqrt(text: str) -> str:
    """\\frac{a}{b} -> ((a)/(b)) and \\sqrt{a} -> sqrt(a), innermost-agnostic (one left-to-right pass)."""
    out, i = [], 0
    pattern = re.compile(r"\\[dt]?frac|\\sqrt")
    while True:
        m = pattern.search(text, i)
        if m is None:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:m.start()])
        a_end = _brace_group(text, m.end())
        if m.group().endswith("frac"):
            b_end = _brace_group(text, a_end) if a_end else None
            if b_end is None:             # \frac12 and friends: leave for the tokenizer to refuse
                out.append(m.group())
                i = m.end()
                continue
            num = _replace_frac_sqrt(text[m.end() + 1:a_end - 1])
            den = _replace_frac_sqrt(text[a_end + 1:b_end - 1])
            out.append(f"(({num})/({den}))")
            i = b_end
        else:
            if a_end is None:
                out.append(m.group())
                i = m.end()
                continue
            out.append(f"sqrt({_replace_frac_sqrt(text[m.end() + 1:a_end - 1])})")
            i = a_end


def normalise_latex(text: str) -> str:
    """Maps the LaTeX and unicode a model writes for arithmetic onto plain infix text."""
    if "\\" in text:
        text = _ARROW.sub(lambda m: " " if "quad" in m.group() else " ; ", _TEXT_COMMAND.sub(r" \1 ", text))
        text = re.sub(r"\\pm(?![A-Za-z])", "±", text)
        text = _replace_frac_sqrt(text)
    for old, new in _SIMPLE_LATEX:
        text = text.replace(old, new)
    # \sin -> sin, \pi -> pi; any other command stays and the tokenizer refuses it.
    text = re.sub(r"\\(" + "|".join(FUNCTIONS + CONSTANTS) + r")\b", r"\1", text)
    return text.replace("{", "(").replace("}", ")")


# --- tokenizer ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|([A-Za-z]+)|(\*\*|[-+*/^()!]))")


def tokenize(text: str) -> list[tuple[str, str, bool]]:
    """(kind, value, space_before) triples; kind is num | id | op. Unknown characters -> ParseError."""
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            bad = text[pos:].lstrip()[0]
            raise ParseError(f"unsupported character {bad!r}")
        spaced = m.start(1 if m.group(1) else 2 if m.group(2) else 3) > pos
        if m.group(1):
            if len(m.group(1).replace(".", "")) > MAX_DIGITS:
                raise ParseError(f"numeric literal longer than {MAX_DIGITS} digits")
            tokens.append(("num", m.group(1), spaced))
        elif m.group(2):
            tokens.append(("id", m.group(2), spaced))
        else:
            tokens.append(("op", "^" if m.group(3) == "**" else m.group(3), spaced))
        pos = m.end()
    return tokens


# --- recursive-descent parser ------------------------------------------------------------------------------
# expr := term (('+'|'-') term)* ; term := unary (('*'|'/') unary | <implicit> unary)*
# unary := ('-'|'+') unary | power ; power := postfix ('^' unary)? ; postfix := atom '!'*
# atom := number | name | function '(' expr ')' | '(' expr ')'


class _Parser:
    def __init__(self, tokens):
        self.tokens, self.i, self.depth = tokens, 0, 0

    def peek(self, offset: int = 0):
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else (None, None, False)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        if self.peek()[1] != value:
            raise ParseError(f"expected {value!r}")
        self.i += 1

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f"nesting deeper than {MAX_DEPTH}")

    def expr(self):
        node = self.term()
        while self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            op = self.take()[1]
            node = ("add" if op == "+" else "sub", node, self.term())
        return node

    def _implicit_next(self) -> bool:
        """Implicit multiplication ('2x', '3(x+1)', '(a)(b)') only between adjacent tokens: across a space it
        would glue prose onto an expression ('so x' -> s*o*x)."""
        kind, value, spaced = self.peek()
        return not spaced and (kind in ("num", "id") or value == "(")

    def term(self):
        node = self.unary()
        while True:
            kind, value, _ = self.peek()
            if kind == "op" and value in ("*", "/"):
                self.take()
                node = ("mul" if value == "*" else "div", node, self.unary())
            elif self.i > 0 and self._implicit_next():
                node = ("mul", node, self.unary())
            else:
                return node

    def unary(self):
        kind, value, _ = self.peek()
        if kind == "op" and value in ("-", "+"):
            self.take()
            self.nest()
            node = self.unary()
            self.depth -= 1
            return ("neg", node) if value == "-" else node
        return self.power()

    def power(self):
        base = self.postfix()
        if self.peek()[1] == "^":
            self.take()
            self.nest()
            exponent = self.unary()     # right-associative: 2^3^2 = 2^(3^2); 2^-1 allowed
            self.depth -= 1
            return ("pow", base, exponent)
        return base

    def postfix(self):
        node = self.atom()
        while self.peek()[1] == "!":
            self.take()
            node = ("call", "factorial", node)
        return node

    def atom(self):
        kind, value, _ = self.take()
        if kind == "num":
            return ("num", value)
        if kind == "id":
            return self.name(value)
        if value == "(":
            return self.group()
        raise ParseError("unexpected end of expression" if kind is None else f"unexpected {value!r}")

    def group(self):
        self.nest()
        node = self.expr()
        self.expect(")")
        self.depth -= 1
        return node

    def name(self, value: str):
        low = value.lower()
        if low in FUNCTIONS and self.peek()[1] == "(" and not self.peek()[2]:
            self.take()
            return ("call", "log" if low == "ln" else low, self.group())
        if low in CONSTANTS:
            return ("const", low)
        if len(value) > 2:
            raise ParseError(f"unknown name {value!r}")
        # 'xy' is x*y as in '2xy': reading it as one symbol would refute (x+y)^2 = x^2+2xy+y^2.
        node = ("sym", value[0])
        for letter in value[1:]:
            node = ("mul", node, ("sym", letter))
        return node


def parse(text: str):
    """Tuple AST of `text`, or ParseError with the reason (too long, unsupported character, syntax...)."""
    if len(text) > MAX_EXPR_CHARS:
        raise ParseError(f"expression longer than {MAX_EXPR_CHARS} characters")
    tokens = tokenize(text)
    if not tokens:
        raise ParseError("empty expression")
    parser = _Parser(tokens)
    node = parser.expr()
    if parser.i != len(tokens):
        raise ParseError(f"unexpected {parser.peek()[1]!r}")
    return node


def parses(text: str) -> bool:
    try:
        parse(text)
        return True
    except ParseError:
        return False
