"""The layer options reach forward, backward and gradcheck alike (one shared decorator)."""

import typer

from cnncli.cli import app

# SPEC "Commands": the options of forward; backward and gradcheck add --grad.
LAYER_FLAGS = {"--layer", "--weights", "--bias", "--f", "--stride", "--pad", "--dilation", "--groups", "--mode",
               "--ceil-mode", "--count-include-pad", "--layout", "--dtype"}


def _flags(name):
    command = typer.main.get_command(app).commands[name]
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_every_layer_command_takes_the_same_layer_options():
    assert LAYER_FLAGS <= _flags("forward") and "--grad" not in _flags("forward")
    for name in ("backward", "gradcheck"):
        assert LAYER_FLAGS | {"--grad"} <= _flags(name)
