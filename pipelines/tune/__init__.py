"""Ray Tune sweeps of SASRec variants and bandit runs: study files, trials, sweep driver,
report."""
