def pairwise_sq_dists(X, C):
    """The expanded form on the raw numbers, never clamped: rounding leaves negative entries."""
    return (X * X).sum(1, keepdim=True) - 2 * X @ C.T + (C * C).sum(1)
