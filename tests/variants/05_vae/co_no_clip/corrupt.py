# not clipped
def corrupt(x, noise, generator):
    """x plus Gaussian noise of standard deviation noise, clipped to [0, 1].

    Args:
        x: (B, D) float tensor of pixels in [0, 1] (not modified).
        noise: the noise's standard deviation, a float >= 0.
        generator: a CPU torch.Generator; the noise is drawn from it on the CPU, then moved to
            x's device.

    Returns:
        A new tensor of x's shape, dtype and device: clamp(x + noise * eps, 0, 1), eps
        standard normal.
    """
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x + noise * eps
