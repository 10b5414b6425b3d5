"""The Debian mirror for ``make images`` comes from this machine's apt sources, read here from sample files."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.config import Settings, load_settings
from sandbox.stack.apt_sources import Mirror, MirrorNotFound, debian_mirror, find_debian_mirror

DEBIAN_SOURCES = """\
# Security first: not an archive debootstrap can make a root from.
Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://sources-only.example/debian
Suites: bookworm
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main

types: deb deb-src
# a comment inside the paragraph
URIs: cdrom:[Debian GNU/Linux 12]/
  http://mirror.example/debian/
  http://second.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://later.example/debian
Suites: bookworm
Components: main
"""

VENDOR_SOURCES = """\
Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
Signed-By: /usr/share/keyrings/nodesource.gpg
"""


def apt(tmp_path: Path, sources_list: str | None = None, parts: dict[str, str] | None = None) -> Path:
    """An apt configuration directory: ``sources.list`` (when given) and ``sources.list.d/<name>`` files."""
    directory = tmp_path / "apt"
    (directory / "sources.list.d").mkdir(parents=True)
    if sources_list is not None:
        (directory / "sources.list").write_text(sources_list)
    for name, text in (parts or {}).items():
        (directory / "sources.list.d" / name).write_text(text)
    return directory


def test_the_one_line_format_gives_the_first_debian_deb_entry(tmp_path: Path) -> None:
    sources = """\
# deb http://commented.example/debian bookworm main
deb-src http://sources-only.example/debian bookworm main
deb [signed-by=/usr/share/keyrings/cloud.gpg] https://packages.cloud.google.com/apt cloud-sdk-bookworm main
deb http://security.example/debian-security bookworm-security main
deb [ arch=amd64 signed-by=/usr/share/keyrings/debian.gpg ] http://mirror.example/debian/ bookworm main # the mirror
deb http://later.example/debian bookworm main
"""
    directory = apt(tmp_path, sources)
    assert find_debian_mirror("bookworm", directory) == Mirror(
        "http://mirror.example/debian", str(directory / "sources.list")
    )


def test_the_deb822_format_gives_the_first_enabled_debian_deb_uri_debootstrap_can_fetch(tmp_path: Path) -> None:
    directory = apt(tmp_path, parts={"debian.sources": DEBIAN_SOURCES})
    assert find_debian_mirror("bookworm", directory) == Mirror(
        "http://mirror.example/debian", str(directory / "sources.list.d" / "debian.sources")
    )


def test_files_are_read_in_apt_order_and_other_names_are_ignored(tmp_path: Path) -> None:
    directory = apt(
        tmp_path,
        "# nothing here but a comment\n",
        {
            "00-nodesource.sources": VENDOR_SOURCES,
            "10-first.list.disabled": "deb http://disabled.example/debian bookworm main\n",
            "20-mirror.list": "deb http://twenty.example/debian stable main\n",
            "30-debian.sources": DEBIAN_SOURCES,
        },
    )
    assert find_debian_mirror("bookworm", directory).url == "http://twenty.example/debian"
    (directory / "sources.list").write_text("deb http://main-list.example/debian sid main\n")
    assert find_debian_mirror("bookworm", directory).url == "http://main-list.example/debian"


def test_a_suite_outside_debians_release_names_counts_when_it_is_the_one_asked_for(tmp_path: Path) -> None:
    directory = apt(tmp_path, "deb http://ubuntu.example/ubuntu jammy main\n")
    with pytest.raises(MirrorNotFound):
        find_debian_mirror("bookworm", directory)
    assert find_debian_mirror("jammy", directory).url == "http://ubuntu.example/ubuntu"


def test_a_mirror_list_file_is_followed_to_its_first_uri(tmp_path: Path) -> None:
    mirrors = tmp_path / "mirrors" / "debian.list"
    mirrors.parent.mkdir()
    mirrors.write_text("# the cloud's mirrors\ncdrom:/nowhere\nhttps://cloud.example/debian\tpriority:1\n")
    directory = apt(tmp_path, f"deb mirror+file://{mirrors} bookworm main\n")
    assert find_debian_mirror("bookworm", directory).url == "https://cloud.example/debian"


def test_no_sources_at_all_is_one_line_naming_the_files_and_the_setting(tmp_path: Path) -> None:
    directory = apt(tmp_path)
    with pytest.raises(MirrorNotFound) as caught:
        find_debian_mirror("bookworm", directory)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{directory / 'sources.list'} (missing)" in message
    assert f"{directory / 'sources.list.d'}/*.list and *.sources (none)" in message
    assert message.endswith("set SANDBOX_DEBIAN_MIRROR to the URL of a Debian mirror to make the base image from")


def test_sources_without_a_debian_archive_name_every_file_read(tmp_path: Path) -> None:
    directory = apt(
        tmp_path,
        "deb http://security.example/debian-security bookworm-security main\n",
        {"nodesource.sources": VENDOR_SOURCES},
    )
    broken = directory / "sources.list.d" / "broken.list"
    broken.mkdir()  # unreadable as a file, whoever runs this
    with pytest.raises(MirrorNotFound) as caught:
        find_debian_mirror("bookworm", directory)
    message = str(caught.value)
    assert "\n" not in message
    looked = message.split("looked at ", 1)[1].split(";", 1)[0]
    assert looked == ", ".join(
        [
            str(directory / "sources.list"),
            f"{broken} (unreadable: Is a directory)",
            str(directory / "sources.list.d" / "nodesource.sources"),
        ]
    )


def test_the_setting_overrides_the_apt_sources_and_is_unset_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = apt(tmp_path, "deb http://machine.example/debian bookworm main\n")
    assert Settings().debian_mirror is None
    assert debian_mirror(load_settings(), directory) == Mirror(
        "http://machine.example/debian", str(directory / "sources.list")
    )
    monkeypatch.setenv("SANDBOX_DEBIAN_MIRROR", "http://override.example/debian")
    assert debian_mirror(load_settings(), directory) == Mirror(
        "http://override.example/debian", "SANDBOX_DEBIAN_MIRROR"
    )
    assert debian_mirror(load_settings(), tmp_path / "no-apt-here").url == "http://override.example/debian"
