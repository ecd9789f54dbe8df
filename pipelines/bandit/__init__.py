"""Online bandit runs (SPEC §6): a policy of ``models.bandits`` against a simulator of ``envs``."""
