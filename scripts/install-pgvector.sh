#!/usr/bin/env bash
# Builds and installs the pgvector extension (Debian's source package, version 0.8.0) against
# the local PostgreSQL server, for the semantic cache (docs/cache.md). Debian bookworm ships no
# pgvector package for PostgreSQL 15, so it is built from the source Debian publishes.
#
# Idempotent: does nothing when the server already offers the `vector` extension (the check
# reads the installed extension's control file, so the server need not be running).
# Needs root and apt-get (it installs postgresql-server-dev-<major> and build-essential).
set -euo pipefail

VERSION="${PGVECTOR_VERSION:-0.8.0}"
POOL="${PGVECTOR_POOL:-http://deb.debian.org/debian/pool/main/p/pgvector}"

pg_config_bin="$(command -v pg_config || true)"
if [ -z "$pg_config_bin" ]; then
  major="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)"
  pg_config_bin="/usr/lib/postgresql/${major}/bin/pg_config"
fi
if [ -x "$pg_config_bin" ] \
  && [ -f "$("$pg_config_bin" --sharedir)/extension/vector.control" ]; then
  echo "pgvector: already installed for $("$pg_config_bin" --version)"
  exit 0
fi
major="$(ls /usr/lib/postgresql | sort -n | tail -1)"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "pgvector: not installed, and building it needs root and apt-get" >&2
  exit 1
fi
echo "pgvector: building ${VERSION} for PostgreSQL ${major}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "postgresql-server-dev-${major}" build-essential curl >/dev/null \
  || { apt-get update -qq >/dev/null \
    && apt-get install -y -qq "postgresql-server-dev-${major}" build-essential curl >/dev/null; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl -fsSL -o "$work/pgvector.tar.gz" "${POOL}/pgvector_${VERSION}.orig.tar.gz"
tar -xzf "$work/pgvector.tar.gz" -C "$work"
source_dir="$(find "$work" -maxdepth 1 -mindepth 1 -type d | head -1)"
pg_config_bin="/usr/lib/postgresql/${major}/bin/pg_config"
# OPTFLAGS="": no -march=native, so the library runs on any machine of this architecture.
make -s -C "$source_dir" PG_CONFIG="$pg_config_bin" OPTFLAGS="" >/dev/null
make -s -C "$source_dir" PG_CONFIG="$pg_config_bin" install >/dev/null
echo "pgvector: installed $(grep default_version "$("$pg_config_bin" --sharedir)/extension/vector.control")"
