"""Optional oracle: cnncli's reading of print(model) against PyTorch's own shapes and parameter counts."""

from __future__ import annotations

import os
import sys

import pytest

torch = pytest.importorskip("torch")

from cnncli.shape.stack import evaluate_stack, parse_dims  # noqa: E402
from cnncli.shape.torchprint import parse_printed_model  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "printed"))
import models  # noqa: E402


def _torch_rows(model, shape):
    """Per leaf module: output shape and parameter count, running the model's leaves in order."""
    x, rows = torch.zeros(shape), []
    for module in [m for m in model.modules() if not list(m.children())]:
        x = module(x)
        rows.append((list(x.shape), sum(p.numel() for p in module.parameters())))
    return rows


@pytest.mark.parametrize("name", [n for n, (_, shape) in models.build().items() if shape is not None])
def test_printed_models_match_pytorch(name):
    model, shape = models.build()[name]
    model.eval()
    specs, _ = parse_printed_model(str(model))
    result = evaluate_stack(specs, parse_dims("x".join(map(str, shape)), layout="nchw"))
    assert result.error is None
    with torch.no_grad():
        expected = _torch_rows(model, shape)
    assert [(layer.output.as_list(), layer.params) for layer in result.layers] == expected


@pytest.mark.parametrize("kw", [
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(3, 1), padding=(2, 0), output_padding=(2, 0)),
    dict(in_channels=6, out_channels=9, kernel_size=2, stride=1, dilation=3, output_padding=2, groups=3),
    dict(in_channels=4, out_channels=4, kernel_size=5, stride=4, padding=3, output_padding=3, groups=4, bias=False),
])
def test_tconv_matches_pytorch(kw):
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(**kw), torch.nn.BatchNorm2d(kw["out_channels"]),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(kw["out_channels"], 3))
    shape = (2, kw["in_channels"], 5, 7)
    specs, _ = parse_printed_model(str(model))
    result = evaluate_stack(specs, parse_dims("x".join(map(str, shape)), layout="nchw"))
    with torch.no_grad():
        assert [(layer.output.as_list(), layer.params) for layer in result.layers] == _torch_rows(model, shape)
