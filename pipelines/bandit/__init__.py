"""Online bandit runs (design.md §6): a ``recrl.models.bandits`` policy against an
``recrl.envs`` simulator."""
