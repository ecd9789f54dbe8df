"""Online bandit runs (design §6): a ``models.bandits`` policy against an ``envs`` simulator."""
