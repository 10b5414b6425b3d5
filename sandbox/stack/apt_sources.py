"""The Debian mirror this machine's apt already uses, for ``debootstrap`` (``python -m sandbox.stack.images``).

Read as apt reads its sources: ``/etc/apt/sources.list``, then the files of ``/etc/apt/sources.list.d`` in name
order, ``*.list`` in the one-line format (``deb [options] URI suite components``) and ``*.sources`` in the deb822
format (paragraphs of ``Types:``, ``URIs:``, ``Suites:``, ...). The mirror is the URI of the first ``deb`` entry
for a Debian release, over a transport debootstrap can use; ``mirror+file:`` lists are followed to their first
URI. ``SANDBOX_DEBIAN_MIRROR`` (``Settings.debian_mirror``) overrides all of it, as Maven's own mirror settings
decide where the IdP's distribution comes from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sandbox.config import Settings
from sandbox.errors import SandboxError

APT_DIR = Path("/etc/apt")
#: Debian's release names and their aliases: a suite among them (or the one asked for) marks a Debian archive,
#: where another vendor's repository (its own suite names) or Debian's security archive (``<release>-security``)
#: is not one debootstrap can make a root from.
DEBIAN_RELEASES = frozenset(
    {
        "buster",
        "bullseye",
        "bookworm",
        "trixie",
        "forky",
        "duke",
        "sid",
        "oldoldstable",
        "oldstable",
        "stable",
        "testing",
        "unstable",
    }
)
#: The transports debootstrap fetches with (apt's own, such as ``cdrom:`` or ``tor+http:``, it cannot use).
FETCHABLE = re.compile(r"^(https?|ftp)://|^file:")
MIRROR_LIST = re.compile(r"^mirror\+(file:.*)$")


class MirrorNotFound(SandboxError):
    pass


@dataclass(frozen=True)
class Mirror:
    url: str
    source: str  # where it was found: a sources file, or the setting


@dataclass(frozen=True)
class Entry:
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]


def debian_mirror(settings: Settings, apt_dir: Path = APT_DIR) -> Mirror:
    """``SANDBOX_DEBIAN_MIRROR`` when set, else the Debian mirror of this machine's apt sources."""
    if settings.debian_mirror:
        return Mirror(settings.debian_mirror, "SANDBOX_DEBIAN_MIRROR")
    return find_debian_mirror(settings.debian_suite, apt_dir)


def find_debian_mirror(suite: str, apt_dir: Path = APT_DIR) -> Mirror:
    """The first Debian archive in the sources under ``apt_dir``; a one-line error naming the files if none."""
    releases = DEBIAN_RELEASES | {suite}
    looked: list[str] = []
    files = source_files(apt_dir)
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            looked.append(f"{path} (missing)")
            continue
        except OSError as exc:
            looked.append(f"{path} (unreadable: {exc.strerror or exc})")
            continue
        looked.append(str(path))
        entries = deb822_entries(text) if path.suffix == ".sources" else one_line_entries(text)
        for entry in entries:
            if "deb" not in entry.types or not releases.intersection(entry.suites):
                continue
            for uri in entry.uris:
                url = _fetchable(uri)
                if url:
                    return Mirror(url.rstrip("/"), str(path))
    if len(files) == 1:  # sources.list alone
        looked.append(f"{apt_dir / 'sources.list.d'}/*.list and *.sources (none)")
    raise MirrorNotFound(
        f"no Debian archive for {suite} (a `deb` entry with a Debian release as its suite, over http, https, ftp "
        f"or file) in this machine's apt sources: looked at {', '.join(looked)}",
        "set SANDBOX_DEBIAN_MIRROR to the URL of a Debian mirror to make the base image from",
    )


def source_files(apt_dir: Path) -> list[Path]:
    """apt's source files in the order apt reads them: ``sources.list`` first, then ``sources.list.d`` by name."""
    listed = apt_dir / "sources.list.d"
    parts = sorted(p for p in listed.glob("*") if p.suffix in (".list", ".sources")) if listed.is_dir() else []
    return [apt_dir / "sources.list", *parts]


def one_line_entries(text: str) -> Iterator[Entry]:
    """``type [options] uri suite [component...]`` per line; ``#`` starts a comment."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        kind, rest = words[0], words[1:]
        if rest and rest[0].startswith("["):  # options: "[a=b c=d]" or "[ a=b ]", possibly several words
            end = next((i for i, word in enumerate(rest) if word.endswith("]")), len(rest))
            rest = rest[end + 1 :]
        if len(rest) >= 2:
            yield Entry((kind,), (rest[0],), (rest[1],))


def deb822_entries(text: str) -> Iterator[Entry]:
    """Paragraphs of ``Field: value`` (continued on indented lines; ``#`` lines are comments), blank-line apart."""
    fields: dict[str, str] = {}
    last = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields and fields.get("enabled", "yes").strip().lower() != "no":
                yield Entry(*(tuple(fields.get(name, "").split()) for name in ("types", "uris", "suites")))
            fields, last = {}, ""
        elif line[0] in " \t" and last:
            fields[last] += " " + line.strip()
        elif ":" in line:
            name, value = line.split(":", 1)
            last = name.strip().lower()
            fields[last] = value.strip()


def _fetchable(uri: str) -> str | None:
    """The URI itself when debootstrap can fetch from it, a ``mirror+file:`` list's first such URI, else None."""
    listed = MIRROR_LIST.match(uri)
    if listed is None:
        return uri if FETCHABLE.match(uri) else None
    path = Path(re.sub(r"^file:(//)?", "", listed.group(1)))
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        words = line.split("#", 1)[0].split()
        if words and FETCHABLE.match(words[0]):
            return words[0]
    return None
