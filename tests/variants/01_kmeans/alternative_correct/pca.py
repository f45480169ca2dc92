import torch


def pca(X, n_components):
    """PCA from the eigendecomposition of the scatter matrix Xc^T Xc (eigh, not svd)."""
    Xc = X - X.mean(dim=0)
    evals, evecs = torch.linalg.eigh(Xc.T @ Xc)  # ascending eigenvalues, vectors in columns
    evals = evals.flip(0).clamp(min=0)
    evecs = evecs.flip(1)
    components = evecs[:, :n_components].T.contiguous()
    Z = Xc @ components.T
    ratio = evals[:n_components] / evals.sum()
    return Z, components, ratio
