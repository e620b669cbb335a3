"""The PyTorch models behind the printed-model fixtures (``*.txt`` here), and how they were made.

Regenerate with a torch environment (cnncli and its tests never need torch):

    python tests/shape/printed/models.py      # writes tests/shape/printed/*.txt

``tests/shape/test_vs_torch_print.py`` builds the same models when torch is importable
and compares cnncli's reading of their printed text with PyTorch's own shapes and counts.
"""

from __future__ import annotations

import os


def build():
    """name -> (model, input shape NCHW or None when the model is refused)."""
    import torch.nn as nn

    class Generator(nn.Module):  # the DCGAN tutorial's generator (nz=100, ngf=64, nc=3)
        def __init__(self, nz=100, ngf=64, nc=3):
            super().__init__()
            self.main = nn.Sequential(
                nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
                nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    class SmallNet(nn.Module):  # named children, nested Sequentials, the layers of a classifier
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=4, bias=False),
                nn.LeakyReLU(0.1), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                nn.Sequential(nn.Conv2d(16, 32, (3, 5), padding="same", dilation=(2, 1)), nn.GELU()),
                nn.AvgPool2d(2), nn.Dropout2d(0.1))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.flatten = nn.Flatten()
            self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(32, 10), nn.SiLU(), nn.Identity(),
                                            nn.Linear(10, 4, bias=False), nn.Sigmoid())

    class Upsampler(nn.Module):  # tconv with output_padding, dilation and groups; bn without affine
        def __init__(self):
            super().__init__()
            self.up = nn.Sequential(
                nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(8, affine=False),
                nn.ConvTranspose2d(8, 6, (3, 2), stride=(1, 2), padding=(2, 0), dilation=(3, 1), output_padding=(2, 1),
                                   groups=2),
                nn.Conv2d(6, 6, 3, padding="valid", padding_mode="reflect"))

    class Block(nn.Module):  # ResNet's BasicBlock shape: not a chain
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(128)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(128, 128, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(128)
            self.downsample = nn.Sequential(nn.Conv2d(64, 128, 1, stride=2, bias=False), nn.BatchNorm2d(128))

    lenet = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2, stride=2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2, stride=2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
    mismatch = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(16, 8, 3))
    unknown = nn.Sequential(nn.Conv2d(3, 8, 3), nn.PReLU(), nn.Conv2d(8, 8, 3))
    return {
        "lenet": (lenet, (1, 1, 28, 28)),
        "dcgan_generator": (Generator(), (1, 100, 1, 1)),
        "smallnet": (SmallNet(), (2, 3, 32, 32)),
        "upsampler": (Upsampler(), (1, 8, 5, 7)),
        "residual_block": (Block(), None),
        "channel_mismatch": (mismatch, None),
        "unknown_module": (unknown, None),
    }


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for name, (model, _) in build().items():
        with open(os.path.join(here, f"{name}.txt"), "w") as fh:
            fh.write(str(model) + "\n")


if __name__ == "__main__":
    main()
