import torch
from torch import nn


def contrastive_loss(z, z_neg, tau=0.5):
    # cosine_similarity normalises both sides itself; logaddexp(0, x) = log(1 + e^x), stably
    s = nn.functional.cosine_similarity(z, z_neg, dim=1, eps=1e-12) / tau
    return torch.logaddexp(torch.zeros_like(s), s).mean()
