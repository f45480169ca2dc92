def roc_auc(scores, is_anomaly):
    # ranks in decreasing order of score: 1 - AUC
    is_anomaly = is_anomaly.bool()
    n1 = int(is_anomaly.sum())
    n0 = len(is_anomaly) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("roc_auc needs both classes")
    values, order = torch.sort(-scores.double())
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    average = torch.cumsum(counts, 0).double() - (counts.double() - 1) / 2
    ranks = torch.empty(len(values), dtype=torch.float64, device=values.device)
    ranks[order] = average[group]
    return float((ranks[is_anomaly].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
