"""``recrl ope``: off-policy evaluation on the Open Bandit logs (design.md §9)."""
