"""Open a page in headless Chromium (Debian's ``chromium`` package) and report what a user would see.

A small DevTools-protocol client over ``--remote-debugging-pipe`` (Chromium reads commands on fd 3 and
writes replies and events on fd 4, each a JSON message ended by a NUL byte), so no websocket library is
needed. ``open_page(path)`` loads a local file and returns a ``Page``: the console errors and uncaught
exceptions, every URL the page asked for, the rendered DOM, counts of CSS selectors, and a PNG screenshot.

Tests call ``need_chromium()`` first: it skips, naming the package, when no chromium is installed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def need_chromium() -> str:
    import pytest

    found = chromium_binary()
    if found is None:
        pytest.skip("headless Chromium is not installed here (Debian package 'chromium': "
                    "apt-get install -y --no-install-recommends chromium)")
    return found


@dataclass
class Page:
    url: str
    console_errors: list[str] = field(default_factory=list)  # console.error/assert and uncaught exceptions
    log_errors: list[str] = field(default_factory=list)  # the browser's own error log (failed loads, CSP, ...)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    values: dict[str, Any] = field(default_factory=dict)  # name -> what the page's script gave (``scripts``)
    dom: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # CSS selector -> matching elements
    screenshot: bytes = b""  # PNG

    @property
    def errors(self) -> list[str]:
        return self.console_errors + self.log_errors

    def remote_requests(self) -> list[str]:
        """Requests that would need a network (anything but file:, data:, blob:, about:)."""
        return [u for u in self.requests if not u.startswith(("file:", "data:", "blob:", "about:"))]


class _Pipe:
    """One Chromium process and its DevTools pipe."""

    def __init__(self, binary: str, width: int, height: int) -> None:
        self.profile = tempfile.mkdtemp(prefix="fcbench-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds() -> None:  # in the child: the pipe ends on fds 3 and 4, where Chromium looks
            read_end, write_end = os.dup(to_child_r), os.dup(from_child_w)  # off 3 and 4 first
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        args = [binary, "--headless=new", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--mute-audio", "--hide-scrollbars", f"--window-size={width},{height}"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.log = Path(self.profile) / "chromium.log"  # a file, not a pipe: nobody drains a pipe while we wait
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args + ["about:blank"], preexec_fn=fds, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds``."""
        import select

        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if b"\0" not in self._buf:
                ready, _, _ = select.select([self._from_child], [], [], left)
                if not ready:
                    return
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    return
                self._buf += chunk
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                self.events.append(json.loads(raw))

    def _read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_child], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer on its DevTools pipe")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                self.proc.wait(timeout=10)
                err = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Chromium closed its DevTools pipe (exit {self.proc.returncode}): {err}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def _describe_exception(params: dict[str, Any]) -> str:
    details = params.get("exceptionDetails", {})
    exc = details.get("exception", {})
    return f"uncaught: {exc.get('description') or details.get('text', '')}"


def _describe_console(params: dict[str, Any]) -> str:
    parts = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
    return f"console.{params.get('type')}: {' '.join(parts)}"


def open_page(path: str | Path, selectors: tuple[str, ...] = (), settle: float = 1.0, width: int = 1280,
              height: int = 900, offline: bool = True, full_page: bool = True,
              scripts: dict[str, str] | None = None) -> Page:
    """Load ``path`` (a local file) in headless Chromium with the network switched off (``offline``), wait for
    its load event and ``settle`` seconds more, and return what it showed. ``selectors`` are counted in the
    rendered DOM; each of ``scripts`` (name: a JavaScript expression, run in the page in turn, awaited when it
    gives a promise) puts its JSON value in ``Page.values``."""
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    url = Path(path).resolve().as_uri()
    pipe = _Pipe(binary, width, height)
    page = Page(url)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            pipe.send(f"{domain}.enable", session=session)
        if offline:
            pipe.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                           "uploadThroughput": -1}, session=session)
        pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        pipe.send("Page.navigate", {"url": url}, session=session)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in pipe.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading in 60 s")
            pipe.pump(0.2)
        pipe.pump(settle)
        for sel in selectors:
            found = pipe.send("Runtime.evaluate", {"expression": f"document.querySelectorAll({json.dumps(sel)}).length",
                                                   "returnByValue": True}, session=session)
            page.counts[sel] = int(found["result"]["value"])
        for name, expression in (scripts or {}).items():
            got = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                 "awaitPromise": True}, session=session)
            if "exceptionDetails" in got:
                page.values[name] = {"error": _describe_exception(got)}
            else:
                page.values[name] = got["result"].get("value")
        dom = pipe.send("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                             "returnByValue": True}, session=session)
        page.dom = dom["result"]["value"]
        shot_params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = pipe.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            shot_params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width,
                                                                   "height": min(size["height"], 12000), "scale": 1})
        page.screenshot = base64.b64decode(pipe.send("Page.captureScreenshot", shot_params,
                                                     session=session, timeout=60)["data"])
        pipe.pump(0.1)
    finally:
        pipe.close()
    for e in pipe.events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            page.console_errors.append(_describe_console(params))
        elif method == "Runtime.exceptionThrown":
            page.console_errors.append(_describe_exception(params))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            page.log_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            page.requests.append(params.get("request", {}).get("url", ""))
    return page


def inked_share(png: bytes, tolerance: int = 8) -> float:
    """The share of the screenshot's pixels that differ from its background colour (the most common one)."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    small = img.resize((max(1, img.width // 2), max(1, img.height // 2)))
    colours = small.getcolors(maxcolors=small.width * small.height)
    assert colours
    background = max(colours)[1]
    inked = sum(n for n, c in colours if max(abs(a - b) for a, b in zip(c, background, strict=True)) > tolerance)
    return inked / (small.width * small.height)
