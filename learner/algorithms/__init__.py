"""One module per algorithm (grpo, care, copo; process is a token term), registered by importing them here.
A new algorithm: a module with an `@register_algorithm` class, imported here or named in algorithm.plugins."""
from learner.algorithms import care, copo, grpo, sft  # noqa: F401  (registration)
