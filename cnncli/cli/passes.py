"""``cnncli forward`` and ``cnncli backward``: parse, resolve the layer call, stream the pass, render."""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import nullcontext
from typing import Optional

import typer

from ..errors import InputError, OutputError
from .app import STOP_SIGNALS, Terminated, app, check_interrupted
from .command import CnncliCommand, examples
from .options import PlainOpt, check_output_flags, layer_options

SourceArg = typer.Argument(..., metavar="SOURCE",
                           help="A case file (.h5/.npz with A_prev) or an array for A_prev: x.npy, x.npz:NAME, x.h5:PATH or -.")
OutOpt = typer.Option(None, "-o", "--output", metavar="OUT",
                      help="Write results: .npy (main result), .npz / .h5 (all, by name), - (.npy on stdout).")
ForceOpt = typer.Option(False, "--force", help="Overwrite OUT if it exists.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout instead of tables.")


_FORWARD_EXAMPLES = examples(
    "A case file (A_prev, W, b and the hyperparameters in one file):",
    "cnncli forward examples/conv_case.h5",
    "Max-pool an HDF5 dataset 2x2 (stride 2) into a .npy file:",
    "cnncli forward examples/digits.h5:/images --layer pool --f 2 -o pooled.npy",
    "Convolve with your filters, 'same' padding, a JSON summary:",
    "cnncli forward A.npy --weights W.npy --bias b.npy --pad same --json",
    "PyTorch's layout (A: m,C,H,W; W: C_out,C_in,kH,kW):",
    "cnncli forward A.npy --weights W.npy --layout nchw --stride 2",
    "In a pipeline: .npy bytes on stdout, the table on stderr:",
    "cnncli forward A.npy --f 2 -o - | cnncli forward - --f 2 --mode average",
)
_BACKWARD_EXAMPLES = examples(
    "A case file that carries the upstream gradient dZ:",
    "cnncli backward examples/conv_case.h5",
    "All of dA_prev, dW and db into one HDF5 file:",
    "cnncli backward examples/conv_case.h5 -o grads.h5",
    "dA_prev of a 2x2 max pool, the upstream gradient dA from a file:",
    "cnncli backward A.npy --layer pool --f 2 --grad dA.npy -o dA_prev.npy",
)


class _SignalGuard:
    """Remember a Ctrl-C, SIGTERM or SIGHUP during a write, even where Python would swallow its exception.

    A KeyboardInterrupt raised while a finalizer or weakref callback runs (h5py has many)
    is printed as a traceback and ignored by Python, and the run would go on to write
    its output. So the handlers only record the signal; the stream checks at every
    chunk (chunks are small) and stops there, inside the writer, so the result is never
    renamed into place and the temporary files are removed. The app maps the exceptions
    to exit 130, 143 and 129.
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handler(self, signum, frame):
        self.signum = self.signum or signum

    def check(self) -> None:
        """Raise KeyboardInterrupt or :class:`~cnncli.cli.app.Terminated` if a signal arrived (or a Ctrl-C
        before the guard whose KeyboardInterrupt Python swallowed)."""
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is not None:
            raise Terminated(self.signum)
        check_interrupted()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, *STOP_SIGNALS):
                # NOTE: one ignored when the run began stays so (nohup's SIGHUP, a background job's SIGINT)
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        return False


def _run(command: str, source: str, output: Optional[str], force: bool, as_json: bool, options: dict,
         plain: bool = False) -> None:
    started = time.perf_counter()
    check_output_flags(as_json, plain)
    # NOTE: imported here: numpy, h5py and rich load for a pass, not for --help or another command.
    from ..io.writers import ResultWriter, check_destination
    from ..passes import stream as streaming
    from ..passes.call import resolve_layer
    from ..passes.report import PassReport
    from ..render import passes as render
    from ..render.progress import progress_bar
    from ..io.budget import memory_budget

    from ..engine import jit_mode

    memory_budget()  # a bad CNNCLI_* setting is told even when a run would not read it
    streaming.io_chunk_bytes()
    jit_mode()
    if output == "-" and as_json:
        raise OutputError("--json and -o - both write to stdout; use -o FILE with --json")
    if output == "-" and sys.stdout is not None and sys.stdout.isatty():
        raise OutputError("-o - writes .npy bytes; stdout is a terminal: redirect or pipe it")
    if output is not None:
        check_destination(output, force)  # before any work: an existing file is reported at once
    with resolve_layer(source, stream=True, want_grad=command == "backward", **options) as call:
        if command == "backward" and call.grad is None:
            key = "dZ" if call.kind == "conv" else "dA"
            raise InputError(f"backward needs {key}: give --grad ARRAY or a case file with {key}")
        main = ("Z" if call.kind == "conv" else "A") if command == "forward" else "dA_prev"
        attrs = dict(call.hyperparameters(), command=command)
        writer = ResultWriter(output, main=main, attrs=attrs, force=force) if output is not None else None
        run = streaming.forward if command == "forward" else streaming.backward
        m = call.A_prev.shape[0]
        rows = streaming.chunk_rows(call, backward=command == "backward")
        advice = ("to shorten: --dtype float32 computes in single precision (half the bytes to move)"
                  if str(call.dtype) != "float32" else None)
        show = m > rows and sys.stderr is not None and sys.stderr.isatty()
        with _SignalGuard() as guard:
            with (writer or nullcontext()) as sink, progress_bar(command, show=show, advice=advice,
                                                                 unit="examples") as bar:

                def progress(done: int, total: int) -> None:
                    guard.check()
                    bar(done, total)

                results = run(call, sink, progress=progress)
                guard.check()  # still inside the writer: an interrupted run never commits
            # NOTE: committed. A signal from here on (during the rename, say) is too late to stop the run:
            # it ends as it would have, so that an exit of 130/143/129 always means the old file is untouched.
            report = PassReport.of(command, call, results, writer=writer, seconds=time.perf_counter() - started)
            if as_json:
                typer.echo(render.to_json(report.to_dict()))
            else:
                render.print_report(report, render.console(stderr=output == "-", plain=plain))


@app.command(cls=CnncliCommand, epilog=_FORWARD_EXAMPLES)
@layer_options()
def forward(source: str = SourceArg, options: dict = None, output: Optional[str] = OutOpt,
            force: bool = ForceOpt, as_json: bool = JsonOpt, plain: bool = PlainOpt) -> None:
    """Run a conv or pool layer forward: Z (conv) or A (pool) from A_prev.

    HDF5 inputs are streamed in batch chunks, so memory stays bounded whatever their size.
    """
    _run("forward", source, output, force, as_json, options, plain)


@app.command(cls=CnncliCommand, epilog=_BACKWARD_EXAMPLES)
@layer_options(grad=True)
def backward(source: str = SourceArg, options: dict = None, output: Optional[str] = OutOpt,
             force: bool = ForceOpt, as_json: bool = JsonOpt, plain: bool = PlainOpt) -> None:
    """Run a conv or pool layer backward: dA_prev (and dW, db for conv) from the upstream gradient.

    --grad is dZ (conv) or dA (pool), shaped like the forward output; a case file may carry it.
    """
    _run("backward", source, output, force, as_json, options, plain)
