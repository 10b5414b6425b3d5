from pathlib import Path

import pytest

from sandbox.config import Settings
from sandbox.errors import JavaNotFound
from sandbox.stack.java import find_jdk, java_major


def fake_jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    (home / "release").write_text(f'JAVA_VERSION="{version}"\n')
    return home


def test_release_file_gives_the_major_version(tmp_path: Path) -> None:
    assert java_major(fake_jdk(tmp_path, "a", "17.0.15")) == 17
    assert java_major(fake_jdk(tmp_path, "b", "1.8.0_402")) == 8
    assert java_major(tmp_path / "nothing") is None


def test_java_home_wins_when_it_is_recent_enough(tmp_path: Path) -> None:
    home = fake_jdk(tmp_path / "home", "jdk", "21.0.1")
    fake_jdk(tmp_path / "jvm", "jdk-17", "17.0.1")
    found = find_jdk(Settings(java_home=home, jvm_dirs=[tmp_path / "jvm"]))
    assert (found.home, found.major) == (home, 21)


def test_an_old_java_home_falls_back_to_the_oldest_supported_jdk_in_the_jvm_dirs(tmp_path: Path) -> None:
    old = fake_jdk(tmp_path / "home", "jdk8", "1.8.0")
    fake_jdk(tmp_path / "jvm", "temurin-25", "25.0.1")
    seventeen = fake_jdk(tmp_path / "jvm", "openjdk-17", "17.0.9")
    (tmp_path / "jvm" / "java-17-link").symlink_to(seventeen)
    found = find_jdk(Settings(java_home=old, jvm_dirs=[tmp_path / "jvm"]))
    assert found.home == seventeen.resolve() and found.major == 17


def test_no_jdk_gives_one_line_naming_where_we_looked_and_what_to_install(tmp_path: Path) -> None:
    fake_jdk(tmp_path / "jvm", "jdk11", "11.0.2")
    with pytest.raises(JavaNotFound) as caught:
        find_jdk(Settings(java_home=tmp_path / "missing", jvm_dirs=[tmp_path / "jvm"]))
    message = str(caught.value)
    assert "\n" not in message
    assert "no JDK 17+ found" in message and str(tmp_path / "missing") in message
    assert "apt-get install openjdk-17" in message and "JAVA_HOME" in message
