from torch import nn


class ConvAutoencoder(nn.Module):
    """No sigmoid at the end: the outputs are not confined to [0, 1]."""

    def __init__(self):
        super().__init__()

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                    nn.MaxPool2d(2)]

        self.encoder = nn.Sequential(*block(1, 32), *block(32, 4))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1),
        )

    def forward(self, x):
        return self.decoder(self.encoder(x))
