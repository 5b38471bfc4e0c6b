"""Headless Chromium playing one HLS playlist with hls.js, sampled for latency (``glass``).

Debian's /usr/bin/chromium through Playwright's *sync* API in a worker thread (trio has no
asyncio loop for ``playwright.async_api``), as tests/web/browser.py does; nothing is downloaded.
The page is the bench's own, not the gateway's player: it is served by Playwright from the
target's origin (``/__bench__/``, intercepted by ``context.route``, so hls.js's requests are
same-origin on every target, nginx included) and loads the hls.js the gateway ships
(web/node_modules, the version pinned in web/package-lock.json), so every target is played by
the same player with the same settings.

Each sample reads, in one ``page.evaluate``: ``Date.now()``, the clock strip of the frame the
<video> shows (bench/fixtures.py, decoded from a canvas), ``hls.playingDate`` (PROGRAM-DATE-TIME
of the playing fragment + position in it), ``hls.latency`` and ``hls.targetLatency`` (hls.js's
own estimate of the distance to the live edge), and the <video>'s state.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
    # A background tab's timers and media are throttled; the bench tab is the only one anyway.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
]
HLS_JS = Path(__file__).resolve().parent.parent / "web" / "node_modules" / "hls.js" / "dist"
HLS_JS = HLS_JS / "hls.min.js"
PAGE_PATH = "/__bench__/player.html"
HLS_JS_PATH = "/__bench__/hls.min.js"
# Milliseconds Playwright waits for Chromium to start and the page to load.
LAUNCH_TIMEOUT_MS = 30_000

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>bench player</title></head>
<body style="margin:0;background:#000">
<video id="v" muted autoplay playsinline width="640" height="360"></video>
<script src="__HLS_JS__"></script>
<script>
const SRC = __SRC__, CONFIG = __CONFIG__, BLOCKS = __BLOCKS__, STRIP = __STRIP__;
const v = document.getElementById('v');
const bench = window.bench = {errors: [], fatal: 0, waiting: 0, recoveries: 0, frags: 0};
const canvas = document.createElement('canvas');
canvas.width = BLOCKS * 8; canvas.height = 8;
const ctx = canvas.getContext('2d', {willReadFrequently: true});
v.addEventListener('waiting', () => { bench.waiting += 1; });
const hls = window.hls = new Hls(CONFIG);
hls.on(Hls.Events.ERROR, (_, d) => {
  if (bench.errors.length < 50) {
    bench.errors.push({type: d.type, details: d.details, fatal: d.fatal});
  }
  if (!d.fatal) return;
  bench.fatal += 1; bench.recoveries += 1;
  if (d.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
  else setTimeout(() => hls.startLoad(), 1000);
});
hls.on(Hls.Events.FRAG_LOADED, () => { bench.frags += 1; });
hls.loadSource(SRC);
hls.attachMedia(v);
v.play().catch(() => {});
// The clock strip: BLOCKS blocks across the top, height videoHeight/STRIP; sampled at the centre
// of each after scaling the strip to BLOCKS x 1 cells of 8x8 pixels.
window.benchSample = () => {
  const now = Date.now();
  let code = null;
  if (v.readyState >= 2 && v.videoWidth > 0) {
    const h = Math.max(8, Math.floor(v.videoHeight / STRIP));
    const w = Math.floor(v.videoWidth / BLOCKS) * BLOCKS;
    ctx.drawImage(v, 0, 0, w, h, 0, 0, BLOCKS * 8, 8);
    const px = ctx.getImageData(0, 4, BLOCKS * 8, 1).data;
    code = 0;
    for (let b = 0; b < BLOCKS; b++) {
      const i = (b * 8 + 4) * 4;
      if ((px[i] + px[i + 1] + px[i + 2]) / 3 > 128) code |= (1 << b);
    }
  }
  const pd = hls.playingDate;
  const buf = v.buffered;
  return {
    now, code,
    currentTime: v.currentTime, paused: v.paused, readyState: v.readyState,
    playbackRate: v.playbackRate,
    bufferedEnd: buf.length ? buf.end(buf.length - 1) : null,
    playingDate: pd ? pd.getTime() : null,
    latency: Number.isFinite(hls.latency) ? hls.latency : null,
    targetLatency: Number.isFinite(hls.targetLatency) ? hls.targetLatency : null,
    waiting: bench.waiting, fatal: bench.fatal, frags: bench.frags,
    errors: bench.errors.length,
  };
};
</script></body></html>
"""


@dataclass
class Session:
    url: str
    config: dict[str, Any]
    started: bool = False
    start_s: float | None = None  # page load -> first frame shown (currentTime > 0)
    samples: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # hls.js ERROR events
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@contextmanager
def chromium(prefix: str, extra_args: Sequence[str] = ()) -> Iterator[BrowserContext]:
    """A fresh headless Chromium (Debian's, driven by Playwright; nothing is downloaded) with a
    throw-away profile. Shared with the test harness (tests/web/browser.py). ``extra_args``:
    more command-line switches (a test CA's key to trust, for instance)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix=prefix) as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[*CHROMIUM_ARGS, *extra_args],
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            yield context
        finally:
            context.close()


def page_html(src: str, config: dict[str, Any], blocks: int, strip: int) -> str:
    return (
        PAGE.replace("__HLS_JS__", HLS_JS_PATH)
        .replace("__SRC__", json.dumps(src))
        .replace("__CONFIG__", json.dumps(config))
        .replace("__BLOCKS__", str(blocks))
        .replace("__STRIP__", str(strip))
    )


def open_player(
    context: BrowserContext,
    url: str,
    config: dict[str, Any],
    *,
    blocks: int = 1,
    strip: int = 8,
    hls_js: Path = HLS_JS,
    before_load: Callable[[Page], object] | None = None,
) -> Page:
    """A page of ``context`` playing ``url`` with hls.js and ``config``: the bench page and
    hls.js are served by Playwright under the stream's own origin (no CORS), then opened.
    ``before_load`` sees the page first (to listen to its console from the start)."""
    from playwright.sync_api import Route

    origin = url.split("/", 3)
    base = f"{origin[0]}//{origin[2]}"
    html = page_html(url, config, blocks, strip)
    script = hls_js.read_bytes()

    def serve(route: Route) -> None:
        if route.request.url.endswith(HLS_JS_PATH):
            route.fulfill(status=200, body=script, content_type="application/javascript")
        else:
            route.fulfill(status=200, body=html, content_type="text/html; charset=utf-8")

    context.route(f"{base}/__bench__/**", serve)
    page = context.new_page()
    page.set_default_timeout(LAUNCH_TIMEOUT_MS)
    if before_load is not None:
        before_load(page)
    page.goto(base + PAGE_PATH)
    return page


def play_and_sample(
    url: str,
    config: dict[str, Any],
    *,
    seconds: float,
    interval: float,
    start_timeout: float,
    blocks: int,
    strip: int,
    hls_js: Path = HLS_JS,
) -> Session:
    """Play ``url`` in a fresh headless Chromium; once the video shows frames (at most
    ``start_timeout`` s), sample every ``interval`` s for ``seconds`` s. Blocking: run it in a
    worker thread from trio code."""
    session = Session(url, config)
    with chromium("bench-chromium-") as context:

        def listen(page: Page) -> None:
            page.on(
                "console",
                lambda m: session.console_errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: session.page_errors.append(str(e)))

        loaded = time.monotonic()
        page = open_player(
            context, url, config, blocks=blocks, strip=strip, hls_js=hls_js, before_load=listen
        )
        while time.monotonic() - loaded < start_timeout:
            s = page.evaluate("window.benchSample()")
            if s["currentTime"] > 0 and s["code"] is not None:
                session.started = True
                session.start_s = round(time.monotonic() - loaded, 3)
                break
            page.wait_for_timeout(50)
        if session.started:
            origin_t = time.monotonic()
            while True:
                session.samples.append(page.evaluate("window.benchSample()"))
                if time.monotonic() - origin_t >= seconds:
                    break
                page.wait_for_timeout(interval * 1000)
        session.errors = page.evaluate("window.bench.errors")
    return session
