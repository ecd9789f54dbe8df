"""Exploration bandit policies of design.md §6 (REN, GLM-UCB, shared neural UCBs) in torch."""

from recrl.models.bandits.interface import BanditContext, BanditPolicy, Feedback, top_k_slate
from recrl.models.bandits.registry import POLICIES, PolicySizes, make_policy, policy_config

__all__ = [
    "POLICIES",
    "BanditContext",
    "BanditPolicy",
    "Feedback",
    "PolicySizes",
    "make_policy",
    "policy_config",
    "top_k_slate",
]
