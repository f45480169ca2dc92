import torch
from torch import nn


def all_pairs_loss(z, y, tau=0.5):
    """The sum over the pairs of different labels instead of their mean."""
    different = y[:, None] != y[None, :]
    if not bool(different.any()):
        return None
    unit = nn.functional.normalize(z, dim=1)
    return nn.functional.softplus(unit @ unit.T / tau)[different].sum()
