# NaN instead of ValueError
def roc_auc(scores, is_anomaly):
    """Area under the ROC curve: P(score of an anomaly > score of a normal image), ties 1/2.

    Args:
        scores: (N,) float tensor; higher means more anomalous.
        is_anomaly: (N,) bool tensor on the same device, True for the anomalies.

    Returns:
        A Python float in [0, 1], computed with torch from average ranks (no loop over the
        scores). Raises ValueError when is_anomaly is all True or all False.
    """
    is_anomaly = is_anomaly.bool()
    n1 = int(is_anomaly.sum())
    n0 = len(is_anomaly) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    values, order = torch.sort(scores.double())
    n = len(values)
    positions = torch.arange(1, n + 1, dtype=torch.float64, device=values.device)
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    average = ends - (counts.double() - 1) / 2  # mean rank of each run of equal scores
    ranks = torch.empty_like(positions)
    ranks[order] = average[group]
    return float((ranks[is_anomaly].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
