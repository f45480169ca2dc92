import torch


def pairwise_sq_dists(X, C):
    """One fused call: ||x||^2 + ||c||^2 - 2 X C^T as addmm, negatives from rounding cut to 0."""
    norms = X.pow(2).sum(1, keepdim=True) + C.pow(2).sum(1)
    return torch.addmm(norms, X, C.T, alpha=-2).clamp_min_(0)
