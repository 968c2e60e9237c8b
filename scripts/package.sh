#!/usr/bin/env bash
# Builds the Debian 12 package of webhook_ext for PostgreSQL 15 and prints its path:
#   target/debian/postgresql-15-webhook-ext_<version>_<arch>.deb
# It holds the library (/usr/lib/postgresql/15/lib), the control file, the
# current version's install script, every released version's frozen script
# and every upgrade script (/usr/share/postgresql/15/extension), and the
# copyright and changelog (/usr/share/doc/<package>). Install it with
# `dpkg -i` (see docs/upgrades.md).
#
# `cargo pgrx package` runs the same cargo build as the `cargo pgrx install
# --release` of scripts/common.sh (same profile, features and flags), so
# after an install it reuses that build and only copies and generates files.
# Progress goes to stderr; stdout is the path of the package alone.
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"

ensure_toolchain >&2

PKG=postgresql-15-webhook-ext
# The crate's version, which the control file's default_version takes.
VERSION=$(cargo pkgid -p webhook_ext)
VERSION=${VERSION##*[@#]}
ARCH=$(dpkg --print-architecture)
OUT="$REPO_ROOT/target/debian"
STAGE="$OUT/${PKG}_${VERSION}_${ARCH}"
DEB="$STAGE.deb"
EXTDIR="$STAGE$("$PG_CONFIG" --sharedir)/extension"
LIBDIR="$STAGE$("$PG_CONFIG" --pkglibdir)"
DOCDIR="$STAGE/usr/share/doc/$PKG"

say "packaging webhook_ext $VERSION ($ARCH)" >&2
rm -rf "$STAGE" "$DEB"
mkdir -p "$OUT"
# Its stdout lists the files it copies; kept in a log, shown on failure.
if ! cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$STAGE" > "$OUT/package.log"; then
    cat "$OUT/package.log" >&2
    exit 1
fi

# cargo pgrx writes the current version's install script only (and takes
# upgrade scripts from sql/ itself, not from sql/upgrade/): the released
# versions' frozen scripts and the upgrade scripts go next to it, as
# install_extension does, so that CREATE EXTENSION … VERSION and ALTER
# EXTENSION … UPDATE work from the package.
install -m 644 sql/versions/*.sql sql/upgrade/*.sql "$EXTDIR/"
install -d "$DOCDIR"
install -m 644 LICENSE "$DOCDIR/copyright"
gzip -9n < CHANGELOG.md > "$DOCDIR/changelog.gz"

# Root-owned (--root-owner-group), directories 755, files 644 (a shared
# library needs no execute bit).
find "$STAGE" -type d -exec chmod 755 {} +
find "$STAGE" -type f -exec chmod 644 {} +

mkdir -p "$STAGE/DEBIAN"
(cd "$STAGE" && find usr -type f | LC_ALL=C sort | xargs md5sum) > "$STAGE/DEBIAN/md5sums"
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: $PKG
Version: $VERSION
Architecture: $ARCH
Maintainer: the webhook_ext authors
Installed-Size: $(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
Depends: postgresql-15
Section: database
Priority: optional
Description: PostgreSQL 15 extension: receive webhooks and store them as events
 webhook_ext makes the database a webhook receiver: a background worker
 serves HTTP, checks each request against its workflow's parameters and
 sender verification, stores it as an event and runs the workflow's SQL
 handler. Add webhook_ext to shared_preload_libraries, restart the server,
 then CREATE EXTENSION webhook_ext.
CONTROL
chmod 644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/md5sums"

# xz at its fastest level: its default (6) takes four times as long for a
# package a tenth smaller.
dpkg-deb --root-owner-group -Zxz -z1 --build "$STAGE" "$DEB" >&2
rm -rf "$STAGE"
echo "$DEB"
