import torch


def pairwise_sq_dists(X, C):
    """Distances, not squared distances: a sqrt too many."""
    m = C[:1]
    Xs, Cs = X - m, C - m
    D = (Xs * Xs).sum(1, keepdim=True) - 2 * Xs @ Cs.T + (Cs * Cs).sum(1)
    return D.clamp_min(0.0).sqrt()
