def negative_pairs(z, y, a1, a2):
    """The two classes' rows returned in the wrong order (a2's first)."""
    za, zb = z[y == a1], z[y == a2]
    n = min(len(za), len(zb))
    return None if n == 0 else (zb[:n], za[:n])
