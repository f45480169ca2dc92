def roc_auc(scores, is_anomaly):
    # average ranks through torch.unique's inverse and counts
    y = is_anomaly.bool()
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 * n0 == 0:
        raise ValueError("is_anomaly must hold both True and False")
    uniq, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts + 1
    avg_rank = first.double() + (counts.double() - 1) / 2
    r1 = avg_rank[inverse][y].sum().item()
    return (r1 - n1 * (n1 + 1) / 2) / (n1 * n0)
