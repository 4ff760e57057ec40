"""One command's run: hooks that store rows as they come, log to stderr and draw progress; then the
verb's view of its result on stdout, and exit 1 when the result lists failures.

While the verb runs, whatever else writes to stdout or stderr (runtimes, third-party libraries) goes to the
run's log file (:mod:`fcbench.cli.capture`): stdout holds the verb's data only, and stderr fcbench's own lines.
Every string from a user or a runtime is escaped before rich sees it, so ``[red]`` in a path stays as it is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any

from fcbench.errors import FcbenchError
from fcbench.hooks import Hooks


class _Stores:
    """Open stores lazily (a command that fails before measuring anything creates no file) and keep
    them open for the command's length; every batch of rows is written the moment it arrives."""

    def __init__(self, default: str | None) -> None:
        self.default = default
        self.open: dict[str, Any] = {}

    def add(self, path: str | None, rows: list[Any]) -> None:
        from fcbench.results.store import DEFAULT_STORE, Store

        key = str(path or self.default or DEFAULT_STORE)
        if key not in self.open:
            self.open[key] = Store(key)
        self.open[key].add_many(rows)

    def close(self) -> None:
        for s in self.open.values():
            s.close()


class _Progress:
    def __init__(self, console) -> None:
        self.console = console
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __call__(self, task: str, done: int, total: int, info: str) -> None:
        if self.bar is None:
            from fcbench.ui import progress

            self.bar = progress(self.console)
            self.bar.start()
        if task not in self.tasks:
            from fcbench.ui import plain

            self.tasks[task] = self.bar.add_task(plain(task), total=total, info="")
        self.bar.update(self.tasks[task], completed=done, total=total, info=info)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
            self.tasks = {}


def show(verb, result: Any, fmt: str, out: IO[str] | None = None) -> None:
    """Print a verb's view of a result on ``out`` (stdout): rich renderables on a terminal-width console, text
    as it is."""
    import click

    from fcbench.ui import stdout_console

    render = verb.renderer()
    if render is None or result is None:
        return
    console = None
    for item in render(result, fmt):
        if isinstance(item, str):
            click.echo(item, nl=False, file=out)
        else:
            console = console or stdout_console(out)
            console.print(item)
    if out is not None:
        out.flush()


def _on_event(say, progress: _Progress, t0: float, out: IO[str] | None):
    """What the terminal shows while a verb runs, by event kind. ``say`` prints a line as it is (no markup)."""

    def handle(kind: str, payload: Any) -> None:
        if kind == "cell":
            c = payload
            if c.status == "ok":
                say(f"{c.backend} {Path(c.artifact).name}: p50 {c.stats.p50_ms:.3f} ms")
            else:
                say(f"{c.backend} {Path(c.artifact).name}: {c.status}: {c.reason}")
        elif kind == "outcome":
            say(f"{payload.format}: {payload.status} {payload.reason}".rstrip())
        elif kind == "eval-cell" and payload.get("status") != "ok":
            say(f"{payload['artifact']} on {payload['backend']}: {payload['status']}: {payload['reason']}")
        elif kind == "assumed":
            path, what = payload
            say(f"{Path(path).name}: no manifest; assumed " + "; ".join(what))
        elif kind == "unreadable":
            path, why = payload
            say(f"--images: {path} cannot be decoded ({why}); going on without it")
        elif kind == "step":
            from fcbench.verbs import get

            progress.stop()
            say(f"step {payload.index}/{payload.total} {payload.step.verb} done ({time.perf_counter() - t0:.0f} s)")
            show(get(payload.step.verb), payload.result, payload.step.format, out)

    return handle


def run_verb(verb, cfg: Any, fmt: str, store: str | None) -> int:
    from fcbench.cli.capture import Capture, log_path
    from fcbench.results.context import RunContext
    from fcbench.ui import plain, stderr_console

    if verb.stores:  # a store that cannot take rows fails now, before any work (nothing is created yet;
        # a database URL: its server is reached)
        from fcbench.results.store import DEFAULT_STORE, check_store

        check_store(store or DEFAULT_STORE)
    if getattr(cfg, "worker_logs", "unset") is None:  # a failed bench worker's output is kept beside the store
        from fcbench.results.store import local_dir

        cfg.worker_logs = str(local_dir(store) / "worker-logs")
    ctx = RunContext()
    if verb.stores:  # verbs that look things up in the store (distill's teacher by name) read it here
        from fcbench.results.store import DEFAULT_STORE

        ctx.store = str(store or DEFAULT_STORE)
    capture = Capture(log_path(store, ctx.run_id))
    failed: list[str] = []
    ok = usage = False
    try:
        with capture:
            err = stderr_console(capture.err)

            def say(text: str) -> None:
                err.log(plain(text))

            stores = _Stores(store)
            progress = _Progress(err)
            t0 = time.perf_counter()
            hooks = Hooks(on_rows=lambda rows: stores.add(None, rows), on_rows_to=stores.add, on_log=say,
                          on_progress=progress, on_event=_on_event(say, progress, t0, capture.out))
            try:
                result = verb.runner()(cfg, ctx, hooks)
            finally:
                progress.stop()
                stores.close()
            if verb.name == "run" and result is not None:
                say(f"recipe {result.recipe} finished in {time.perf_counter() - t0:.0f} s; run id {result.run_id}")
            show(verb, result, fmt, capture.out)
            check = getattr(result, "failures", None)
            failed = check() if callable(check) else []
            if getattr(result, "verdict", ""):
                err.log(("[red]FAIL[/red]: " if failed else "ok: ") + plain(result.verdict))
            elif failed:
                err.log(f"[red]{len(failed)} failed[/red]: " + plain("; ".join(failed)))
            ok = True
    except FcbenchError:
        usage = True  # bad input is one line on stderr (the caller prints it); the log is kept unannounced
        raise
    finally:
        if capture.kept is not None and not usage:
            _say_log(capture, ok and not failed)
    return 1 if failed else 0


def _say_log(capture, quiet: bool) -> None:
    """One stderr line naming the run's log, when anything was written to it."""
    from fcbench.ui import plain, stderr_console

    what = f"{capture.lines} line{'s' if capture.lines != 1 else ''} of runtime output"
    line = f"{what} in {capture.kept}" if quiet else f"{what} (may say why) in {capture.kept}"
    stderr_console().log(plain(line), style="dim" if quiet else "")
