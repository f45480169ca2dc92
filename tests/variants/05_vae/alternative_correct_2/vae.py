class VAE(nn.Module):
    """nn.ModuleDict layers, chunk on dim 1, noise drawn as float32 then cast."""

    def __init__(self, input_dim=784, hidden_dim=400, latent_dim=20):
        super().__init__()
        self.latent_dim = latent_dim
        self.layers = nn.ModuleDict({
            "enc": nn.Linear(input_dim, hidden_dim), "head": nn.Linear(hidden_dim, latent_dim * 2),
            "dec": nn.Linear(latent_dim, hidden_dim), "out": nn.Linear(hidden_dim, input_dim)})

    def encode(self, x):
        return self.layers["head"](torch.relu(self.layers["enc"](x))).chunk(2, dim=1)

    def reparameterize(self, mu, log_var, generator=None):
        if generator is None:
            noise = torch.randn_like(mu)
        else:
            noise = torch.randn(*mu.shape, generator=generator).to(mu)
        return mu + noise * torch.sqrt(torch.exp(log_var))

    def decode(self, z):
        return self.layers["out"](torch.relu(self.layers["dec"](z))).sigmoid()

    def forward(self, x, generator=None):
        mu, log_var = self.encode(x)
        return self.decode(self.reparameterize(mu, log_var, generator)), mu, log_var
