"""Ray Tune sweeps of SASRec variants: study files, trials, sweep driver, report."""
