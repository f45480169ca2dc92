import torch


def pca(X, n_components):
    """Right, but always in float32 (.float() first)."""
    X = X.float()
    Xc = X - X.mean(0, keepdim=True)
    _, S, Vh = torch.linalg.svd(Xc, full_matrices=False)
    comps = Vh[:n_components]
    var = S * S
    return Xc @ comps.T, comps, var[:n_components] / var.sum()
