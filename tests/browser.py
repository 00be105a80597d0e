"""A small headless-Chromium driver for the report tests: the Chrome DevTools Protocol
over a pipe, with no package beyond the standard library.

`chromium --remote-debugging-pipe` reads commands from its file descriptor 3 and writes
replies and events to 4, each a JSON message ended by a NUL byte.  `Browser` starts one
(a fresh profile in a temporary folder), and `Browser.render(path, screenshot)` opens a
page in a new tab, waits for its load event, gathers its console errors, reads facts
about it with one script, and saves a full-page screenshot.  Every wait is bounded, so a
hung browser fails a test rather than hanging the suite; `close()` always ends it.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

WAIT = 30.0          # seconds any one reply or event may take
WIDTH = 1280         # the window's width in CSS pixels: a laptop's screen

# what a test checks on a page, read in the page itself
FACTS = """(() => ({
  images: Array.from(document.images).map(i => ({id: i.id, alt: i.alt, loaded: i.complete && i.naturalWidth > 0,
                                                  width: i.naturalWidth})),
  tables: Array.from(document.querySelectorAll('table')).map(t => ({id: t.id, rows: t.rows.length})),
  svgs: Array.from(document.querySelectorAll('svg')).map(s => ({cls: s.getAttribute('class'),
                                                               nodes: s.querySelectorAll('g.node').length})),
  headings: Array.from(document.querySelectorAll('h1, h2, h3')).map(h => h.textContent),
  scripts: document.scripts.length,
  text: document.body.innerText,
  width: document.documentElement.scrollWidth,
}))()"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(Exception):
    pass


class Browser:
    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="specbuild-chromium-")
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        to_browser, from_browser = _above_four(to_browser), _above_four(from_browser)
        args = [executable, "--headless=new", "--disable-gpu", "--no-sandbox", "--remote-debugging-pipe",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--hide-scrollbars", f"--user-data-dir={self.profile}",
                f"--window-size={WIDTH},900", "about:blank"]
        # bash (dash takes one-digit descriptors only) puts the pipe's ends at 3 and 4, as the protocol wants
        script = f'exec "$@" 3<&{to_browser} 4>&{from_browser} {to_browser}<&- {from_browser}>&-'
        self.process = subprocess.Popen(["bash", "-c", script, "bash", *args], pass_fds=(to_browser, from_browser),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)     # its own group: close() ends its helpers too
        os.close(to_browser)
        os.close(from_browser)
        self._messages: queue.Queue = queue.Queue()
        self._next_id = 0
        self._stderr = b""
        self.events: list = []             # events met while waiting for a reply
        threading.Thread(target=self._reader, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.call("Browser.getVersion")        # answers once the browser is up

    def _reader(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._read, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._messages.put(None)       # the browser is gone
                return
            buffer += chunk
            *whole, buffer = buffer.split(b"\0")
            for raw in whole:
                self._messages.put(json.loads(raw))

    def _drain_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr = (self._stderr + line)[-4000:]

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _next(self, deadline: float) -> dict:
        try:
            message = self._messages.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise BrowserError(f"no answer from the browser in {WAIT:.0f} s") from None
        if message is None:
            raise BrowserError("the browser stopped: " + self._stderr.decode(errors="replace")[-1500:])
        return message

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and wait for its reply; events met meanwhile go to `self.events`."""
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + WAIT
        while True:
            message = self._next(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + WAIT
        for i, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            message = self._next(deadline)
            if message.get("method") == method and message.get("sessionId") == session:
                return message
            self.events.append(message)

    def render(self, page: Path, screenshot: Path) -> dict:
        """Open `page` in a new tab; its FACTS, plus `errors` (the console's errors) and the screenshot."""
        self.events = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Runtime", "Log", "Page"):
                self.call(f"{domain}.enable", session=session)
            self.call("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": 900, "deviceScaleFactor": 1,
                                                            "mobile": False}, session=session)
            self.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
            self.wait_for("Page.loadEventFired", session)
            facts = self.call("Runtime.evaluate", {"expression": FACTS, "returnByValue": True},
                              session=session)["result"]["value"]
            size = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
            shot = self.call("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": WIDTH, "height": min(size["height"], 16000), "scale": 1}},
                session=session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            facts["errors"] = console_errors([e for e in self.events if e.get("sessionId") == session])
            return facts
        finally:
            self.call("Target.closeTarget", {"targetId": target})

    def close(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)      # the group this browser leads
        except OSError:
            pass
        try:
            self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self._write, self._read):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def _above_four(fd: int) -> int:
    """The same pipe end at a descriptor above 4, so placing it at 3 or 4 cannot close another."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def console_errors(events: list) -> list[str]:
    """The errors a page reported: console.error calls, uncaught exceptions, and the browser's
    own log entries of level error (a refused resource, a blocked load)."""
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            shown = (str(a.get("value", a.get("description"))) for a in params["args"])
            errors.append("console.error: " + " ".join(shown))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(f"exception: {details.get('text', '')} {details.get('exception', {}).get('description', '')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(f"log: {params['entry'].get('text')} ({params['entry'].get('url', '')})")
    return errors
