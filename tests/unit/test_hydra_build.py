import json
import stat
from pathlib import Path

import pytest

from sandbox.config import HYDRA_NESTED_CLIENT_MODULE, Settings
from sandbox.errors import DistributionError, GoNotFound
from sandbox.stack.hydra_build import HydraBuild

#: A stand-in for the Go toolchain: records its calls, serves a module directory, "builds" a binary.
FAKE_GO = """#!/bin/sh
echo "$@" >> "{calls}"
case "$1 $2" in
  "env GOVERSION") echo "{goversion}" ;;
  "mod download") printf '{{"Path": "github.com/ory/hydra/v2", "Dir": "{source}"}}\\n' ;;
  "mod edit") test -w go.mod && echo "$3" >> go.mod ;;
  "build "*) [ "$CGO_ENABLED" = 1 ] || exit 3; printf '#!/bin/sh\\necho hydra\\n' > "$5"; chmod +x "$5"; {fail} ;;
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
    assert made[3].startswith("build -tags sqlite -o ")
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


def test_no_go_is_one_line_naming_what_to_install(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache", go_command="no-such-go-toolchain")  # type: ignore[arg-type]
    with pytest.raises(GoNotFound) as caught:
        HydraBuild(settings).ensure_built(lambda _: None)
    message = str(caught.value)
    assert "\n" not in message
    assert "no Go toolchain" in message and "install Go" in message and "SANDBOX_HYDRA_BINARY" in message


def test_a_go_too_old_for_hydra_is_one_line_naming_its_version(tmp_path: Path) -> None:
    go, _ = fake_go(tmp_path, goversion="go1.19.8")
    with pytest.raises(GoNotFound) as caught:
        HydraBuild(settings_for(tmp_path, go)).ensure_built(lambda _: None)
    assert "\n" not in str(caught.value)
    assert "is go1.19.8, too old" in str(caught.value) and "install Go 1.22+" in str(caught.value)


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
