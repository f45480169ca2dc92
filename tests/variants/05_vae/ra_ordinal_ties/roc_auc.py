def roc_auc(scores, is_anomaly):
    # ties get distinct ranks in sort order instead of their average
    is_anomaly = is_anomaly.bool()
    n1 = int(is_anomaly.sum())
    n0 = len(is_anomaly) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("roc_auc needs both classes")
    order = torch.argsort(scores.double(), stable=True)
    ranks = torch.empty(len(scores), dtype=torch.float64, device=scores.device)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64, device=scores.device)
    return float((ranks[is_anomaly].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
