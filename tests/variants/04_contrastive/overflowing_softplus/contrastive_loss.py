import torch
from torch import nn


def contrastive_loss(z, z_neg, tau=0.5):
    similarity = (nn.functional.normalize(z, dim=1) * nn.functional.normalize(z_neg, dim=1)).sum(1)
    return torch.log(1 + torch.exp(similarity / tau)).mean()  # exp overflows for x > 88
