import torch


def pairwise_sq_dists(X, C):
    """Right values, vectorised over the centres but one Python iteration per point."""
    D = torch.empty(X.shape[0], C.shape[0], dtype=X.dtype, device=X.device)
    for i in range(X.shape[0]):
        D[i] = ((X[i] - C) ** 2).sum(dim=1)
    return D
