from torch import nn


class LinearAutoencoder(nn.Module):
    """A ReLU between the encoder and the decoder: no longer a linear autoencoder."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.encoder = nn.Linear(input_size, hidden_size)
        self.decoder = nn.Linear(hidden_size, input_size)

    def forward(self, x):
        return self.decoder(nn.functional.relu(self.encoder(x)))
