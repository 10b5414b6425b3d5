"""The seeded Keycloak database: made once per build by `kc.sh export`, reused, remade when the build changes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from sandbox.config import Settings
from sandbox.errors import DistributionError
from sandbox.stack.distribution import KeycloakDistribution
from sandbox.stack.java import Jdk
from sandbox.stack.keycloak_seed import DATABASE_FILE, SeededDatabase

VERSION = "0.0-test"
# Stands in for kc.sh: records its arguments, and writes "the database" where --db-url says, holding the
# bootstrap client secret it was given (so a test can tell the environment reached it).
FAKE_KC_SH = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/../calls"
for arg; do
  case "$arg" in
    --db-url=*) path="${arg#--db-url=jdbc:h2:file:}"; path="${path%%;*}.mv.db"
                mkdir -p "$(dirname "$path")"; printf '%s' "$KC_BOOTSTRAP_ADMIN_CLIENT_SECRET" > "$path" ;;
  esac
done
case "$JAVA_OPTS_APPEND" in  # the JVM writes its class archive as it exits
  *-XX:ArchiveClassesAtExit=*) archive="${JAVA_OPTS_APPEND##*-XX:ArchiveClassesAtExit=}"
                               echo classes > "${archive%% *}" ;;
esac
"""


def seed_for(tmp_path: Path, **extra: object) -> SeededDatabase:
    settings = Settings(
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
        keycloak_version=VERSION,
        **extra,  # type: ignore[arg-type]
    )
    distribution = KeycloakDistribution(settings)
    kc_sh = distribution.kc_sh
    kc_sh.parent.mkdir(parents=True, exist_ok=True)
    kc_sh.write_text(FAKE_KC_SH)
    kc_sh.chmod(0o755)
    return SeededDatabase(settings, distribution)


def calls(seed: SeededDatabase) -> list[str]:
    path = seed.distribution.home / "calls"
    return path.read_text().splitlines() if path.exists() else []


def ensure(seed: SeededDatabase, tmp_path: Path):  # type: ignore[no-untyped-def]
    return seed.ensure(Jdk(tmp_path / "jdk", 17), lambda step: None, username="admin", client_id="sandbox-admin")


def test_the_seed_is_made_once_by_an_export_on_loopback_and_its_admin_kept_private(tmp_path: Path) -> None:
    seed = seed_for(tmp_path)
    admin = ensure(seed, tmp_path)
    (export,) = calls(seed)
    assert export.startswith("export --optimized")
    assert "--http-host=127.0.0.1" in export.split() and "--realm=master" in export.split()
    assert (seed.directory / DATABASE_FILE).read_text() == admin.client_secret  # the bootstrap env reached it
    assert (admin.username, admin.client_id) == ("admin", "sandbox-admin")
    assert stat.S_IMODE((seed.directory / "admin.json").stat().st_mode) == 0o600
    assert ensure(seed, tmp_path) == admin and len(calls(seed)) == 1  # reused, not made again
    assert seed.class_archive.read_text() == "classes\n"  # the export's class archive is kept with the seed

    copy = tmp_path / "stack" / "db"
    seed.copy_to(copy)
    assert (copy / DATABASE_FILE).read_text() == admin.client_secret


def test_a_changed_build_makes_a_new_seed(tmp_path: Path) -> None:
    first = ensure(seed_for(tmp_path), tmp_path)
    rebuilt = seed_for(tmp_path, keycloak_features=("token-exchange-standard",))
    second = ensure(rebuilt, tmp_path)
    assert second.client_secret != first.client_secret and len(calls(rebuilt)) == 2
    assert (
        json.loads((rebuilt.directory / "made-by.json").read_text())["options"] == rebuilt.distribution.build_options()
    )


def test_a_failed_export_names_its_log_and_leaves_no_seed(tmp_path: Path) -> None:
    seed = seed_for(tmp_path)
    seed.distribution.kc_sh.write_text("#!/bin/sh\necho cannot open the database\nexit 3\n")
    with pytest.raises(DistributionError) as failure:
        ensure(seed, tmp_path)
    assert "kc.sh export exited 3" in str(failure.value)
    assert str(seed.settings.log_dir / "keycloak-seed.log") in str(failure.value)
    assert (seed.settings.log_dir / "keycloak-seed.log").read_text() == "cannot open the database\n"
    assert not seed.directory.exists()
    assert [p.name for p in seed.distribution.cache.iterdir() if p.name.startswith(".database-")] == []


def test_each_build_keeps_a_seed_of_its_own(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    distribution = KeycloakDistribution(settings)
    seed = SeededDatabase(settings, distribution)
    assert seed.directory == distribution.cache / f"database-{distribution.home.name}"
    distribution.home = tmp_path / "keycloak-of-another-checkout"  # e.g. a build with other provider sources
    assert seed.directory.name == "database-keycloak-of-another-checkout"
