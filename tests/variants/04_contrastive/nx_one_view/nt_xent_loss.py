import torch
from torch import nn


def nt_xent_loss(z1, z2, tau):
    """Averages over the B rows of z1 only, not over the 2B rows of both views."""
    b = z1.shape[0]
    unit = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    logits = (unit @ unit.T / tau).masked_fill(
        torch.eye(2 * b, dtype=torch.bool, device=z1.device), float("-inf"))
    partner = torch.arange(b, 2 * b, device=z1.device)
    return nn.functional.cross_entropy(logits[:b], partner)
