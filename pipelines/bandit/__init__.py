"""Online bandit runs (design.md §6): a ``models.bandits`` policy against an ``envs`` simulator."""
