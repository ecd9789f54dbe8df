"""Cascading Q-networks for slate recommendation (Chen et al. 2019, §5)."""
