import torch


def pca(X, n_components):
    """SVD of X itself: forgets to subtract the mean, so component 1 points at the mean image."""
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    components = Vh[:n_components]
    Z = X @ components.T
    var = S * S
    return Z, components, var[:n_components] / var.sum()
