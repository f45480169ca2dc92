def nearest_centroid_predict(Z, centroids):
    """The nearest centroid in L1 (Manhattan) distance instead of Euclidean."""
    return (Z[:, None, :] - centroids[None, :, :]).abs().sum(-1).argmin(dim=1)
