"""The Typer app, and the one place where exceptions become exit codes.

Exit codes: 0 success; 1 a gradient check failed; 2 bad usage or bad input;
3 an internal error (a bug: please report it, with ``--debug``'s traceback);
130 interrupted (SIGINT), 143 terminated (SIGTERM), 129 hung up (SIGHUP). A reader of
standard output that goes away early (``| head``) is not an error of the run: exit 0.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import traceback
from typing import Optional

import typer
from typer.core import TyperGroup

from .. import _startup
from ..errors import ERROR_WIDTH, CnncliError
from .command import adopt, suggest_options

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_PIPE = EXIT_OK  # the reader went away (`| head`): what it read is right; never 1, "a check failed"
#: Signals that end a run cleanly (temporary files removed) with exit 128 + signum, and what they say.
STOP_SIGNALS = {getattr(signal, name): words for name, words in (("SIGTERM", "terminated"), ("SIGHUP", "hung up"))
                if hasattr(signal, name)}


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C (writers remove their temporary files), exit 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _PipeClosed(Exception):
    """EPIPE on standard output, carried past click (which would exit 1) to :meth:`CnncliGroup.main`."""


class _State:
    debug: bool = bool(os.environ.get("CNNCLI_DEBUG"))
    #: The exit code a command's answer already decided (1: a check failed) before it is printed: a reader that
    #: leaves during the printing (`| head`) must not turn a FAIL into exit 0.
    verdict: int = 0
    #: A Ctrl-C whose KeyboardInterrupt Python swallowed (see :func:`_unraisable`): the run stops at its next check.
    interrupted: bool = False


state = _State()

#: An error line longer than this is cut in its middle (a 50 KB attribute value echoed whole helps nobody;
#: a value of shape's 1,000-digit numbers, the longest a user may give, stays whole).
MAX_ERROR_CHARS = 10_000


def _error_line(message: str) -> None:
    if sys.stderr is None:  # started with stderr closed (2>&-): the exit code is all there is
        return
    from ..errors import printable  # NOTE: errors imports nothing: no cost on the start-up path

    message = printable(message)  # a dataset named "a\nb" must not split the line, an ESC not reach the terminal
    if len(message) > MAX_ERROR_CHARS:
        cut = len(message) - MAX_ERROR_CHARS
        message = f"{message[:MAX_ERROR_CHARS - 120]} [... {cut} characters ...] {message[-120:]}"
    try:
        sys.stderr.write(f"cnncli: error: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr full (2>/dev/full) or gone: the exit code still tells
        _reopen(2)


class _ClosedStdin:
    """``sys.stdin`` when the run started with it closed (``<&-``): reading it is an input error, exit 2."""

    #: Readers of text (``shape --from -``) look for this to word their own message.
    closed_at_start = True

    def __getattr__(self, name):
        from ..errors import InputError

        raise InputError("stdin is closed ('<&-'): pipe .npy bytes into '-' or give a file")


def _standard_streams() -> Optional[str]:
    """Occupy closed descriptors 0-2 with /dev/null (no file opened later may take them); the error, if any."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
            _reopen(fd)
    if 0 in closed:
        sys.stdin = _ClosedStdin()
    if 1 in closed:
        return "standard output is closed ('>&-'); redirect it, e.g. >/dev/null"
    return None


def _os_reason(text: str) -> str:
    """An OSError's words in one line (the first)."""
    return (text.splitlines() or ["an error of the system"])[0]


def _reopen(fd: int) -> None:
    """Point descriptor ``fd`` at /dev/null (read-only for stdin): a closed one is then never taken by a file
    opened later, and the interpreter's final flush of a dead stdout or stderr cannot fail again."""
    try:
        null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    except OSError:
        pass


def _closed_pipe_exit(exc: SystemExit) -> bool:
    """Whether ``exc`` is a library's exit 1 on a closed pipe: rich's ``Console.on_broken_pipe`` (Typer's
    --help console) and click's EPIPE handler (``--version``'s echo) exit 1 while handling the EPIPE."""
    cause = exc.__context__
    return exc.code == 1 and isinstance(cause, OSError) and cause.errno == errno.EPIPE


def _raise_terminated(signum, frame):
    raise Terminated(signum)


class CnncliGroup(TyperGroup):
    """Runs a command and maps every exception to one stderr line and an exit code."""

    def get_params(self, ctx):
        return adopt(super().get_params(ctx))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise _PipeClosed() from exc
            raise

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        state.debug = bool(os.environ.get("CNNCLI_DEBUG"))  # per run: one run's --debug must not leak into the next
        state.verdict = EXIT_OK
        if "--debug" in args:  # accepted anywhere on the line, not only before the command
            args.remove("--debug")
            state.debug = True
        closed = _standard_streams()
        if closed:
            _error_line(closed)
            return _finish(EXIT_USAGE, standalone_mode)
        previous = _catch_stop_signals()
        # NOTE: on the main thread only, as the signal handlers (a Ctrl-C reaches no other); the flag is this run's,
        # and an outer run's is given back after it (a run inside another: the tests')
        outer, state.interrupted = state.interrupted, False
        hook = sys.unraisablehook
        if threading.current_thread() is threading.main_thread():
            sys.unraisablehook = _unraisable(hook)
        try:
            _startup.release()
            command = self.commands.get(next((a for a in args if not a.startswith("-")), ""))
            misuse = command is not None and _flag_given_a_value(command.params, args)
            if misuse:  # before parsing: `shape --json true` would read `true` as a LAYER_SPEC
                _error_line(_with_help(misuse, f"cnncli {command.name}"))
                return _finish(EXIT_USAGE, standalone_mode)
            rv = super().main(args=args, prog_name=prog_name or "cnncli", complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else EXIT_OK
            if state.interrupted:  # swallowed after the run's last check: its answer is out, the exit says so
                code = EXIT_INTERRUPTED
            if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C into a silent return of 130
                _error_line("interrupted")
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not at exit: a reader gone by now is a closed pipe like any other
        except (_PipeClosed, BrokenPipeError):
            # The reader of our stdout went away (`| head -c 10`): not an error of ours, so quietly; an answer
            # decided before the printing (a failed check) keeps its code
            _reopen(1)
            code = state.verdict or EXIT_PIPE
        except SystemExit as exc:
            if not _closed_pipe_exit(exc):
                raise
            # the reader of --help or --version went away (`cnncli --help | head -1`), met by Typer's own code
            _reopen(1)
            code = state.verdict or EXIT_PIPE
        except Terminated as exc:
            _error_line(STOP_SIGNALS.get(exc.signum, "stopped by a signal"))
            code = 128 + exc.signum
        except typer.Exit as exc:
            code = EXIT_INTERRUPTED if state.interrupted else exc.exit_code
            if code == EXIT_INTERRUPTED:
                _error_line("interrupted")
        except typer.TyperException as exc:  # usage errors: bad option, missing argument, bad value
            if type(exc).__name__ == "NoArgsIsHelpError":  # help was printed: nothing went wrong
                return _finish(EXIT_OK, standalone_mode)
            ctx = getattr(exc, "ctx", None)
            where = f"cnncli {ctx.info_name}" if ctx is not None and ctx.parent is not None else "cnncli"
            _error_line(_with_help(_usage_message(exc, ctx, args), where))
            code = exc.exit_code
        except (KeyboardInterrupt, typer.Abort):
            _error_line("interrupted")
            code = EXIT_INTERRUPTED
        except CnncliError as exc:
            if state.debug:
                traceback.print_exc()
            _error_line(str(exc))
            code = EXIT_USAGE
        except OSError as exc:
            # Files the user named are checked by the loaders; what is left is the environment
            # (a full disk, a closed terminal, permissions): bad circumstances, not a bug.
            what = _os_reason(exc.strerror or str(exc))
            target = f" ({exc.filename})" if exc.filename else " (writing the output)"
            _error_line(f"cannot complete: {what}{target}")
            code = EXIT_USAGE
        except MemoryError as exc:
            # Nearly always hyperparameters or shapes far larger than meant (pad 100000).
            _error_line(f"not enough memory for this layer call{f' ({exc})' if str(exc) else ''}; check the pad, "
                        "f, stride and batch size")
            code = EXIT_USAGE
        except Exception as exc:  # a bug: say so in one line, traceback only on request
            if state.debug:
                traceback.print_exc()
            _error_line(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)")
            code = EXIT_INTERNAL
        finally:
            _restore_signals(previous)
            sys.unraisablehook = hook
            state.interrupted = outer
        return _finish(code, standalone_mode)


def _with_help(message: str, where: str) -> str:
    """``message`` and a pointer to ``where``'s --help, the pointer only if the line still fits 80 columns."""
    hinted = f"{message} (see '{where} --help')"
    return hinted if len(f"cnncli: error: {hinted}") <= ERROR_WIDTH else message


_BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _usage_message(exc, ctx, args) -> str:
    """Click's message, with the nearest options for an unknown one and the reason a flag's value is refused."""
    message = exc.format_message().replace("\n", " ")
    params = ctx.command.get_params(ctx) if ctx is not None else []
    if type(exc).__name__ == "NoSuchOption":
        known = [o for p in params if getattr(p, "param_type_name", "") == "option" and not getattr(p, "hidden", False)
                 for o in (*p.opts, *p.secondary_opts)]
        near = suggest_options(exc.option_name, known)
        message = exc.message  # click's own "(Possible options: ...)" gives way to ours
        if near:
            message += f"; did you mean {' or '.join(near)}?"
    return _flag_given_a_value(params, args) or message


def _flag_given_a_value(params, args) -> Optional[str]:
    """``--json true``: a flag followed by a yes/no word that is not a file (it would be read as SOURCE)."""
    flags = {o for p in params if getattr(p, "is_flag", False) for o in (*p.opts, *p.secondary_opts)}
    for flag, value in zip(args, args[1:]):
        if flag in flags and value.lower() in _BOOL_WORDS and not os.path.exists(value):
            do = "leave it out" if value.lower() in ("false", "no", "off", "0") else "write it alone"
            return f"{flag} takes no value: for {value!r} {do}"
    return None


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived whose KeyboardInterrupt Python swallowed: called where a run
    can stop (its progress, before its answer is printed), and after it."""
    if state.interrupted:
        raise KeyboardInterrupt


def _unraisable(previous):
    """A ``sys.unraisablehook`` that records a swallowed KeyboardInterrupt instead of printing it (any other
    exception goes to ``previous``).

    A Ctrl-C lands wherever the interpreter is; in a finalizer or a weakref callback (an import's module lock,
    h5py's objects) its KeyboardInterrupt cannot propagate, so Python prints "Exception ignored in ..." and goes
    on: the run finished and printed its answer with exit 0 (seen under load in the start-up test).
    """
    def hook(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            state.interrupted = True
            return
        previous(unraisable)
    return hook


def _catch_stop_signals() -> dict:
    """Make SIGTERM and SIGHUP unwind the run as :class:`Terminated`; the handlers they replace.

    A signal ignored when the run began stays ignored: ``nohup`` ignores SIGHUP so that a logout does not end
    the run (as the startup guard leaves a background job's ignored SIGINT alone)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _raise_terminated) for signum in STOP_SIGNALS
            if signal.getsignal(signum) is not signal.SIG_IGN}


def _restore_signals(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _finish(code: int, standalone_mode: bool) -> int:
    if standalone_mode:
        sys.exit(code)
    return code


def _version_callback(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"cnncli {__version__}")
        raise typer.Exit()


app = typer.Typer(
    cls=CnncliGroup,
    name="cnncli",
    help="CNN layer calculator and gradient checker: shapes, forward/backward passes, gradient checks.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show a traceback on errors."),
) -> None:
    """CNN layer calculator and gradient checker."""
    if debug:
        state.debug = True


def load_app() -> typer.Typer:
    """The app with every command registered (the command modules are imported at the end of this one)."""
    from .. import cli

    cli.app = app  # the name `app` in cnncli.cli is the Typer app (importing this module set it to the module)
    return app


def run() -> None:
    """Run the app on ``sys.argv`` and exit with its code."""
    code = typer.main.get_command(load_app()).main(prog_name="cnncli", standalone_mode=False)
    if code == EXIT_INTERRUPTED:
        # NOTE: a Ctrl-C that landed inside an exec() (dataclasses and namedtuples build their
        # methods with one, e.g. while a command imports its modules) makes CPython kill itself
        # with SIGINT at exit although the app caught it; the outputs are cleaned up by now, so
        # leave with the exit code the app chose.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


# The commands add themselves to `app` (in this order: --help's order). Their modules are light,
# Typer declarations only, so `from cnncli.cli.app import app` always has every command.
from . import shape, passes, gradcheck  # noqa: E402,F401
