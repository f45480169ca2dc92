def negative_pairs(z, y, a1, a2):
    """Two empty tensors instead of None when a class is missing."""
    za, zb = z[y == a1], z[y == a2]
    n = min(len(za), len(zb))
    return za[:n], zb[:n]
