import base64
import contextlib
import functools
import hashlib
import http.server
import json
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.config import GO_TOOLCHAIN_MODULE, HYDRA_NESTED_CLIENT_MODULE, Settings
from sandbox.errors import DistributionError, GoNotFound
from sandbox.stack.go_toolchain import GoToolchain, go_platform, zip_hash
from sandbox.stack.hydra_build import HydraBuild

#: A stand-in for the Go toolchain: records its calls, serves a module directory, "builds" a binary.
FAKE_GO = """#!/bin/sh
echo "$@" >> "{calls}"
case "$1 $2" in
  "env GOVERSION") echo "{goversion}" ;;
  "mod download") printf '{{"Path": "github.com/ory/hydra/v2", "Dir": "{source}"}}\\n' ;;
  "mod edit") test -w go.mod && echo "$3" >> go.mod ;;
  "build "*) [ "$CGO_ENABLED" = 0 ] || exit 3; printf '#!/bin/sh\\necho hydra\\n' > "$3"; chmod +x "$3"; {fail} ;;
esac
"""


def fake_go(tmp_path: Path, fail: bool = False, goversion: str = "go1.26.8") -> tuple[Path, Path]:
    source = tmp_path / "modcache" / "hydra@v9"
    source.mkdir(parents=True)
    (source / "go.mod").write_text("module github.com/ory/hydra/v2\n")
    for item in (source / "go.mod", source):
        item.chmod(stat.S_IRUSR | (stat.S_IXUSR if item.is_dir() else 0))  # the module cache is read-only
    calls = tmp_path / "calls"
    go = tmp_path / "go"
    failing = "echo 'cc: not found'; exit 2" if fail else ":"
    go.write_text(FAKE_GO.format(calls=calls, source=source, fail=failing, goversion=goversion))
    go.chmod(0o755)
    return go, calls


def settings_for(tmp_path: Path, go: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", go_command=str(go), hydra_version="9.9.9")  # type: ignore[arg-type]


def test_hydra_is_built_once_from_a_writable_copy_with_the_nested_replace_dropped(tmp_path: Path) -> None:
    go, calls = fake_go(tmp_path)
    lines: list[str] = []
    build = HydraBuild(settings_for(tmp_path, go))
    binary = build.ensure_built(lines.append)
    assert binary == tmp_path / "cache" / "hydra" / "9.9.9" / "hydra" and binary.is_file()
    made = [call for call in calls.read_text().splitlines() if call != "env GOVERSION"]
    assert made[0] == "mod download -json github.com/ory/hydra/v2@v9.9.9"
    assert made[1] == f"mod edit -dropreplace={HYDRA_NESTED_CLIENT_MODULE}"
    assert made[2] == f"mod download {HYDRA_NESTED_CLIENT_MODULE}"
    assert made[3].startswith("build -o ")
    assert any("building Ory Hydra 9.9.9" in line for line in lines)
    assert json.loads(build.marker.read_text())["version"] == "9.9.9"
    assert list(build.home.glob("build-*")) == []  # the copy of the source is gone

    assert HydraBuild(settings_for(tmp_path, go)).ensure_built(lines.append) == binary
    assert len(calls.read_text().splitlines()) == 5  # cached: Go is not run again


def test_another_version_is_built_beside_the_cached_one(tmp_path: Path) -> None:
    go, calls = fake_go(tmp_path)
    HydraBuild(settings_for(tmp_path, go)).ensure_built(lambda _: None)
    other = Settings(cache_dir=tmp_path / "cache", go_command=str(go), hydra_version="9.9.8")  # type: ignore[arg-type]
    assert HydraBuild(other).ensure_built(lambda _: None).parent.name == "9.9.8"
    assert len(calls.read_text().splitlines()) == 10


def test_without_go_or_a_toolchain_to_install_the_error_is_one_line_naming_what_to_do(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[arg-type]
        cache_dir=tmp_path / "cache", go_command="no-such-go-toolchain", go_toolchain_version="0.0.0"
    )
    with pytest.raises(GoNotFound) as caught:
        HydraBuild(settings).ensure_built(lambda _: None)
    message = str(caught.value)
    assert "\n" not in message
    assert "no known checksum for Go 0.0.0" in message and "SANDBOX_GO_TOOLCHAIN_SUM" in message
    assert "install Go 1.22+" in message and "SANDBOX_HYDRA_BINARY" in message


def test_a_go_too_old_for_hydra_gets_the_sandboxs_own_go_from_the_module_proxy(tmp_path: Path) -> None:
    old_go, _ = fake_go(tmp_path, goversion="go1.19.8")
    toolchain, calls = fake_go(tmp_path / "new", goversion="go9.9.9")
    with module_proxy(tmp_path, {"bin/go": toolchain.read_bytes()}) as (url, expected):
        settings = Settings(  # type: ignore[arg-type]
            cache_dir=tmp_path / "cache",
            go_command=str(old_go),
            hydra_version="9.9.9",
            go_toolchain_version="9.9.9",
            go_toolchain_sum=expected,
            go_proxy_url=url,
        )
        lines: list[str] = []
        binary = HydraBuild(settings).ensure_built(lines.append)
    assert binary.is_file()
    assert any("is go1.19.8, too old" in line for line in lines)
    assert any("fetching Go 9.9.9" in line for line in lines)
    assert calls.read_text().splitlines()[0] == "mod download -json github.com/ory/hydra/v2@v9.9.9"  # the new go
    assert GoToolchain(settings).go.stat().st_mode & stat.S_IXUSR


def test_the_toolchain_is_checked_against_its_hash_and_installed_once(tmp_path: Path) -> None:
    files = {"bin/go": b"#!/bin/sh\necho go\n", "pkg/tool/linux_amd64/compile": b"x", "src/a.go": b"package a\n"}
    with module_proxy(tmp_path, files) as (url, expected):
        settings = Settings(  # type: ignore[arg-type]
            cache_dir=tmp_path / "cache", go_toolchain_version="9.9.9", go_toolchain_sum=expected, go_proxy_url=url
        )
        toolchain = GoToolchain(settings)
        go = toolchain.ensure(lambda _: None)
        assert go.read_bytes() == files["bin/go"] and go.stat().st_mode & stat.S_IXUSR
        assert not (toolchain.home / "go" / "src" / "a.go").stat().st_mode & stat.S_IXUSR
        assert (toolchain.home / "go" / "pkg" / "tool" / "linux_amd64" / "compile").stat().st_mode & stat.S_IXUSR
        lines: list[str] = []
        assert GoToolchain(settings).ensure(lines.append) == go and lines == []  # cached: nothing fetched
        wrong = Settings(  # type: ignore[arg-type]
            cache_dir=tmp_path / "other", go_toolchain_version="9.9.9", go_toolchain_sum="h1:AAAA", go_proxy_url=url
        )
        with pytest.raises(DistributionError) as caught:
            GoToolchain(wrong).ensure(lambda _: None)
    assert "\n" not in str(caught.value) and "does not match its checksum" in str(caught.value)
    assert not GoToolchain(wrong).go.exists() and list(GoToolchain(wrong).home.glob("*.zip")) == []


def test_the_zip_hash_is_the_checksum_databases_h1(tmp_path: Path) -> None:
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("m@v1/b.txt", "b")
        out.writestr("m@v1/a.txt", "a")
    lines = "".join(
        f"{hashlib.sha256(body).hexdigest()}  {name}\n" for name, body in (("m@v1/a.txt", b"a"), ("m@v1/b.txt", b"b"))
    )
    assert zip_hash(archive) == "h1:" + base64.b64encode(hashlib.sha256(lines.encode()).digest()).decode()


@contextlib.contextmanager
def module_proxy(tmp_path: Path, files: dict[str, bytes]) -> Iterator[tuple[str, str]]:
    """A Go module proxy on loopback serving one toolchain zip (version 9.9.9 of this platform) and its h1: hash."""
    version = f"v0.0.1-go9.9.9.{go_platform()}"
    root = tmp_path / "proxy"
    zipped = root / GO_TOOLCHAIN_MODULE / "@v" / f"{version}.zip"
    zipped.parent.mkdir(parents=True)
    with zipfile.ZipFile(zipped, "w") as out:
        for name, body in files.items():
            out.writestr(f"{GO_TOOLCHAIN_MODULE}@{version}/{name}", body)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", zip_hash(zipped)
    finally:
        server.shutdown()
        server.server_close()


def test_a_failed_build_is_one_line_with_the_compilers_last_words_and_caches_nothing(tmp_path: Path) -> None:
    go, _ = fake_go(tmp_path, fail=True)
    build = HydraBuild(settings_for(tmp_path, go))
    with pytest.raises(DistributionError) as caught:
        build.ensure_built(lambda _: None)
    assert "\n" not in str(caught.value) and "cc: not found" in str(caught.value)
    assert not build.is_built()


def test_your_own_binary_is_used_as_it_is_and_a_missing_one_is_named(tmp_path: Path) -> None:
    own = tmp_path / "my-hydra"
    own.write_text("#!/bin/sh\n")
    settings = Settings(cache_dir=tmp_path / "cache", hydra_binary=own, go_command="no-such-go")  # type: ignore[arg-type]
    assert HydraBuild(settings).ensure_built(lambda _: None) == own
    missing = Settings(hydra_binary=tmp_path / "absent")  # type: ignore[arg-type]
    with pytest.raises(DistributionError, match=r"SANDBOX_HYDRA_BINARY=.*does not exist"):
        HydraBuild(missing).ensure_built(lambda _: None)
