"""GAN user model of Chen et al. (2019): state encoders, utility, choice and its objectives."""
