"""Tool verifier: safe parser, claim extraction, SymPy verdicts, the sandbox and hostile inputs."""
import os
import time

import pytest

from rewards.prm.claims import extract_claims
from rewards.prm.parse import ParseError, normalise_latex, parse
from rewards.prm.verify import ToolVerifier

TIMEOUT_S = 2.0


def _still_works(verifier):
    out = verifier.verify_step("1+1=2")
    assert out.verdict == "verified", out


# --- pure parts ----------------------------------------------------------------------------------------------

def test_parser_ast_precedence_and_implicit_multiplication():
    assert parse("2x^2") == ("mul", ("num", "2"), ("pow", ("sym", "x"), ("num", "2")))
    assert parse("-x^2") == ("neg", ("pow", ("sym", "x"), ("num", "2")))
    assert parse("2^3^2") == ("pow", ("num", "2"), ("pow", ("num", "3"), ("num", "2")))
    assert parse("1-2-3") == ("sub", ("sub", ("num", "1"), ("num", "2")), ("num", "3"))
    assert parse("2**3") == parse("2^3")
    assert parse("xy") == ("mul", ("sym", "x"), ("sym", "y"))
    assert parse("3!") == ("call", "factorial", ("num", "3"))


@pytest.mark.parametrize("text,reason", [
    ("x y", "unexpected"),                    # no implicit multiplication across a space
    ("foo(2)", "unknown name"),
    ("2 + ", "unexpected end"),
    ("a.b", "unsupported character"),
    ("1" * 51, "digits"),
    ("(" * 41 + "1" + ")" * 41, "nesting"),
    ("1+" * 300 + "1", "longer than 500"),
])
def test_parser_refusals(text, reason):
    with pytest.raises(ParseError, match=reason):
        parse(text)


def test_latex_normalisation():
    assert normalise_latex(r"$\frac{1}{2} \cdot 3$") == "((1)/(2)) * 3"
    assert normalise_latex(r"\sqrt{x^{2}} \times 2") == "sqrt(x^(2)) * 2"
    assert parse(normalise_latex(r"\frac{\frac{1}{2}}{3}")) is not None


def test_claim_extraction_chains_and_prose():
    claims = extract_claims("First we get 2 + 3 = 5 apples, then a = 1+1 = 2.")
    assert [(c.lhs, c.rhs) for c in claims] == [("2 + 3", "5"), ("a", "1+1"), ("1+1", "2")]
    assert all(c.kind == "equality" for c in claims)
    assert extract_claims("We add the two numbers and compare.") == []
    assert extract_claims("x <= 3 and y >= 2") == []


# --- verdicts (through the sandbox) ----------------------------------------------------------------------------

@pytest.mark.parametrize("step,verdict", [
    ("2+3=5", "verified"),
    ("2+3=6", "refuted"),
    ("(x+1)^2 = x^2+2x+1", "verified"),
    ("(x+1)^2 = x^2+1", "not_checkable"),    # not an identity, but it may be an equation being solved
    ("2x = x+3", "not_checkable"),           # true at x = 3: a correct solving step must not be refuted
    (r"\frac{1}{2} + \frac{1}{3} = \frac{5}{6}", "verified"),
    ("0.1+0.2=0.3", "verified"),
    ("1/3 = 0.33", "refuted"),                # decimals get a 1e-9 relative tolerance, not more
    ("sqrt(8) = 2sqrt(2)", "verified"),
    ("(x+y)^2 = x^2+2xy+y^2", "verified"),
    ("x = 3", "not_checkable"),
    ("2x + 3 = 9", "not_checkable"),          # an equation in x, not an identity
    ("We now add the numbers.", "not_checkable"),
    ("1/0 = 1", "not_checkable"),
])
def test_step_verdicts(verifier, step, verdict):
    assert verifier.verify_step(step).verdict == verdict


def test_chained_equality_and_overall_rule(verifier):
    out = verifier.verify_step("So 2*3 = 6 = 3+3 = 7.")
    assert [c.verdict for c in out.claims] == ["verified", "verified", "refuted"]
    assert out.verdict == "refuted"
    ok = verifier.verify_step("So 2*3 = 6 = 3+3 and x = 4")
    # '3+3 and x' is cut at the space to '3+3'; 'x = 4' is an assignment.
    assert [(c.claim.lhs, c.claim.rhs, c.verdict) for c in ok.claims] == [
        ("2*3", "6", "verified"), ("6", "3+3", "verified"), ("x", "4", "not_checkable")]
    assert ok.verdict == "verified"
    mixed = verifier.verify_step("x = 4, so 2x = 8 and 2+2 = 4")
    assert mixed.verdict == "verified"


def test_verdict_details(verifier):
    out = verifier.verify_step("(x+1)^2 = x^2+1")
    claim = out.claims[0]
    assert claim.expression == "(x + 1)**2 = x**2 + 1"
    assert claim.result == "at x=3/7: lhs - rhs = 6/7"        # (10/7)^2 - (9/49 + 1) = 100/49 - 58/49 = 42/49
    assert claim.reason.startswith("not an identity")
    assert verifier.verify_step("x = 3").claims[0].reason == "assignment"
    assert verifier.verify_step("no maths here").reason == "no claims"


def test_spot_checks_decide_when_expand_cannot(verifier):
    # expand() leaves sin/cos alone; the identity holds at every point, the wrong one fails at the first.
    assert verifier.verify_step("sin(x)^2 + cos(x)^2 + x = 1 + x").verdict == "verified"
    wrong = verifier.verify_step("sin(x)^2 - cos(x)^2 + x = 1 + x")
    assert wrong.verdict == "not_checkable" and wrong.claims[0].result.startswith("at x=")


def test_answers_equivalent(verifier):
    assert verifier.answers_equivalent("1/2", "0.5")
    assert verifier.answers_equivalent("x+1", "1+x")
    assert not verifier.answers_equivalent("3", "4")
    assert verifier.answers_equivalent("Paris", "paris")
    assert verifier.answers_equivalent(r"\frac{1}{2}", "1/2")
    assert not verifier.answers_equivalent("Paris", "London")


# --- hostile inputs --------------------------------------------------------------------------------------------

def test_code_injection_is_not_run(verifier):
    marker = "/tmp/pwned"
    if os.path.exists(marker):
        os.remove(marker)
    out = verifier.verify_step("__import__('os').system('touch /tmp/pwned') = 0")
    assert out.verdict == "not_checkable"
    assert "unsupported character" in out.claims[0].reason
    assert not os.path.exists(marker)
    _still_works(verifier)


@pytest.mark.parametrize("step,reason", [
    ("().__class__.__bases__[0].__subclasses__() = 1", "unsupported character"),
    ("open('/etc/passwd').read() = 1", "unknown name 'read'"),   # the '.' split leaves "read() = 1"
    ("factorial(10**9) = 1", "factorial argument"),
    ("2**(10**10) = 1", "exponent"),
    ("(2^1000)^1000 = 1", "power too large"),
    ("(x+y+z)^500 = 1 + x", "power of a sum"),
])
def test_hostile_claims_are_refused(verifier, step, reason):
    out = verifier.verify_step(step)
    assert out.verdict == "not_checkable"
    assert reason in out.claims[0].reason, out
    _still_works(verifier)


def test_huge_and_deep_inputs(verifier):
    long = verifier.verify_step("1+" * 50_000 + "1 = 50001")    # 100k characters
    assert (long.verdict, long.reason) == ("not_checkable", "step too long")
    deep = verifier.verify_step("(" * 10_000 + "1" + ")" * 10_000 + " = 1")
    assert deep.verdict == "not_checkable" and deep.reason == "step too long"
    nested = verifier.verify_step("(" * 200 + "1" + ")" * 200 + " = 1")   # within the length cap
    assert nested.verdict == "not_checkable" and "nesting" in nested.claims[0].reason
    _still_works(verifier)


# --- the sandbox itself ----------------------------------------------------------------------------------------

def test_overrun_is_killed_and_verifier_recovers(verifier):
    before = verifier.stats()
    began = time.monotonic()
    value, reason = verifier._run(time.sleep, 30)      # stands in for a runaway SymPy call
    elapsed = time.monotonic() - began
    assert (value, reason) == (None, "timeout")
    assert elapsed < TIMEOUT_S + 1.5
    assert verifier.stats()["timeouts"] == before["timeouts"] + 1
    _still_works(verifier)                              # a fresh worker answers the next call


def test_crash_and_memory_are_reported(verifier):
    before = verifier.stats()
    assert verifier._run(os._exit, 3) == (None, "crashed")
    assert verifier.stats()["crashes"] == before["crashes"] + 1
    assert verifier._run(bytearray, 2 * 1024 ** 3) == (None, "memory")   # 2 GiB > the 512 MiB cap
    _still_works(verifier)


def test_child_environment_is_sandboxed(verifier):
    cwd, _ = verifier._run(os.getcwd)
    assert "prm-verify-" in cwd and cwd != os.getcwd()
    import resource
    limits, _ = verifier._run(resource.getrlimit, resource.RLIMIT_AS)
    assert limits == (512 * 1024 ** 2, 512 * 1024 ** 2)


def test_step_timeout_surfaces_as_not_checkable(monkeypatch):
    v = ToolVerifier(timeout_s=0.5)
    try:
        monkeypatch.setattr("rewards.prm.verify.verify_step", time.sleep)  # parent sends time.sleep(step_text)
        out = v.verify_step(5)
        assert (out.verdict, out.reason) == ("not_checkable", "timeout")
        assert v.stats()["not_checkable"] == 1 and v.stats()["timeouts"] == 1
        monkeypatch.undo()
        assert v.verify_step("2*(3+4) = 14").verdict == "verified"
        stats = v.stats()
        assert (stats["verified"], stats["tool_seconds"] > 0.5) == (1, True)
    finally:
        v.close()


def test_prm_imports_no_ray_or_torch():
    import subprocess
    import sys
    code = ("import sys, rewards.prm.verify, rewards.prm.steps; "
            "bad = sorted(m for m in ('ray', 'torch') if m in sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
