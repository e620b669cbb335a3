"""The Typer app, and the one place where exceptions become exit codes.

Exit codes: 0 success; 1 a gradient check failed; 2 bad usage or bad input;
3 an internal error (a bug: please report it, with ``--debug``'s traceback);
130 interrupted.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Optional

import typer
from typer.core import TyperGroup

from ..errors import CnncliError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _State:
    debug: bool = bool(os.environ.get("CNNCLI_DEBUG"))


state = _State()


def _error_line(message: str) -> None:
    sys.stderr.write(f"cnncli: error: {message}\n")
    sys.stderr.flush()


class CnncliGroup(TyperGroup):
    """Runs a command and maps every exception to one stderr line and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        state.debug = bool(os.environ.get("CNNCLI_DEBUG"))  # per run: one run's --debug must not leak into the next
        if "--debug" in args:  # accepted anywhere on the line, not only before the command
            args.remove("--debug")
            state.debug = True
        try:
            rv = super().main(args=args, prog_name=prog_name or "cnncli", complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else EXIT_OK
            if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C into a silent return of 130
                _error_line("interrupted")
        except typer.Exit as exc:
            code = exc.exit_code
            if code == EXIT_INTERRUPTED:
                _error_line("interrupted")
        except typer.TyperException as exc:  # usage errors: bad option, missing argument, bad value
            if type(exc).__name__ == "NoArgsIsHelpError":  # help was printed: nothing went wrong
                return _finish(EXIT_OK, standalone_mode)
            ctx = getattr(exc, "ctx", None)
            where = f"cnncli {ctx.info_name}" if ctx is not None and ctx.parent is not None else "cnncli"
            _error_line(exc.format_message().replace("\n", " ") + f" (see '{where} --help')")
            code = exc.exit_code
        except (KeyboardInterrupt, typer.Abort):
            _error_line("interrupted")
            code = EXIT_INTERRUPTED
        except CnncliError as exc:
            if state.debug:
                traceback.print_exc()
            _error_line(str(exc))
            code = EXIT_USAGE
        except BrokenPipeError:
            # The reader of our stdout went away (e.g. `| head`): not an error of ours. Point
            # fd 1 at /dev/null so the interpreter's final flush cannot fail again.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            code = EXIT_OK
        except OSError as exc:
            # Files the user named are checked by the loaders; what is left is the environment
            # (a full disk, a closed terminal, permissions): bad circumstances, not a bug.
            what = exc.strerror or str(exc)
            target = f" ({exc.filename})" if exc.filename else " (writing the output)"
            _error_line(f"cannot complete: {what}{target}")
            code = EXIT_USAGE
        except MemoryError as exc:
            # Nearly always hyperparameters or shapes far larger than meant (pad 100000).
            _error_line(f"not enough memory for this layer call ({exc}); check the pad, f, "
                        "stride and batch size")
            code = EXIT_USAGE
        except Exception as exc:  # a bug: say so in one line, traceback only on request
            if state.debug:
                traceback.print_exc()
            _error_line(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)")
            code = EXIT_INTERNAL
        return _finish(code, standalone_mode)


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
    add_completion=False,
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


def main() -> None:
    """Console-script entry point."""
    typer.main.get_command(app).main(prog_name="cnncli")
