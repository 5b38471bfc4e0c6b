"""Headless Chromium harness for player tests (reusable by the end-to-end tests).

Drives Debian's /usr/bin/chromium through Playwright's *sync* API in a worker thread
(``playwright.async_api`` needs asyncio, and we run under trio). Nothing is downloaded: the
Playwright driver ships inside the wheel and the browser is the system one.

    reports = await sample_playback([url], seconds=4.0)
    assert reports[0].advanced >= 2.0 and not reports[0].fatal_errors
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from playwright.sync_api import ConsoleMessage, Error, Page, Request, Response

from bench.browser import LAUNCH_TIMEOUT_MS, chromium

# What a sample reads from the page: the <video>'s clock, the page's own player state, the data-*
# attributes of #player and the text of the elements that show the state to a viewer.
_SAMPLE_JS = """() => {
  const v = document.querySelector('video');
  const s = window.playerState;
  const root = document.getElementById('player');
  const shown = {};
  for (const id of ['state', 'latency', 'rendition', 'uncarried']) {
    const el = document.getElementById(id);
    if (el) shown[id] = el.textContent;
  }
  return {
    currentTime: v ? v.currentTime : null,
    paused: v ? v.paused : null,
    readyState: v ? v.readyState : null,
    videoError: v && v.error ? v.error.code : null,
    audioDecoded: v && 'webkitAudioDecodedByteCount' in v ? v.webkitAudioDecodedByteCount : null,
    state: s ? JSON.parse(JSON.stringify(s)) : null,
    data: root ? Object.assign({}, root.dataset) : {},
    shown: shown,
  };
}"""


@dataclass
class Sample:
    at: float  # seconds since sampling started
    current_time: float
    paused: bool | None
    ready_state: int | None
    video_error: int | None
    audio_decoded: int | None  # bytes of audio the <video> decoded (Chromium's counter)
    player: dict[str, Any] | None  # window.playerState as JSON
    data: dict[str, str] = field(default_factory=dict)  # #player's data-* attributes
    # text of #state, #latency, #rendition, #uncarried
    shown: dict[str, str] = field(default_factory=dict)


@dataclass
class PlaybackReport:
    url: str
    started: bool = False  # currentTime moved past 0 before start_timeout
    samples: list[Sample] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)  # "STATUS METHOD URL" of 4xx/5xx answers

    @property
    def advanced(self) -> float:
        """How far the media clock moved during the sampling window (seconds)."""
        if len(self.samples) < 2:
            return 0.0
        return self.samples[-1].current_time - self.samples[0].current_time

    def advance_in_session(self, session: str) -> float:
        """How far the clock moved over the samples taken while playing ``session``."""
        times = [
            s.current_time
            for s in self.samples
            if (s.player or {}).get("session") == session and s.current_time > 0
        ]
        return max(times) - min(times) if len(times) >= 2 else 0.0

    def playing_in_session(self, session: str) -> list[Sample]:
        """Samples taken while ``session`` played: its clock moved since the sample before."""
        return [
            sample
            for before, sample in zip(self.samples, self.samples[1:], strict=False)
            if (sample.player or {}).get("session") == session
            and (before.player or {}).get("session") == session
            and sample.current_time > before.current_time
        ]

    @property
    def last_player(self) -> dict[str, Any]:
        return (self.samples[-1].player or {}) if self.samples else {}

    @property
    def fatal_errors(self) -> list[dict[str, Any]]:
        """Fatal player errors (window.playerState.errors) and <video> errors seen in any sample."""
        seen: dict[str, dict[str, Any]] = {}
        for sample in self.samples:
            for error in (sample.player or {}).get("errors", []):
                if error.get("fatal"):
                    seen[repr(sorted(error.items()))] = error
            if sample.video_error is not None:
                seen[f"video{sample.video_error}"] = {"type": "video", "code": sample.video_error}
        return list(seen.values())

    def describe(self) -> str:
        """A compact dump for assertion messages."""
        tail = [(round(s.at, 2), round(s.current_time, 2), s.ready_state) for s in self.samples]
        return (
            f"{self.url}: started={self.started} advanced={self.advanced:.2f}s "
            f"player={self.last_player} samples(at,t,ready)={tail[-12:]} "
            f"console={self.console_errors[-5:]} page={self.page_errors[-5:]} "
            f"failed={self.failed_requests[-5:]} http_errors={self.http_errors[-8:]}"
        )


def _read(page: Page, started_at: float) -> Sample:
    raw = page.evaluate(_SAMPLE_JS)
    return Sample(
        at=time.monotonic() - started_at,
        current_time=float(raw["currentTime"] or 0.0),
        paused=raw["paused"],
        ready_state=raw["readyState"],
        video_error=raw["videoError"],
        audio_decoded=raw["audioDecoded"],
        player=raw["state"],
        data=raw["data"],
        shown=raw["shown"],
    )


def sample_playback_sync(
    urls: Sequence[str],
    seconds: float,
    *,
    interval: float = 0.25,
    start_timeout: float = 20.0,
    chromium_args: Sequence[str] = (),
) -> list[PlaybackReport]:
    """Open each URL in its own tab of one fresh Chromium, wait until each video's currentTime
    passes 0 (at most ``start_timeout`` s in total), then sample all tabs every ``interval`` s
    for ``seconds`` s. Blocking: call it through :func:`sample_playback` from trio code."""
    reports = [PlaybackReport(url) for url in urls]
    with chromium("chromium-profile-", chromium_args) as context:
        pages = []
        for report in reports:
            page = context.new_page()
            page.set_default_timeout(LAUNCH_TIMEOUT_MS)
            page.on("console", partial(_on_console, report))
            page.on("pageerror", partial(_on_page_error, report))
            page.on("requestfailed", partial(_on_failed, report))
            page.on("response", partial(_on_response, report))
            page.goto(report.url)
            pages.append(page)
        origin = time.monotonic()
        waiting = set(range(len(pages)))
        while waiting and time.monotonic() - origin < start_timeout:
            for index in list(waiting):
                if _read(pages[index], origin).current_time > 0:
                    reports[index].started = True
                    waiting.discard(index)
            if waiting:
                pages[0].wait_for_timeout(interval * 1000)
        origin = time.monotonic()
        while True:
            for page, report in zip(pages, reports, strict=True):
                report.samples.append(_read(page, origin))
            if time.monotonic() - origin >= seconds:
                break
            pages[0].wait_for_timeout(interval * 1000)
    return reports


def _on_console(report: PlaybackReport, message: ConsoleMessage) -> None:
    if message.type == "error":
        report.console_errors.append(message.text)


def _on_page_error(report: PlaybackReport, error: Error) -> None:
    report.page_errors.append(str(error))


def _on_failed(report: PlaybackReport, request: Request) -> None:
    report.failed_requests.append(f"{request.url}: {request.failure}")


def _on_response(report: PlaybackReport, response: Response) -> None:
    if response.status >= 400:
        request = response.request
        report.http_errors.append(f"{response.status} {request.method} {response.url}")


async def sample_playback(
    urls: Sequence[str],
    seconds: float,
    *,
    interval: float = 0.25,
    start_timeout: float = 20.0,
    chromium_args: Sequence[str] = (),
) -> list[PlaybackReport]:
    """Trio wrapper: runs :func:`sample_playback_sync` in a worker thread."""
    return await trio.to_thread.run_sync(
        partial(
            sample_playback_sync,
            list(urls),
            seconds,
            interval=interval,
            start_timeout=start_timeout,
            chromium_args=chromium_args,
        )
    )
