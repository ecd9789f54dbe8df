"""Names of the slate policies `recrl slate` and slate sweeps run (design.md §5.5), kept in a
module of its own so that the CLI lists them without importing torch."""

POLICIES = ("cdqn", "rwd1", "gdqn", "greedy", "random", "offline")
"""Trained: ``cdqn`` (cascading Q-networks), ``rwd1`` (the same, γ = 0), ``gdqn`` (additive
Q), ``offline`` (DQN on the logged views); references: ``greedy`` (the user model's best
slate) and ``random``."""
