"""No request reaches anything outside <app>/<key>/ in the store (test client; see test_server.py
for the same attempts as raw bytes through hypercorn)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.conftest import FakeStatus
from web.app import create_app
from web.names import store_name

SECRET = b"TOP-SECRET-OUTSIDE-THE-STORE"

# Each must answer 400/404 and never the secret. Written as a client would send them; the test
# client percent-decodes the path like a server would.
ATTEMPTS = [
    "/..%2f..%2fetc/passwd",
    "/../../etc/passwd",
    "/live/cam1/..%2f..%2fsecret.ts",
    "/live/cam1/..%2f..%2f..%2fsecret.ts",
    "/live/cam1/%2e%2e/%2e%2e/secret.ts",
    "/live/cam1/%2e%2e%2f%2e%2e%2fsecret.ts",
    "/live/%2e%2e/secret.ts",
    "/%2e%2e/%2e%2e/secret.ts",
    "/live/cam1/../../secret.ts",
    "/live/cam1/..ts",
    "/live/cam1/.secret.ts",
    "/live/cam1/%00.ts",
    "/live/cam1/secret.ts%00",
    "/live/cam1/index.m3u8%00.ts",
    "/live/cam1/..%5c..%5csecret.ts",
    "/live/cam1/..\\..\\secret.ts",
    "/live\\cam1/index.m3u8",
    "//secret.ts",
    "//etc/passwd",
    "/live/cam1//secret.ts",
    "/live/cam1/%2fsecret.ts",
    "/live/cam1/%2fetc%2fpasswd",
    "/live//secret.ts",
    "/live/cam1/C:%5csecret.ts",
    "/etc/passwd",
    "/live/cam1/%252e%252e%252fsecret.ts",
    "/" + "a" * 129 + "/cam1/index.m3u8",
    "/live/" + "k" * 129 + "/index.m3u8",
    "/live/cam1/" + "s" * 200 + ".ts",
    "/live/cam1/index.m3u8/",
    "/live/cam1/secret.txt",
    "/live/cam1/secret",
    "/api/streams/..%2f..%2fsecret",
    "/static/..%2fapp.py",
    "/static/../app.py",
    "/static/vendor/..%2f..%2fapp.py",
]


class NaiveDiskStore:
    """A deliberately careless disk store (joins names onto a root without checks), so that any
    name escaping <app>/<key>/ would really read the secret; it also records every lookup."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.looked_up: list[str] = []

    def get(self, name: str) -> bytes | None:
        self.looked_up.append(name)
        path = Path(str(self.root) + "/" + name)
        return path.read_bytes() if path.is_file() else None

    def put(self, name: str, data: bytes | tuple[bytes, ...], *, fresh: bool = False) -> None:
        raise AssertionError("web must not write")

    def delete(self, name: str) -> None:
        raise AssertionError("web must not delete")

    def names(self, prefix: str = "") -> list[str]:
        return []


@pytest.fixture
def disk(tmp_path: Path) -> NaiveDiskStore:
    root = tmp_path / "hls"
    (root / "live" / "cam1").mkdir(parents=True)
    (root / "live" / "cam1" / "index.m3u8").write_bytes(b"#EXTM3U\n")
    for place in (tmp_path, root, root / "live"):
        (place / "secret.ts").write_bytes(SECRET)
        (place / "secret.txt").write_bytes(SECRET)
    (root / "live" / "cam1" / "secret.txt").write_bytes(SECRET)
    (root / "live" / "cam1" / "secret").write_bytes(SECRET)
    (root / "live" / "cam1" / ".secret.ts").write_bytes(SECRET)
    return NaiveDiskStore(root)


@pytest.mark.parametrize("url", ATTEMPTS)
async def test_traversal_attempt_finds_nothing(
    disk: NaiveDiskStore, status: FakeStatus, url: str
) -> None:
    app = create_app(disk, status)
    client = app.test_client()
    for send in (client.get, client.head):
        response = await send(url)
        assert response.status_code in (400, 404, 405), (url, response.status_code)
        body = await response.get_data()
        assert SECRET not in body
        assert b"root:" not in body
    # Defence in depth: whatever reached the store was a name we produce ourselves.
    for name in disk.looked_up:
        app_name, key, file = name.split("/")
        assert store_name(app_name, key, file) == name


async def test_legit_name_through_naive_store(disk: NaiveDiskStore, status: FakeStatus) -> None:
    app = create_app(disk, status)
    response = await app.test_client().get("/live/cam1/index.m3u8")
    assert response.status_code == 200
    assert await response.get_data() == b"#EXTM3U\n"


@pytest.mark.parametrize(
    "app_name, key, file",
    [
        ("..", "cam1", "index.m3u8"),
        ("live", "..", "index.m3u8"),
        ("live", "cam1", "../x.ts"),
        ("live", "cam1", "..ts"),
        ("live", "cam1", ".x.ts"),
        ("live", "cam1", "a\x00.ts"),
        ("live", "cam1", "a\\b.ts"),
        ("live", "cam1", "/abs.ts"),
        ("live", "cam1", "x.txt"),
        ("live", "cam1", "é.ts"),
        ("", "cam1", "index.m3u8"),
        ("a" * 129, "cam1", "index.m3u8"),
        ("live", "cam1", "s" * 126 + ".ts"),
    ],
)
def test_store_name_rejects(app_name: str, key: str, file: str) -> None:
    assert store_name(app_name, key, file) is None


def test_store_name_accepts_what_the_segmenter_writes() -> None:
    assert store_name("live", "cam1", "index.m3u8") == "live/cam1/index.m3u8"
    assert store_name("live", "my_key-2", "a1b2c3-00017.ts") == "live/my_key-2/a1b2c3-00017.ts"
    assert store_name("a" * 128, "k" * 128, "s" * 123 + ".m3u8") is not None
