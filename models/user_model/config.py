"""Settings of the GAN user model (Chen et al. 2019, §4; docs/design.md §5) and their defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class UserModelConfig:
    """User model φ(s, A) = softmax over A ∪ {no-click} of η·u(s, a), no-click utility 0.

    State s: position-weighted history (paper eq. 4: ``vec[ELU(F W + B)]`` over the last
    m clicked items' features, W ∈ R^{m×n}) or the last hidden state of an LSTM. Utility
    u(s, a) = vᵀ ELU(V [s, f_a] + b). Trained by maximum likelihood, which is the min-max
    of eq. 5 under the Shannon-entropy regulariser (Lemma 2); the L2-regularised variant
    then runs the alternating updates of eq. 6 from that starting point.
    """

    state: Literal["pw", "lstm"] = "pw"
    """History encoder: position weights (GAN-PW) or LSTM (GAN-LSTM)."""
    history_len: int = 10
    """m: lags read from the history (at most the stored history length)."""
    pw_columns: int = 4
    """n: columns of position weights W (paper eq. 4)."""
    lstm_hidden: int = 64
    """Hidden size of the LSTM state."""
    item_embedding_dim: int = 16
    """Learned item embedding appended to the item features (0: features only)."""
    utility_hidden: int = 64
    """ℓ: hidden units of the utility MLP."""
    eta: float = 1.0
    """η: inverse strength of the regulariser (the paper sets 1)."""
    regularizer: Literal["shannon", "l2"] = "shannon"
    """``shannon``: maximum likelihood only; ``l2``: then the adversarial eq.-6 updates."""
    lr: float = 5e-3
    """Adam learning rate (design.md §8: 0.005-0.01)."""
    weight_decay: float = 1e-5
    """Adam weight decay."""
    batch_size: int = 256
    """Page views per gradient step."""
    epochs: int = 15
    """Maximum-likelihood epochs; the epoch with the best validation loss is kept."""
    adversarial_epochs: int = 5
    """Epochs of eq.-6 updates after maximum likelihood (``regularizer = l2`` only)."""
    adversarial_lr: float = 2e-4
    """Learning rate of both players in the adversarial phase."""
    seed: int = 0
    """Seed of initialisation and batch order."""

    def __post_init__(self) -> None:
        if self.state not in ("pw", "lstm"):
            raise ValueError(f"state must be 'pw' or 'lstm', got {self.state!r}")
        if self.regularizer not in ("shannon", "l2"):
            raise ValueError(f"regularizer must be 'shannon' or 'l2', got {self.regularizer!r}")
        for name in ("history_len", "pw_columns", "lstm_hidden", "utility_hidden", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.item_embedding_dim < 0 or self.epochs < 0 or self.adversarial_epochs < 0:
            raise ValueError("item_embedding_dim, epochs and adversarial_epochs must be >= 0")
        if self.eta <= 0 or self.lr <= 0:
            raise ValueError("eta and lr must be > 0")
