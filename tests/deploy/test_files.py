"""deploy/: what can be checked without a container engine or a booted systemd. The Dockerfile,
.dockerignore and compose file are parsed and held to what the image needs; the systemd unit goes
through `systemd-analyze verify`. The image's install steps run in tests/e2e/test_packaging.py."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONFIG_IN_IMAGE = "/etc/gateway/gateway.toml"


# --- Dockerfile ------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    image: str
    name: str
    steps: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.steps if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "a continuation line ends the file"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            image, _, name = args.partition(" AS ")
            stages.append(Stage(image.strip(), name.strip(), []))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].steps.append(Instruction(keyword, args))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile((DEPLOY / "Dockerfile").read_text())


def _copies(stage: Stage) -> list[tuple[str | None, list[str], str]]:
    """(--from stage or None, sources, destination) of each COPY."""
    out = []
    for args in stage.all("COPY"):
        words = shlex.split(args)
        origin = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
        paths = [w for w in words if not w.startswith("--")]
        out.append((origin, paths[:-1], paths[-1]))
    return out


def test_image_builds_the_wheel_with_a_compiler_and_runs_it_on_slim(stages: list[Stage]) -> None:
    js, build, runtime = stages
    assert js.image.startswith("node:") and js.name == "js"
    # The full Debian-based python image has gcc and the Python headers; slim has neither.
    assert build.image.startswith("python:3.11-") and "slim" not in build.image
    assert runtime.image.startswith("python:3.11-slim") and runtime.name == ""
    copied = {source for _, sources, _ in _copies(build) for source in sources}
    # Everything setup.py and the build read: metadata, the module list, every package.
    assert {"pyproject.toml", "setup.py", "README.md", "requirements.lock"} <= copied
    assert {"gateway", "segmenter", "web"} <= copied
    (wheel,) = [r for r in build.all("RUN") if "pip wheel" in r]
    assert "--no-build-isolation" in wheel and "-w /wheels" in wheel
    # The build requirements at their locked versions, installed before the wheel is built.
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    names = [re.split(r"[<>=]", r)[0] for r in requires]
    (prepare,) = [r for r in build.all("RUN") if r.startswith("pip install")]
    assert "-c requirements.lock" in prepare and all(n in prepare.split() for n in names)
    # The runtime installs the built wheel, no source, and checks that it runs compiled.
    assert _copies(runtime) == [
        (None, ["requirements.lock"], "/tmp/requirements.lock"),
        (build.name, ["/wheels"], "/tmp/wheels"),
        (None, ["deploy/gateway.example.toml"], CONFIG_IN_IMAGE),
    ]
    (install,) = runtime.all("RUN")[1:]
    assert "/tmp/wheels/*.whl" in install and "native.interpreted()" in install
    assert runtime.all("USER") == ["gateway"]


def test_every_copied_path_exists_and_reaches_the_build_context(stages: list[Stage]) -> None:
    ignore = DockerIgnore((ROOT / ".dockerignore").read_text())
    names = {s.name for s in stages}
    for stage in stages:
        for origin, sources, _ in _copies(stage):
            if origin is not None:
                assert origin in names
                continue
            for source in sources:  # relative to the context, whatever the WORKDIR
                assert (ROOT / source).exists(), (stage.name, source)
                assert not ignore.excludes(source), source


def test_health_check_reads_the_config_the_gateway_runs_with(stages: list[Stage]) -> None:
    runtime = stages[-1]
    (check,) = runtime.all("HEALTHCHECK")
    command = check.split(" CMD ", 1)[1]
    # exec form, the port from the settings, not a port written into the check
    assert yaml.safe_load(command) == ["gateway", "health", "--config", CONFIG_IN_IMAGE]
    assert "8080" not in check
    (cmd,) = runtime.all("CMD")
    assert yaml.safe_load(cmd) == ["run", "--config", CONFIG_IN_IMAGE]
    assert (None, ["deploy/gateway.example.toml"], CONFIG_IN_IMAGE) in _copies(runtime)
    assert runtime.all("ENTRYPOINT") == ['["gateway"]']
    # No GATEWAY_* in the image's environment: it would win over the mounted file.
    assert not [e for e in runtime.all("ENV") if "GATEWAY_" in e]


# --- .dockerignore ---------------------------------------------------------------------------


class DockerIgnore:
    """The matching rules of .dockerignore: patterns relative to the context root, ``*`` within
    one path element, ``**`` any number of them, a matched directory excludes its contents, a
    later ``!pattern`` re-includes."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pattern = line.lstrip("!").strip("/")
            self.rules.append((keep, re.compile(self._regex(pattern))))

    @staticmethod
    def _regex(pattern: str) -> str:
        out = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        return f"^{out}(?:/.*)?$"

    def excludes(self, path: str) -> bool:
        excluded = False
        for keep, rule in self.rules:
            if rule.match(path):
                excluded = not keep
        return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "gateway/__pycache__/cli.cpython-311.pyc",
        "gateway/rtmp/chunk.cpython-311-x86_64-linux-gnu.so",
        "gateway_native__mypyc.cpython-311-x86_64-linux-gnu.so",
        "build/lib/gateway/cli.py",
        "rtmp_hls_gateway.egg-info/PKG-INFO",
        "web/node_modules/hls.js/dist/hls.min.js",
        ".mypy_cache/3.11/x.json",
        "tests/conftest.py",
        "hls/live/cam/ts.m3u8",
    ],
)
def test_dockerignore_leaves_out_local_state(path: str) -> None:
    assert DockerIgnore((ROOT / ".dockerignore").read_text()).excludes(path)


def test_dockerignore_keeps_every_source_the_wheel_needs() -> None:
    ignore = DockerIgnore((ROOT / ".dockerignore").read_text())
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "gateway", "segmenter", "web", "setup.py"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert tracked and [p for p in tracked if ignore.excludes(p)] == []


def test_dockerignore_matcher_is_not_vacuous() -> None:
    ignore = DockerIgnore("*.log\n**/cache\n!keep.log\n/top\n")
    assert ignore.excludes("a.log") and not ignore.excludes("keep.log")
    assert ignore.excludes("x/y/cache/z") and ignore.excludes("top/file")
    assert not ignore.excludes("sub/a.log") and not ignore.excludes("topper")


# --- compose ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_builds_this_dockerfile_from_the_repository_root(compose: dict[str, Any]) -> None:
    service = compose["services"]["gateway"]
    context = (DEPLOY / service["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / service["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert service["command"] == ["run", "--config", CONFIG_IN_IMAGE]


def test_compose_keeps_segments_on_a_named_volume(compose: dict[str, Any], tmp_path: Path) -> None:
    service = compose["services"]["gateway"]
    mounts = [m.split(":") for m in service["volumes"]]
    named = {source: target for source, target, *_ in mounts if not source.startswith(".")}
    files = {target: source for source, target, *_ in mounts if source.startswith(".")}
    assert set(named) <= set(compose["volumes"]) and named
    assert (DEPLOY / files[CONFIG_IN_IMAGE]).is_file()
    env = {k: str(v) for k, v in service["environment"].items()}
    assert env["GATEWAY_HLS_DIR"] in named.values()
    # The settings the container gets: the mounted file and this environment, all known keys
    # (the volume's path is swapped for a temporary one that this test may create).
    env["GATEWAY_HLS_DIR"] = str(tmp_path / "hls")
    settings = load_settings(config_file=DEPLOY / files[CONFIG_IN_IMAGE], env=env)
    assert settings.hls_dir == str(tmp_path / "hls")
    published = {int(p.split(":")[1]) for p in service["ports"]}
    assert {settings.http_port, settings.rtmp_port} <= published


# --- systemd ---------------------------------------------------------------------------------


def _unit() -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in (DEPLOY / "gateway.service").read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections[current] = []
        elif line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            sections[current].append((key, value))
    return sections


def test_unit_raises_the_open_files_limit() -> None:
    service = dict(_unit()["Service"])
    # One descriptor per RTMP connection and HTTP viewer, with room above the default limit.
    assert int(service["LimitNOFILE"]) >= 4 * Settings().max_connections


def test_unit_leaves_every_setting_to_the_toml() -> None:
    service = _unit()["Service"]
    assert [v for k, v in service if k == "Environment" and "GATEWAY_" in v] == []
    assert not [k for k, _ in service if k == "EnvironmentFile"]
    assert dict(service)["ExecStart"].endswith(f"run --config {CONFIG_IN_IMAGE}")


def test_unit_install_steps_put_segments_in_its_state_directory(tmp_path: Path) -> None:
    # The unit's header says how to install the TOML; run that sed on a copy of the example.
    text = (DEPLOY / "gateway.service").read_text()
    (sed,) = [line[1:].strip() for line in text.splitlines() if line.startswith("#   sed ")]
    installed = tmp_path / "gateway.toml"
    shutil.copy(DEPLOY / "gateway.example.toml", installed)
    subprocess.run(
        shlex.split(sed.replace(CONFIG_IN_IMAGE, str(installed))), check=True, timeout=10
    )
    data = tomllib.loads(installed.read_text())
    state = dict(_unit()["Service"])["StateDirectory"]
    assert data["hls"]["dir"] == f"/var/lib/{state}/hls"
    # Only that line changed.
    before = (DEPLOY / "gateway.example.toml").read_text().splitlines()
    after = installed.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert [(a.split("#")[0].strip(), b.split("#")[0].strip()) for a, b in changed] == [
        ('dir = ""', 'dir = "/var/lib/gateway/hls"')
    ]


def _verify(root: Path, unit_text: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of the unit installed in a fake root: the system's own units
    (targets the unit orders after) copied in, and an executable where each Exec* line points
    (ExecStart, and ExecReload's kill)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: deploy/system-packages.sh installs it"
    system = Path("/lib/systemd/system").resolve()
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/gateway.service").write_text(unit_text)
    for key, command in _unit()["Service"]:
        if key.startswith("Exec"):
            binary = root / command.split()[0].lstrip("/")
            binary.parent.mkdir(parents=True, exist_ok=True)
            binary.write_text("#!/bin/sh\n")
            binary.chmod(0o755)
    return subprocess.run(
        [analyze, "verify", f"--root={root}", "gateway.service"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _findings(out: subprocess.CompletedProcess[str]) -> list[str]:
    # verify exits 0 on unknown keys and bad values ("..., ignoring"): its words are the result.
    return [line for line in (out.stdout + out.stderr).splitlines() if "gateway.service" in line]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    out = _verify(tmp_path, (DEPLOY / "gateway.service").read_text())
    assert out.returncode == 0 and _findings(out) == [], out.stderr


def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    # The check above can fail: a misspelt key and a bad value are reported.
    text = (DEPLOY / "gateway.service").read_text()
    broken = text.replace("Restart=on-failure", "Restart=sometimes").replace(
        "LimitNOFILE=", "LimitNOFILES="
    )
    findings = _findings(_verify(tmp_path, broken))
    assert any("restart specifier" in f for f in findings), findings
    assert any("Unknown key" in f and "LimitNOFILES" in f for f in findings), findings


def test_unit_reloads_with_sighup() -> None:
    # `systemctl reload gateway` reloads the configuration without dropping a stream
    # (tests/e2e/test_reload.py); SIGTERM stays the stop signal.
    service = dict(_unit()["Service"])
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
