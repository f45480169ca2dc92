def negative_pairs(z, y, a1, a2):
    rows_a = (y == a1).nonzero().squeeze(1)
    rows_b = (y == a2).nonzero().squeeze(1)
    n = min(rows_a.numel(), rows_b.numel())
    return (z.index_select(0, rows_a[:n]), z.index_select(0, rows_b[:n])) if n > 0 else None
