def pairwise_sq_dists(X, C):
    """Right values, but always computed and returned in float32 (.float() on the inputs)."""
    X, C = X.float(), C.float()
    m = C[:1]
    Xs, Cs = X - m, C - m
    D = (Xs * Xs).sum(1, keepdim=True) - 2 * Xs @ Cs.T + (Cs * Cs).sum(1)
    return D.clamp_min(0.0)
