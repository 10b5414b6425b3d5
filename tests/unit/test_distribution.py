import hashlib
import os
import stat
import zipfile
from pathlib import Path

import pytest

from sandbox.config import Settings
from sandbox.errors import DistributionError
from sandbox.stack.distribution import (
    BUILD_OPTIONS_HASH,
    KeycloakDistribution,
    class_archive_at_exit,
    run_files_options,
)
from sandbox.stack.java import Jdk

VERSION = "0.0-test"
KC_SH = '#!/bin/sh\necho "$@" >> "$(dirname "$0")/../build-calls"\n'


def make_zip(path: Path) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"keycloak-{VERSION}/bin/kc.sh", KC_SH)
        archive.writestr(f"keycloak-{VERSION}/version.txt", VERSION)
    return hashlib.sha256(path.read_bytes()).hexdigest()


FAKE_JAVAC = '#!/bin/sh\necho javac >> "$(dirname "$0")/../calls"\n'
FAKE_JAR = (
    '#!/bin/sh\nwhile [ "$1" != --file ]; do shift; done\necho jar >> "$(dirname "$0")/../calls"\necho jar > "$2"\n'
)


@pytest.fixture
def jdk(tmp_path: Path) -> Jdk:
    """A JDK whose javac and jar only note that they ran (jar writes its output file)."""
    bin_dir = tmp_path / "jdk" / "bin"
    bin_dir.mkdir(parents=True)
    for name, script in (("javac", FAKE_JAVAC), ("jar", FAKE_JAR)):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    return Jdk(tmp_path / "jdk", 17)


def settings_for(tmp_path: Path, **extra: object) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", keycloak_version=VERSION, **extra)  # type: ignore[arg-type]


def no_report(_: str) -> None:
    pass


def test_a_corrupt_cached_zip_is_one_line_naming_the_file_and_the_fix(tmp_path: Path, jdk: Jdk) -> None:
    settings = settings_for(tmp_path, keycloak_sha256="0" * 64)
    distribution = KeycloakDistribution(settings)
    distribution.cache.mkdir(parents=True)
    distribution.zip_path.write_bytes(b"not a zip at all")
    with pytest.raises(DistributionError) as caught:
        distribution.ensure_built(jdk, no_report)
    message = str(caught.value)
    assert "\n" not in message
    assert "corrupt" in message and f"delete {distribution.zip_path}" in message


def test_a_good_cached_zip_is_unpacked_once_and_built_once(tmp_path: Path, jdk: Jdk) -> None:
    settings = settings_for(tmp_path, keycloak_sha256="")
    distribution = KeycloakDistribution(settings)
    distribution.cache.mkdir(parents=True)
    checksum = make_zip(distribution.zip_path)
    settings = settings_for(tmp_path, keycloak_sha256=checksum)
    steps: list[str] = []
    home = KeycloakDistribution(settings).ensure_built(jdk, steps.append)
    assert (home / "version.txt").read_text() == VERSION
    assert os.stat(home / "bin" / "kc.sh").st_mode & stat.S_IXUSR
    calls = (home / "build-calls").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("build --db=dev-file")
    assert "--features=client-secret-rotation,resource-indicators,token-exchange-standard" in calls[0]
    KeycloakDistribution(settings).ensure_built(jdk, steps.append)  # warm: nothing to do
    assert len((home / "build-calls").read_text().splitlines()) == 1
    assert steps == [
        "unpacking",
        "building the sandbox's Keycloak provider (network zones; once per source change)",
        "building (once per version and feature set)",
    ]
    assert (home / "providers" / "mcp-sandbox-zone.jar").read_text() == "jar\n"
    assert (jdk.home / "calls").read_text().splitlines() == ["javac", "jar"]  # built once, then cached


def test_the_build_is_named_by_the_provider_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.stack import providers

    before = providers.source_hash(VERSION)
    named = f"keycloak-{VERSION}-{before}-{BUILD_OPTIONS_HASH}"  # and by the fixed build options
    assert KeycloakDistribution(settings_for(tmp_path)).home.name == named
    assert providers.source_hash("another") != before
    sources = tmp_path / "provider"
    (sources / "src").mkdir(parents=True)
    (sources / "src" / "A.java").write_text("class A {}")
    monkeypatch.setattr(providers, "SOURCES", sources)
    first = providers.source_hash(VERSION)
    (sources / "src" / "A.java").write_text("class A { int changed; }")
    assert providers.source_hash(VERSION) != first


def test_a_different_feature_set_builds_again(tmp_path: Path, jdk: Jdk) -> None:
    zip_path = tmp_path / "kc.zip"
    checksum = make_zip(zip_path)
    first = settings_for(tmp_path, keycloak_dist=zip_path, keycloak_sha256=checksum)
    home = KeycloakDistribution(first).ensure_built(jdk, no_report)
    second = settings_for(tmp_path, keycloak_dist=zip_path, keycloak_sha256=checksum, keycloak_features=("dpop",))
    KeycloakDistribution(second).ensure_built(jdk, no_report)
    assert len((home / "build-calls").read_text().splitlines()) == 2


def test_a_user_zip_that_does_not_exist_is_named(tmp_path: Path, jdk: Jdk) -> None:
    settings = settings_for(tmp_path, keycloak_dist=tmp_path / "nope.zip", keycloak_sha256="0" * 64)
    with pytest.raises(DistributionError, match=r"SANDBOX_KEYCLOAK_DIST=.*nope\.zip does not exist"):
        KeycloakDistribution(settings).ensure_built(jdk, no_report)


def test_maven_is_asked_before_the_direct_download(tmp_path: Path, jdk: Jdk, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "served.zip"
    checksum = make_zip(source)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    # A stand-in for Maven that "resolves" the artifact into -DoutputDirectory.
    mvn.write_text(
        '#!/bin/sh\nfor a in "$@"; do case $a in -DoutputDirectory=*) out=${a#-DoutputDirectory=};; esac; done\n'
        f'echo "$@" > {tmp_path}/mvn-args\ncp {source} "$out/keycloak-quarkus-dist-{VERSION}.zip"\n'
    )
    mvn.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    steps: list[str] = []
    settings = settings_for(tmp_path, keycloak_sha256=checksum, maven_central_url="http://127.0.0.1:9")
    KeycloakDistribution(settings).ensure_built(jdk, steps.append)
    assert f"-Dartifact=org.keycloak:keycloak-quarkus-dist:{VERSION}:zip" in (tmp_path / "mvn-args").read_text()
    assert steps[0] == f"fetching Keycloak {VERSION} with Maven"
    assert not any(step.startswith("downloading") for step in steps)


def test_without_maven_the_download_failure_names_both_fixes(
    tmp_path: Path, jdk: Jdk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    settings = settings_for(tmp_path, keycloak_sha256="0" * 64, maven_central_url="http://127.0.0.1:9")
    with pytest.raises(DistributionError) as caught:
        KeycloakDistribution(settings).ensure_built(jdk, no_report)
    assert "install Maven" in str(caught.value) and "SANDBOX_KEYCLOAK_DIST" in str(caught.value)
    assert not list((tmp_path / "cache" / "keycloak").glob("*.part"))


def test_an_unknown_version_without_checksum_is_refused(tmp_path: Path, jdk: Jdk) -> None:
    zip_path = tmp_path / "kc.zip"
    make_zip(zip_path)
    settings = settings_for(tmp_path, keycloak_dist=zip_path)
    with pytest.raises(DistributionError, match="set SANDBOX_KEYCLOAK_SHA256"):
        KeycloakDistribution(settings).ensure_built(jdk, no_report)


def test_run_options_keep_the_run_files_in_its_data_dir(tmp_path: Path) -> None:
    options = run_files_options(tmp_path / "kc").split(" ")
    assert options == [
        f"-Dquarkus.transaction-manager.object-store.directory={tmp_path / 'kc' / 'tx'}",
        f"-Djava.io.tmpdir={tmp_path / 'kc' / 'tmp'}",
    ]


def test_run_options_map_the_class_archive_only_when_it_exists(tmp_path: Path) -> None:
    archive = tmp_path / "classes.jsa"
    assert "SharedArchiveFile" not in run_files_options(tmp_path / "kc", archive)
    archive.write_bytes(b"archive")
    assert run_files_options(tmp_path / "kc", archive).split(" ")[-1] == f"-XX:SharedArchiveFile={archive}"
    assert class_archive_at_exit(archive) == f"-XX:ArchiveClassesAtExit={archive}"
