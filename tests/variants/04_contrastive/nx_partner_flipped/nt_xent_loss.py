import torch
from torch import nn


def nt_xent_loss(z1, z2, tau):
    """Pairs row i of z1 with row B-1-i of z2 (the second view flipped), not row i."""
    b = z1.shape[0]
    unit = nn.functional.normalize(torch.cat([z1, z2.flip(0)]), dim=1)
    logits = (unit @ unit.T / tau).masked_fill(
        torch.eye(2 * b, dtype=torch.bool, device=z1.device), float("-inf"))
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z1.device)
    return nn.functional.cross_entropy(logits, partner)
