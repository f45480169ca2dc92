def assign_clusters(X, C):
    """The farthest centre: argmax instead of argmin."""
    return pairwise_sq_dists(X, C).argmax(dim=1)  # noqa: F821 - the notebook's function
