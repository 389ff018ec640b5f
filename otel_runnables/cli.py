"""``otel-runnables``: recent runs, live progress trees and custom events, from the
embedded store (default), Jaeger or Tempo."""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.live import Live

from otel_runnables import progress
from otel_runnables.progress import render

__all__ = ["main"]

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_BACKEND, EXIT_NOT_FOUND, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

_EPILOG = """exit codes: 0 ok; 1 the followed run ended with an error; 2 bad arguments (id, backend);
3 backend unreachable, failing or answering malformed data; 4 no such trace or run; 130 interrupted.

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
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


# -- commands -----------------------------------------------------------------------------


def cmd_runs(args: argparse.Namespace, console: Console) -> int:
    summaries = progress.runs(args.last, _backend(args))
    if args.json:
        _json_out([render.summary_json(summary) for summary in summaries])
    elif summaries:
        console.print(render.runs_table(summaries))
    else:
        console.print("no runs yet", style="dim")
    return EXIT_OK


def _wait_for_tree(
    backend: progress.Backend, run_or_trace: str, wait: float, *, say_waiting: bool = True
) -> progress.RunTree:
    """The tree, waiting up to ``wait`` seconds for a job that is just starting
    (saying so on stderr at once, unless ``say_waiting`` is False)."""
    deadline = time.monotonic() + wait
    told = not say_waiting
    while True:
        try:
            return progress.get(run_or_trace, backend)
        except progress.TraceNotFoundError:
            if time.monotonic() >= deadline:
                raise
            if not told:
                print(
                    f"otel-runnables: {run_or_trace} is not known yet; "
                    f"waiting up to {wait:g} s for it to appear (--wait)",
                    file=sys.stderr,
                    flush=True,
                )
                told = True
            time.sleep(0.2)


def _finished(tree: progress.RunTree) -> bool:
    return bool(tree.roots) and all(root.status != "running" for root in tree.roots)


def _exit_for(tree: progress.RunTree) -> int:
    return EXIT_RUN_FAILED if any(root.status == "error" for root in tree.roots) else EXIT_OK


def follow(
    backend: progress.Backend,
    run_or_trace: str,
    *,
    interval: float,
    wait: float,
    console: Console,
    say_waiting: bool = True,
) -> progress.RunTree:
    """Redraw the tree every ``interval`` seconds until every root run has ended."""
    tree = _wait_for_tree(backend, run_or_trace, wait, say_waiting=say_waiting)
    try:
        with Live(render.tree_view(tree), console=console, refresh_per_second=8, transient=False) as live:
            while not _finished(tree):
                time.sleep(interval)
                try:
                    tree = progress.get(run_or_trace, backend)
                except progress.BackendUnavailableError as exc:
                    live.console.print(f"[yellow]{exc}; retrying[/]")
                    continue
                live.update(render.tree_view(tree))
    finally:
        if not console.is_terminal:
            console.line()  # a terminal's live view ends its last line itself; piped output must too
    return tree


def cmd_progress(args: argparse.Namespace, console: Console) -> int:
    backend = _backend(args)
    if args.follow:
        tree = follow(backend, args.id, interval=args.interval, wait=args.wait, console=console)
        if args.json:
            _json_out(render.tree_json(tree))
        return _exit_for(tree)
    tree = _wait_for_tree(backend, args.id, 0)
    if args.json:
        _json_out(render.tree_json(tree))
    else:
        console.print(render.tree_view(tree))
    return EXIT_OK


def cmd_events(args: argparse.Namespace, console: Console) -> int:
    events = progress.events(args.id, _backend(args))
    if args.json:
        for event in events:
            print(json.dumps(render.event_json(event), ensure_ascii=False, default=str))
    elif events:
        console.print(render.events_table(events, with_runs=len({event.run_id for event in events}) > 1))
    else:
        console.print("no custom events", style="dim")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from otel_runnables import demo, telemetry
    from otel_runnables.runs import new_run_id

    setup = telemetry.configure(store=args.store or True, service_name=demo.service_name())
    if setup.store_path is None:
        console.print("the embedded store is off (OTEL_RUNNABLES_STORE); the demo needs it", style="red")
        return EXIT_USAGE
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
    backend = progress.make_backend("local", path=str(setup.store_path))
    interval = min(0.25, max(args.delay, 0.05))
    try:
        tree = follow(backend, str(run_id), interval=interval, wait=30, console=console, say_waiting=False)
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
    console.print(
        f"\nrun id                  {run_id}\n"
        f"see it again:           otel-runnables progress {run_id}\n"
        f"the transform's events: otel-runnables events {steps.get('transform', run_id)}\n"
        "recent runs:            otel-runnables runs",
        soft_wrap=True,
        highlight=False,
    )
    if failure:
        console.print(f"the job failed: {failure[0]!r}", style="red")
    return _exit_for(tree)


# -- arguments ----------------------------------------------------------------------------


def _seconds(text: str, *, zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds {'>= 0' if zero else '> 0'}, got {text!r}"
        )
    return value


def _positive_seconds(text: str) -> float:
    return _seconds(text, zero=False)


def _seconds_or_zero(text: str) -> float:
    return _seconds(text, zero=True)


def _positive_megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value * 1024 * 1024 < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of MiB, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


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
    show.add_argument("--follow", "-f", action="store_true", help="redraw until the run ends")
    show.add_argument(
        "--interval", type=_positive_seconds, default=1.0, help="seconds between redraws (default 1)"
    )
    show.add_argument(
        "--wait",
        type=_seconds_or_zero,
        default=30.0,
        help="seconds to wait for the run to appear (default 30)",
    )
    show.add_argument("--json", action="store_true", help="the tree as JSON (with --follow: once it ends)")
    show.set_defaults(handler=cmd_progress)

    events = commands.add_parser(
        "events", parents=[backend], help="the custom events of a run or a trace", epilog=_EPILOG
    )
    events.add_argument("id", help="a run id (UUID): its events; a trace id (hex): those of all its runs")
    events.add_argument("--json", action="store_true", help="JSON Lines")
    events.set_defaults(handler=cmd_events)

    demo = commands.add_parser("demo", help="run a demo job and follow its progress live")
    demo.add_argument("--steps", type=int, default=8, help="chunks the transform step works through")
    demo.add_argument("--delay", type=float, default=0.4, help="seconds per chunk")
    demo.add_argument(
        "--store", help="the store file to write (default: OTEL_RUNNABLES_STORE or the user data dir)"
    )
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # piped output is not wrapped at 80 columns: ids stay whole
    console = Console() if sys.stdout.isatty() else Console(width=200)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        code: int = args.handler(args, console)
    except KeyboardInterrupt:
        errors.print("interrupted")
        return EXIT_INTERRUPTED
    except (progress.InvalidIdError, progress.UnknownBackendError, progress.InvalidOptionError) as exc:
        errors.print(f"otel-runnables: {exc}", markup=False)
        return EXIT_USAGE
    except progress.TraceNotFoundError as exc:
        errors.print(f"otel-runnables: {exc}", markup=False)
        return EXIT_NOT_FOUND
    except progress.BackendError as exc:
        errors.print(f"otel-runnables: {exc}", markup=False)
        return EXIT_BACKEND
    return code


if __name__ == "__main__":
    sys.exit(main())
