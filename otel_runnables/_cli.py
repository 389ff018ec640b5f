"""``otel-runnables``: recent runs, live progress trees and custom events, from the
embedded store (default), Jaeger or Tempo."""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import socket
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.live import Live

from otel_runnables import progress
from otel_runnables._errors import FollowTimeoutError, RunFailedError, RunLostError, RunNotFoundError
from otel_runnables._store import default_store_path
from otel_runnables._store.schema import StoreError, connect_writer
from otel_runnables.progress import render
from otel_runnables.progress.query import parse_id

__all__ = ["main"]

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_BACKEND, EXIT_NOT_FOUND, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_RUN_LOST, EXIT_GAVE_UP = 5, 6

_EPILOG = """exit codes: 0 ok; 1 the followed run ended with an error; 2 bad arguments (id, backend);
3 backend unreachable, failing or answering malformed data, or a store file that cannot be used;
4 no such trace or run (or no store file yet); 5 the followed run was lost (its process stopped
before it ended); 6 --idle-timeout ran out (nothing new recorded, the run not ended); 130 interrupted.

environment: OTEL_RUNNABLES_STORE (the local store file; also where instrumented programs write)."""


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    headers = {}
    for header in args.header or ():
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise progress.UnknownBackendError(f"--header {header!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    options: dict[str, Any] = {"timeout": args.timeout}
    if args.backend == "local":
        options["path"] = args.store
    else:
        options.update(
            url=args.url,
            headers=headers,
            ca_file=args.ca_file,
            insecure_skip_verify=args.insecure,
            max_response_bytes=int(args.max_response_mb * 1024 * 1024),
        )
        if args.client_cert:
            options.update(client_cert=args.client_cert, client_key=args.client_key)
    return options


def _backend(args: argparse.Namespace) -> progress.Backend:
    options = _backend_options(args)
    if args.backend == "local":
        return progress.make_backend("local", path=options["path"])
    return progress.make_backend(args.backend, **options)


def _json_out(value: Any) -> None:
    print(render.json_text(value))  # a tree of any depth


class NoStoreError(progress.TraceNotFoundError):
    """The local store file does not exist (yet)."""


def _store_path(args: argparse.Namespace) -> Path | None:
    return Path(args.store).expanduser() if args.store else default_store_path()


def _require_store(args: argparse.Namespace) -> None:
    """A local store file to read must exist: reading a missing one is not "no runs"."""
    if args.backend != "local":
        return
    path = _store_path(args)
    if path is not None and not path.exists():
        raise NoStoreError(
            f"there is no store file {path}: nothing was stored there yet "
            "(instrumented programs write where OTEL_RUNNABLES_STORE says; --store reads another)"
        )


# -- commands -----------------------------------------------------------------------------


def cmd_runs(args: argparse.Namespace, console: Console) -> int:
    _require_store(args)
    summaries = progress.runs(args.last, _backend(args))
    if args.json:
        _json_out([render.summary_json(summary) for summary in summaries])
    elif summaries:
        console.print(render.runs_table(summaries))
    else:
        console.print("no runs yet", style="dim")
    return EXIT_OK


def _exit_for(tree: progress.RunTree) -> int:
    return EXIT_RUN_FAILED if any(root.status == "error" for root in tree.roots) else EXIT_OK


def _follow_options(args: argparse.Namespace) -> dict[str, Any]:
    """What ``otel_runnables.follow`` needs to read where ``args`` say."""
    options = {"backend": args.backend, **_backend_options(args), "timeout": args.idle_timeout}
    if args.backend != "local":
        options["interval"] = args.interval
        options["request_timeout"] = args.timeout
    return options


def _say_waiting(options: dict[str, Any], run_or_trace: str, wait: float) -> None:
    """Tell at once (on stderr) when the run is not known yet, and how long it is waited for."""
    if wait <= 0:
        return
    reading = {
        key: value
        for key, value in options.items()
        if key not in ("backend", "interval", "timeout", "request_timeout")
    }
    if "request_timeout" in options:
        reading["timeout"] = options["request_timeout"]
    try:
        progress.get(run_or_trace, progress.make_backend(options["backend"], **reading))
    except progress.TraceNotFoundError:
        print(
            f"otel-runnables: {run_or_trace} is not known yet; "
            f"waiting up to {wait:g} s for it to appear (--wait)",
            file=sys.stderr,
            flush=True,
        )


def follow(
    options: dict[str, Any],
    run_or_trace: str,
    *,
    wait: float,
    console: Console,
    json_lines: bool = False,
    say_waiting: bool = True,
) -> tuple[progress.RunTree, int]:
    """Show the tree as ``otel_runnables.follow`` reads it, until the followed run
    ends: a live view, or (``json_lines``) one ``progress --json`` tree per line
    each time it changes. The exit code says how the run ended."""
    from otel_runnables import follow_sync

    if say_waiting:
        _say_waiting(options, run_or_trace, wait)
    followed = follow_sync(run_or_trace, wait=wait, keep_events=True, **options)
    shown = ""

    def show_json() -> None:
        nonlocal shown
        snapshot = render.tree_json(followed.tree())
        line = render.json_text(snapshot, indent=None)  # compared as text: nested dicts compare recursively
        if snapshot["runs"] and line != shown:
            shown = line
            print(line, flush=True)

    code = EXIT_OK
    live = (
        None if json_lines else Live(render.tree_view(followed.tree()), console=console, refresh_per_second=8)
    )
    try:
        if live is not None:
            live.start()
        changed = False
        while True:
            try:
                event = followed.next_event_sync(0 if changed else 0.25)
            except StopIteration:
                break
            except RunFailedError:
                code = EXIT_RUN_FAILED
                break
            except RunLostError:
                code = EXIT_RUN_LOST
                break
            if event is not None:
                changed = True
                continue
            if json_lines and changed:
                show_json()
            elif live is not None:
                live.update(render.tree_view(followed.tree()))  # durations go on
            changed = False
    finally:
        followed.close()
        if live is not None:
            live.update(render.tree_view(followed.tree()))
            live.stop()
            if not console.is_terminal:
                console.line()  # a terminal's live view ends its last line itself; piped output must too
    if json_lines:
        show_json()
    return followed.tree(), code


def cmd_progress(args: argparse.Namespace, console: Console) -> int:
    if args.follow:
        _, code = follow(
            _follow_options(args), args.id, wait=args.wait, console=console, json_lines=args.json
        )
        return code
    parse_id(args.id)  # a bad id is a bad argument, whatever the store
    _require_store(args)
    tree = progress.get(args.id, _backend(args))
    if args.json:
        _json_out(render.tree_json(tree))
    else:
        console.print(render.tree_view(tree))
    return EXIT_OK


def _follow_events(args: argparse.Namespace, console: Console) -> int:
    """Each custom event of the run's subtree (or trace) as it is recorded: a line
    of text, or (``--json``) one JSON object per line, as ``events --json``."""
    from otel_runnables import follow_sync

    options = _follow_options(args)
    _say_waiting(options, args.id, args.wait)
    names: dict[str, str] = {}
    code = EXIT_OK
    with follow_sync(args.id, wait=args.wait, **options) as followed:
        try:
            for event in followed:
                if event["event"].endswith("_start"):
                    names[event["run_id"]] = event["name"]
                if event["event"] != "on_custom_event":
                    continue
                shown = progress.RunEvent(
                    event["name"],
                    followed.last_event_time_ns or 0,
                    event["data"],
                    run_id=event["run_id"],
                    run_name=names.get(event["run_id"]),
                )
                if args.json:
                    print(json.dumps(render.event_json(shown), ensure_ascii=False, default=str), flush=True)
                else:
                    console.print(render.event_line(shown), markup=False, highlight=False, soft_wrap=True)
        except RunFailedError:
            code = EXIT_RUN_FAILED
        except RunLostError:
            code = EXIT_RUN_LOST
    return code


def cmd_events(args: argparse.Namespace, console: Console) -> int:
    if args.follow:
        return _follow_events(args, console)
    parse_id(args.id)
    _require_store(args)
    tree = progress.get(args.id, _backend(args))
    events, not_stored = progress.tree_events(tree), progress.events_not_stored(tree)
    if args.json:
        for event in events:
            print(json.dumps(render.event_json(event), ensure_ascii=False, default=str))
        if not_stored:  # said beside the JSON lines, not among them
            print(f"otel-runnables: {render.not_stored_text(not_stored)}", file=sys.stderr)
        return EXIT_OK
    if events:
        console.print(render.events_table(events, with_runs=len({event.run_id for event in events}) > 1))
    else:
        console.print("no custom events", style="dim")
    if not_stored:
        console.print(render.not_stored_text(not_stored), style="dim")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from otel_runnables import _demo as demo
    from otel_runnables import _telemetry as telemetry
    from otel_runnables._runs import new_run_id

    path = _store_path(args)
    if path is None:
        console.print("the embedded store is off (OTEL_RUNNABLES_STORE); the demo needs it", style="red")
        return EXIT_USAGE
    connect_writer(path).close()  # a store that cannot be used says so now, not after the job
    setup = telemetry.configure(store=path, service_name=demo.service_name())
    run_id = new_run_id()  # a v7 id like every other run's
    failure: list[BaseException] = []

    def work() -> None:
        try:
            demo.run_job(run_id, steps=args.steps, delay=args.delay)
        except BaseException as exc:  # shown after the tree; the follower sees the error status
            failure.append(exc)

    worker = threading.Thread(target=work, name="demo-job", daemon=True)
    console.print(
        f"running the demo job as service [bold]{demo.resource_service_name(setup)}[/]; "
        f"its spans go to [bold]{setup.store_path}[/]",
        soft_wrap=True,
    )
    worker.start()
    options = {"backend": "local", "path": str(setup.store_path)}
    try:
        tree, _ = follow(options, str(run_id), wait=30, console=console, say_waiting=False)
    except KeyboardInterrupt:
        print(
            f"interrupted: the demo job stops here; what it recorded stays in the store "
            f"(otel-runnables progress {run_id})",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    worker.join()
    telemetry.force_flush()
    steps = {child.name: child.run_id for root in tree.roots for child in root.children}
    store = f" --store {shlex.quote(args.store)}" if args.store else ""  # the other commands read it too
    console.print(
        f"\nrun id                  {run_id}\n"
        f"see it again:           otel-runnables progress{store} {run_id}\n"
        f"the transform's events: otel-runnables events{store} {steps.get('transform', run_id)}\n"
        f"recent runs:            otel-runnables runs{store}\n"
        f"in a browser:           otel-runnables serve{store}, then http://127.0.0.1:8321/runs/{run_id}",
        soft_wrap=True,
        highlight=False,
    )
    if failure:
        console.print(f"the job failed: {failure[0]!r}", style="red")
    return _exit_for(tree)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket for ``host`` (a name, IPv4 or IPv6 address) and ``port`` (0: any free one)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, reuse_port=False)


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    try:
        import uvicorn
    except ImportError:
        print(
            "otel-runnables: serve needs an ASGI server; install it with: pip install 'otel-runnables[web]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from otel_runnables import _web_security as web_security
    from otel_runnables import web

    if not web_security.is_loopback(args.host):
        print(
            f"otel-runnables: warning: serving on {args.host}, not a loopback address: anyone who can "
            "reach it can read your runs, their inputs, outputs and events",
            file=sys.stderr,
            flush=True,
        )
    app = web.create_app(args.backend, **_backend_options(args))
    try:
        listening = _listening_socket(args.host, args.port)
    except OSError as exc:
        print(f"otel-runnables: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    host, port = listening.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if args.backend == "local":
        from otel_runnables._store import default_store_path

        source = f"the store {args.store or default_store_path()}"
    else:
        source = f"{args.backend} at {args.url or 'its default URL'}"
    print(f"serving runs from {source} on http://{shown}:{port}/  (Ctrl-C stops)", flush=True)
    config = uvicorn.Config(
        web_security.guarded(app, host=args.host),
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,  # open event streams would hold the shutdown forever
    )
    uvicorn.Server(config).run(sockets=[listening])
    return EXIT_OK


# -- arguments ----------------------------------------------------------------------------


Number = TypeVar("Number", int, float)


def _parsed(
    text: str, parse: Callable[[str], Number], accepts: Callable[[Number], bool], expected: str
) -> Number:
    """``parse(text)`` when it parses and ``accepts`` the value; else argparse's
    error, naming what was ``expected``."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not accepts(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    return _parsed(text, float, lambda value: math.isfinite(value) and value > 0, "a number of seconds > 0")


def _seconds_or_zero(text: str) -> float:
    return _parsed(text, float, lambda value: math.isfinite(value) and value >= 0, "a number of seconds >= 0")


def _positive_megabytes(text: str) -> float:
    return _parsed(
        text,
        float,
        lambda value: math.isfinite(value) and value * 1024 * 1024 >= 1,
        "a positive number of MiB",
    )


def _port(text: str) -> int:
    return _parsed(text, int, lambda value: 0 <= value <= 65535, "a port number 0-65535")


def _positive_int(text: str) -> int:
    return _parsed(text, int, lambda value: value >= 1, "a positive whole number")


def _idle_timeout_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--idle-timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="with --follow: give up (exit 6) when nothing new is recorded for the run for this long; "
        "from Jaeger or Tempo the only end of a run whose process was killed (default: never)",
    )


def _parser() -> argparse.ArgumentParser:
    backend = argparse.ArgumentParser(add_help=False)
    group = backend.add_argument_group("backend")
    group.add_argument(
        "--backend", choices=progress.BACKENDS, default="local", help="where to read (default: local)"
    )
    group.add_argument(
        "--url", help="Jaeger (default http://localhost:16686) or Tempo (http://localhost:3200)"
    )
    group.add_argument("--header", action="append", metavar="'NAME: VALUE'", help="HTTP header, e.g. auth")
    group.add_argument(
        "--timeout", type=_positive_seconds, default=10.0, help="seconds for each whole request (default 10)"
    )
    group.add_argument(
        "--max-response-mb",
        type=_positive_megabytes,
        default=64.0,
        help="refuse an answer larger than this many MiB (default 64)",
    )
    group.add_argument("--ca-file", help="CA bundle for https")
    group.add_argument("--client-cert", help="client certificate for mutual TLS")
    group.add_argument("--client-key", help="its key")
    group.add_argument("--insecure", action="store_true", help="skip TLS verification")
    group.add_argument(
        "--store", help="the local store file (default: OTEL_RUNNABLES_STORE or the user data dir)"
    )

    parser = argparse.ArgumentParser(
        prog="otel-runnables",
        description="Runs, live progress and custom events of otel_runnables traces.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    runs = commands.add_parser("runs", parents=[backend], help="recent root runs", epilog=_EPILOG)
    runs.add_argument("--last", type=_positive_int, default=10, help="how many (default 10)")
    runs.add_argument("--json", action="store_true", help="a JSON list")
    runs.set_defaults(handler=cmd_runs)

    show = commands.add_parser("progress", parents=[backend], help="a run tree with progress", epilog=_EPILOG)
    show.add_argument("id", help="a trace id (hex) or a run id (UUID)")
    show.add_argument("--follow", "-f", action="store_true", help="follow the run live until it ends")
    show.add_argument(
        "--interval",
        type=_positive_seconds,
        default=1.0,
        help="with --follow: seconds between reads of Jaeger or Tempo (default 1; the store is tailed)",
    )
    show.add_argument(
        "--wait",
        type=_seconds_or_zero,
        default=30.0,
        help="seconds to wait for the run to appear (default 30)",
    )
    _idle_timeout_option(show)
    show.add_argument(
        "--json",
        action="store_true",
        help="the tree as JSON; with --follow, JSON Lines: the whole tree again on one line at each change",
    )
    show.set_defaults(handler=cmd_progress)

    events = commands.add_parser(
        "events", parents=[backend], help="the custom events of a run or a trace", epilog=_EPILOG
    )
    events.add_argument("id", help="a run id (UUID): its events; a trace id (hex): those of all its runs")
    events.add_argument("--json", action="store_true", help="JSON Lines")
    events.add_argument(
        "--follow", "-f", action="store_true", help="print each event as it is recorded, until the run ends"
    )
    events.add_argument(
        "--interval",
        type=_positive_seconds,
        default=1.0,
        help="with --follow: seconds between reads of Jaeger or Tempo (default 1)",
    )
    events.add_argument(
        "--wait",
        type=_seconds_or_zero,
        default=30.0,
        help="with --follow: seconds to wait for the run to appear (default 30)",
    )
    _idle_timeout_option(events)
    events.set_defaults(handler=cmd_events)

    serve = commands.add_parser(
        "serve",
        parents=[backend],
        help="the web view and its API (runs, trees, live events over SSE); needs the web extra",
        epilog=_EPILOG,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8321, help="port (default 8321; 0: any free port)")
    serve.set_defaults(handler=cmd_serve)

    demo = commands.add_parser("demo", help="run a demo job and follow its progress live")
    demo.add_argument("--steps", type=int, default=8, help="chunks the transform step works through")
    demo.add_argument("--delay", type=float, default=0.4, help="seconds per chunk")
    demo.add_argument(
        "--store", help="the store file to write (default: OTEL_RUNNABLES_STORE or the user data dir)"
    )
    demo.set_defaults(handler=cmd_demo)
    return parser


def _output_closed() -> int:
    """The reader of our output went away (``| head``): stop quietly, with no
    traceback now or when the interpreter flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no file: nothing will flush to it
        pass
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # piped output is not wrapped at 80 columns: ids stay whole
    console = Console() if sys.stdout.isatty() else Console(width=200)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        code: int = args.handler(args, console)
        sys.stdout.flush()
    except BrokenPipeError:
        return _output_closed()
    except (StoreError, sqlite3.Error) as exc:
        what = (
            str(exc)
            if isinstance(exc, StoreError)
            else f"the store {_store_path(args)} cannot be read ({exc})"
        )
        errors.print(f"otel-runnables: {what}", markup=False)
        return EXIT_BACKEND
    except KeyboardInterrupt:
        errors.print("interrupted")
        return EXIT_INTERRUPTED
    except (progress.InvalidIdError, progress.UnknownBackendError, progress.InvalidOptionError) as exc:
        errors.print(f"otel-runnables: {exc}", markup=False)
        return EXIT_USAGE
    except (progress.TraceNotFoundError, RunNotFoundError) as exc:
        errors.print(f"otel-runnables: {exc}", markup=False)
        return EXIT_NOT_FOUND
    except FollowTimeoutError as exc:
        errors.print(f"otel-runnables: {exc} (--idle-timeout)", markup=False)
        return EXIT_GAVE_UP
    except progress.BackendError as exc:
        errors.print(f"otel-runnables: {exc}", markup=False)
        return EXIT_BACKEND
    return code


if __name__ == "__main__":
    sys.exit(main())
