"""A minimal Adam for tensors whose gradient is computed by hand or by ``backward``."""

from __future__ import annotations

import torch
from torch import Tensor


class Adam:
    """Adam (Kingma & Ba 2015) on one tensor with a given gradient.

    The GLM gradients are closed-form, so no autograd graph is needed; ``torch.optim.Adam``
    would also import torch's compiler stack on first use (about 10 s here).
    """

    def __init__(self, parameter: Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.parameter, self.lr, self.betas, self.eps = parameter, lr, betas, eps
        self.m = torch.zeros_like(parameter)
        self.v = torch.zeros_like(parameter)
        self.t = 0

    def step(self, gradient: Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(gradient, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(gradient, gradient, value=1 - b2)
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        self.parameter.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))
