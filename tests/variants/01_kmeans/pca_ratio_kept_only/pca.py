import torch


def pca(X, n_components):
    """Ratios divided by the sum over the kept components only (they always sum to 1)."""
    Xc = X - X.mean(0, keepdim=True)
    _, S, Vh = torch.linalg.svd(Xc, full_matrices=False)
    comps = Vh[:n_components]
    var = (S * S)[:n_components]
    return Xc @ comps.T, comps, var / var.sum()
