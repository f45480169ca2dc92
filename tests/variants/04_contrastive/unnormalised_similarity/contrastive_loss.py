from torch import nn


def contrastive_loss(z, z_neg, tau=0.5):
    similarity = (z * z_neg).sum(dim=1)  # dot product of raw codes: not a cosine
    return nn.functional.softplus(similarity / tau).mean()
