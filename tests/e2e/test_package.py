"""The Debian package (scripts/package.sh, which scripts/test.sh runs after
installing the extension) and the PGXN META.json.

The package is tested without installing it over the suite's build: the
system's PostgreSQL 15 binaries and share directory are copied into a scratch
root, the package is unpacked over it with ``dpkg -x``, and a cluster runs
from that copy. PostgreSQL finds its share and lib directories relative to
the real location of its binary, so that server loads the packaged library
and the packaged SQL scripts only (the copy leaves out the system's
webhook_ext files).

META.json is checked by ``pgxn_meta``, the validator the PGXN maintainers
publish on crates.io (it embeds the official Meta Spec JSON schemas);
scripts/test.sh installs it."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import tomllib
import uuid

import pytest

import hookkit as hk
from conftest import run

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGE = "postgresql-15-webhook-ext"
FIRST_RELEASE = "0.1.0"
SYSTEM_BIN = "/usr/lib/postgresql/15"       # bin/ and lib/
SYSTEM_SHARE = "/usr/share/postgresql/15"   # extension/ and the rest
EXTDIR = "usr/share/postgresql/15/extension"
LIBDIR = "usr/lib/postgresql/15/lib"
BUILD = "scripts/package.sh"
VALIDATOR = "pgxn_meta"
VALIDATOR_INSTALL = "cargo install pgxn_meta --version 0.7.0 --locked"


def crate_version() -> str:
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        return tomllib.load(f)["package"]["version"]


def architecture() -> str:
    return run(["dpkg", "--print-architecture"]).stdout.strip()


def repo_scripts() -> dict[str, str]:
    """The frozen install scripts and the upgrade scripts: file name -> path."""
    paths = sorted(glob.glob(os.path.join(ROOT, "sql", "versions", "*.sql")) +
                   glob.glob(os.path.join(ROOT, "sql", "upgrade", "*.sql")))
    return {os.path.basename(p): p for p in paths}


def released_versions() -> list[str]:
    return sorted(re.fullmatch(r"webhook_ext--(.+)\.sql", os.path.basename(p)).group(1)
                  for p in glob.glob(os.path.join(ROOT, "sql", "versions", "webhook_ext--*.sql")))


def read(path: str, mode: str = "r") -> str | bytes:
    with open(path, mode) as f:
        return f.read()


@pytest.fixture(scope="module")
def deb() -> str:
    """The package scripts/package.sh built for this version and architecture."""
    path = os.path.join(ROOT, "target", "debian", f"{PACKAGE}_{crate_version()}_{architecture()}.deb")
    if not os.path.isfile(path):
        pytest.fail(f"{path} is missing: build it with {BUILD} (scripts/test.sh does, after "
                    "installing the extension)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def unpacked(deb, tmp_path_factory) -> str:
    """The package's files, unpacked alone."""
    target = str(tmp_path_factory.mktemp("deb"))
    run(["dpkg-deb", "-x", deb, target])
    return target


@pytest.fixture(scope="module")
def pg_root(deb, e2e_root) -> str:
    """A scratch root with a copy of the system's PostgreSQL 15 (binaries, lib
    and share directories, without any webhook_ext file) and the package
    unpacked over it with ``dpkg -x``."""
    root = os.path.join(e2e_root, "package-root")
    not_ours = shutil.ignore_patterns("webhook_ext*")
    shutil.copytree(SYSTEM_BIN, root + SYSTEM_BIN, symlinks=True, ignore=not_ours)
    shutil.copytree(SYSTEM_SHARE, root + SYSTEM_SHARE, symlinks=True, ignore=not_ours)
    assert glob.glob(f"{root}/**/webhook_ext*", recursive=True) == []
    run(["dpkg", "-x", deb, root])
    # The server sees the resolved path of its binary.
    yield os.path.realpath(root)
    shutil.rmtree(root, ignore_errors=True)


def test_the_package_declares_its_name_version_and_dependency(deb):
    fields = run(["dpkg-deb", "--field", deb, "Package", "Version", "Architecture", "Depends"]).stdout
    assert fields.splitlines() == [f"Package: {PACKAGE}", f"Version: {crate_version()}",
                                   f"Architecture: {architecture()}", "Depends: postgresql-15"]
    info = run(["dpkg-deb", "--info", deb]).stdout
    assert " Depends: postgresql-15\n" in info


def test_the_package_holds_the_library_every_script_and_its_documents(deb, unpacked):
    version = crate_version()
    scripts = repo_scripts()
    assert {f"webhook_ext--{FIRST_RELEASE}.sql", f"webhook_ext--{FIRST_RELEASE}--0.2.0.sql"} <= set(scripts)
    expected = sorted(
        [f"./{LIBDIR}/webhook_ext.so",
         f"./{EXTDIR}/webhook_ext.control",
         f"./{EXTDIR}/webhook_ext--{version}.sql",
         f"./usr/share/doc/{PACKAGE}/changelog.gz",
         f"./usr/share/doc/{PACKAGE}/copyright"]
        + [f"./{EXTDIR}/{name}" for name in scripts])
    listing = run(["dpkg-deb", "--contents", deb]).stdout.splitlines()
    files = sorted(line.split()[5] for line in listing if line.startswith("-"))
    assert files == expected
    owners = {line.split()[1] for line in listing}
    assert owners == {"root/root"}

    # The frozen and upgrade scripts are the repository's, byte for byte.
    for name, path in scripts.items():
        assert read(os.path.join(unpacked, EXTDIR, name), "rb") == read(path, "rb"), name
    control = read(os.path.join(unpacked, EXTDIR, "webhook_ext.control"))
    assert f"default_version = '{version}'\n" in control
    assert "module_pathname = '$libdir/webhook_ext'\n" in control
    assert read(os.path.join(unpacked, "usr/share/doc", PACKAGE, "copyright")) == \
        read(os.path.join(ROOT, "LICENSE"))
    changelog = run(["gzip", "-dc", os.path.join(unpacked, "usr/share/doc", PACKAGE, "changelog.gz")]).stdout
    assert changelog == read(os.path.join(ROOT, "CHANGELOG.md"))
    # The md5sums that dpkg checks installed files against: every file, right.
    md5sums = run(["dpkg-deb", "--info", deb, "md5sums"]).stdout
    assert sorted("./" + line.split(maxsplit=1)[1] for line in md5sums.splitlines()) == expected
    check = run(["md5sum", "--check", "--strict", "--quiet", "-"], cwd=unpacked, input=md5sums)
    assert (check.stdout, check.stderr) == ("", "")


def test_a_server_runs_the_packaged_library_and_scripts(make_cluster, pg_root):
    bin_dir = pg_root + SYSTEM_BIN + "/bin"
    c = make_cluster(conf={"webhook.workers": 1}, bin_dir=bin_dir)

    # The server reads the scratch root's share and lib directories, where
    # the package put every version.
    config = dict(c.sql("SELECT name, setting FROM pg_config WHERE name IN ('SHAREDIR', 'PKGLIBDIR')"))
    assert config == {"SHAREDIR": pg_root + SYSTEM_SHARE, "PKGLIBDIR": pg_root + SYSTEM_BIN + "/lib"}
    versions = c.sql("SELECT version FROM pg_available_extension_versions WHERE name = 'webhook_ext' "
                     "ORDER BY version")
    assert [v for (v,) in versions] == sorted(released_versions() + [crate_version()])
    assert c.scalar("SELECT default_version FROM pg_available_extensions WHERE name = 'webhook_ext'") \
        == crate_version()

    # The preloaded listener mapped the packaged library, not the system's.
    [listener] = c.wait_for_listeners(1)
    with open(f"/proc/{listener}/maps") as f:
        mapped = {line.split(maxsplit=5)[5].rstrip("\n") for line in f if len(line.split()) > 5}
    ours = sorted(path for path in mapped if os.path.basename(path).startswith("webhook_ext"))
    assert ours == [f"{pg_root}/{LIBDIR}/webhook_ext.so"]

    # The README's tour, served over HTTP.
    c.sql("CREATE EXTENSION webhook_ext")
    assert c.scalar("SELECT extversion FROM pg_extension WHERE extname = 'webhook_ext'") == crate_version()
    c.sql("CREATE TABLE orders (event_id bigint, order_id text, amount numeric)")
    c.sql("CREATE FUNCTION on_order(e webhook.events) RETURNS jsonb LANGUAGE sql AS $$ "
          "INSERT INTO orders VALUES (e.id, e.params->>'order_id', (e.params->>'amount')::numeric) "
          "RETURNING jsonb_build_object('stored', event_id) $$")
    wf = str(c.scalar("SELECT id FROM webhook_create_workflow('orders', 'on_order')"))
    c.sql("SELECT count(*) FROM webhook_sample_from_json(%s, '{\"order_id\": \"A-1\", \"amount\": 9.5}')", (wf,))
    c.sql("SELECT count(*) FROM webhook_set_required(%s, ARRAY['order_id'])", (wf,))
    hk.wait_ready(c)
    body = b'{"order_id": "A-1", "amount": 9.5}'
    r = hk.post_url(c.hook_url(wf), body, headers={"Content-Type": "application/json"})
    assert (r.status, r.headers["content-type"], r.body) == \
        (200, "application/json", f'{{"msg":"success","event_id":1,"workflow_id":"{wf}"}}'.encode())

    event = hk.wait_for_status(c, 1, "succeeded")
    assert {k: event[k] for k in ("workflow_id", "method", "params", "body", "origin", "attempts",
                                  "error", "listener_pid")} == \
        {"workflow_id": uuid.UUID(wf), "method": "POST",
         "params": {"order_id": "A-1", "amount": 9.5}, "body": body.decode(), "origin": "http",
         "attempts": 1, "error": None, "listener_pid": listener}
    assert c.rows("SELECT event_id, order_id, amount::text FROM orders") == \
        [{"event_id": 1, "order_id": "A-1", "amount": "9.5"}]

    # A released version installs from its frozen script in the package and
    # updates to this one through the packaged upgrade scripts.
    c.sql("CREATE DATABASE released")
    c.sql(f"CREATE EXTENSION webhook_ext VERSION '{FIRST_RELEASE}'", dbname="released")
    assert c.scalar("SELECT extversion FROM pg_extension WHERE extname = 'webhook_ext'",
                    dbname="released") == FIRST_RELEASE
    c.sql("ALTER EXTENSION webhook_ext UPDATE", dbname="released")
    assert c.scalar("SELECT extversion FROM pg_extension WHERE extname = 'webhook_ext'",
                    dbname="released") == crate_version()


# ------------------------------------------------------------------ META.json
def validator() -> str:
    path = shutil.which(VALIDATOR) or os.path.expanduser(f"~/.cargo/bin/{VALIDATOR}")
    if not os.access(path, os.X_OK):
        pytest.fail(f"the PGXN META.json validator {VALIDATOR} is missing: install it with "
                    f"`{VALIDATOR_INSTALL}` (scripts/test.sh does)", pytrace=False)
    return path


def validate(path: str) -> subprocess.CompletedProcess:
    return run([validator(), path], check=False)


def meta() -> dict:
    with open(os.path.join(ROOT, "META.json")) as f:
        return json.load(f)


def test_meta_json_is_valid_pgxn_metadata():
    result = validate(os.path.join(ROOT, "META.json"))
    assert (result.returncode, result.stdout, result.stderr) == \
        (0, f"{os.path.join(ROOT, 'META.json')} is OK\n", "")


def test_the_validator_rejects_meta_json_without_a_license(tmp_path):
    # Positive control: the same document, rewritten elsewhere, passes; without
    # a required field it fails, naming the field.
    path = tmp_path / "META.json"
    path.write_text(json.dumps(meta()))
    result = validate(str(path))
    assert (result.returncode, result.stdout) == (0, f"{path} is OK\n"), result
    broken = meta()
    del broken["license"]
    path.write_text(json.dumps(broken))
    result = validate(str(path))
    assert (result.returncode, result.stdout) == (1, ""), result
    assert result.stderr.startswith(f'Error: "{path} jsonschema validation failed with '
                                    "https://pgxn.org/meta/v1/distribution.schema.json#\\n"
                                    "- at '': missing properties 'license'\\n"), result.stderr


def control_default_version() -> str:
    """The control file's default_version as installed: cargo pgrx writes the
    crate's version over @CARGO_VERSION@."""
    control = read(os.path.join(ROOT, "webhook_ext.control"))
    default = re.search(r"^default_version = '(.*)'$", control, re.M).group(1)
    return crate_version() if default == "@CARGO_VERSION@" else default


def test_meta_json_names_this_version_and_files_that_exist():
    m = meta()
    version = crate_version()
    assert control_default_version() == version
    assert (m["name"], m["version"], m["provides"]["webhook_ext"]["version"]) == \
        ("webhook_ext", version, version)
    assert m["license"] == "mit"
    assert read(os.path.join(ROOT, "LICENSE")).startswith("MIT License\n")
    assert m["prereqs"] == {"runtime": {"requires": {"PostgreSQL": ">= 15.0.0, < 16.0.0"}}}
    extension = m["provides"]["webhook_ext"]
    for key in ("file", "docfile"):
        assert os.path.isfile(os.path.join(ROOT, extension[key])), extension[key]
