def corrupt(x, noise, generator):
    # torch.normal on the CPU, then clipped with torch.clip on x's device
    eps = torch.normal(0.0, 1.0, size=tuple(x.shape), generator=generator)
    return torch.clip(x + noise * eps.to(device=x.device, dtype=x.dtype), 0, 1)
