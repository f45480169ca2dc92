import torch


def pca(X, n_components):
    """Projections as U * S (equal to Xc @ V), ratios from the squared singular values."""
    Xc = X - X.mean(0)
    U, S, Vh = torch.linalg.svd(Xc, full_matrices=False)
    var = S.square()
    k = n_components
    return U[:, :k] * S[:k], Vh[:k], var[:k] / var.sum()
