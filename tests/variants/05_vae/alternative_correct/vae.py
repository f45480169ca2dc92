class VAE(nn.Module):
    """Separate layers, F.relu, slicing in place of torch.chunk, torch.normal for the noise."""

    def __init__(self, input_dim=784, hidden_dim=400, latent_dim=20):
        super().__init__()
        self.latent_dim = latent_dim
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, 2 * latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden_dim)
        self.fc4 = nn.Linear(hidden_dim, input_dim)

    def encode(self, x):
        h = self.fc2(nn.functional.relu(self.fc1(x)))
        d = self.latent_dim
        return h[:, :d], h[:, d:]

    def reparameterize(self, mu, log_var, generator=None):
        std = (0.5 * log_var).exp()
        if generator is not None:
            eps = torch.normal(torch.zeros(mu.shape), torch.ones(mu.shape), generator=generator)
            eps = eps.to(device=mu.device, dtype=mu.dtype)
        else:
            eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype)
        return eps.mul(std).add(mu)

    def decode(self, z):
        return torch.sigmoid(self.fc4(torch.relu(self.fc3(z))))

    def forward(self, x, generator=None):
        mu, log_var = self.encode(x.view(-1, self.fc1.in_features))
        z = self.reparameterize(mu, log_var, generator=generator)
        return self.decode(z), mu, log_var
