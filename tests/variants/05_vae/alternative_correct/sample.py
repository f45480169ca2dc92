@torch.no_grad()
def sample(model, n, generator):
    # the decorator form of no_grad; the device read from the first parameter
    p = next(iter(model.parameters()))
    return model.decode(torch.randn((n, model.latent_dim), generator=generator).to(p.device))
