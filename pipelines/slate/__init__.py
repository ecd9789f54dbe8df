"""Run loops for the slate chain: user-model fitting with MLflow tracking."""
