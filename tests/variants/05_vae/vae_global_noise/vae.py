# noise from the global generator even when one is given
class VAE(nn.Module):
    """Variational autoencoder with one hidden layer on each side.

    Args:
        input_dim: pixels per image (784); hidden_dim: ReLU units of the hidden layers;
        latent_dim: size of the code z (kept as self.latent_dim).

    Methods:
        encode(x): (B, input_dim) -> (mu, log_var), each (B, latent_dim): one nn.Linear to
            2 * latent_dim numbers after the hidden layer, split in two with torch.chunk.
        reparameterize(mu, log_var, generator=None): mu + exp(log_var / 2) * eps with eps
            standard normal of mu's shape, drawn on the CPU from generator when one is given
            (then moved to mu's device), from torch's global generator otherwise;
            differentiable with respect to mu and log_var.
        decode(z): (B, latent_dim) -> (B, input_dim), a sigmoid output in (0, 1).
        forward(x, generator=None): (recon, mu, log_var), recon = decode(reparameterize(...)).
    """

    def __init__(self, input_dim=784, hidden_dim=400, latent_dim=20):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(),
                                     nn.Linear(hidden_dim, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(),
                                     nn.Linear(hidden_dim, input_dim), nn.Sigmoid())

    def encode(self, x):
        mu, log_var = torch.chunk(self.encoder(x), 2, dim=-1)
        return mu, log_var

    def reparameterize(self, mu, log_var, generator=None):
        if generator is None:
            eps = torch.randn_like(mu)
        else:
            eps = torch.randn_like(mu)
        return mu + torch.exp(0.5 * log_var) * eps

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x, generator=None):
        mu, log_var = self.encode(x)
        return self.decode(self.reparameterize(mu, log_var, generator)), mu, log_var
