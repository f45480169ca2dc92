import torch


def pairwise_sq_dists(X, C):
    """Squared distances with einsum, after moving the origin to the mean of the points."""
    shift = X.mean(dim=0)
    Xs, Cs = X - shift, C - shift
    cross = torch.einsum("nd,kd->nk", Xs, Cs)
    x_sq = torch.einsum("nd,nd->n", Xs, Xs)
    c_sq = torch.einsum("kd,kd->k", Cs, Cs)
    return torch.clamp(x_sq.unsqueeze(1) - 2 * cross + c_sq.unsqueeze(0), min=0)
