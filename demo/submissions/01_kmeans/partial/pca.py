import torch


def pca(X, n_components):
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    components = Vh[:n_components]
    Z = X @ components.T
    explained_variance_ratio = (S[:n_components] ** 2) / (S**2).sum()
    return Z, components, explained_variance_ratio
