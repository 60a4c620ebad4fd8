"""GroundedPRM pieces: step splitting (steps.py) and the sandboxed SymPy tool verifier (verify.py)."""
