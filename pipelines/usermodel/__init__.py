"""Fitting the GAN user model of Chen et al. (2019) on display-set records, tracked in MLflow."""
