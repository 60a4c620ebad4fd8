"""Pure reward functions (stdlib, numpy, sympy only; never Ray or torch)."""
