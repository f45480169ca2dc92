def nearest_centroid_predict(Z, centroids):
    """torch.cdist, then the first of the smallest."""
    return torch.cdist(Z, centroids).argmin(dim=1)
