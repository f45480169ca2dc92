from torch import nn


class LinearAutoencoder(nn.Module):
    """Layers without biases: the parameter count is not the specified one."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.encoder = nn.Linear(input_size, hidden_size, bias=False)
        self.decoder = nn.Linear(hidden_size, input_size, bias=False)

    def forward(self, x):
        return self.decoder(self.encoder(x))
