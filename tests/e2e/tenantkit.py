"""Hostile-tenant test helpers: a private cluster per test module and
non-superuser roles acting as tenants or attackers.

Attacks plant objects in ``public`` or hold locks, which would disturb every
other test on the shared session cluster, so each attack module gets its own.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from hookkit import wait_ready

TENANT_HANDLER = ("CREATE FUNCTION {schema}.handler(e webhook.events) RETURNS jsonb "
                  "LANGUAGE sql AS $h$ SELECT e.params $h$")


class Tenant:
    """A LOGIN role; ``sql``/``rows``/``scalar``/``error`` run as it."""

    def __init__(self, cluster, name: str):
        self.cluster, self.name = cluster, name

    def sql(self, query: str, params: Any = None):
        return self.cluster.sql(query, params, user=self.name)

    def rows(self, query: str, params: Any = None):
        return self.cluster.rows(query, params, user=self.name)

    def row(self, query: str, params: Any = None):
        return self.cluster.row(query, params, user=self.name)

    def scalar(self, query: str, params: Any = None):
        return self.cluster.scalar(query, params, user=self.name)

    def error(self, query: str, params: Any = None, sqlstate: str | None = None):
        return self.cluster.sql_error(query, params, sqlstate=sqlstate, user=self.name)

    def connect(self, **kw) -> psycopg.Connection:
        return self.cluster.connect(user=self.name, **kw)

    @property
    def handler(self) -> str:
        return f"{self.name}.handler"

    def is_superuser(self) -> bool:
        return self.cluster.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (self.name,))

    def create_workflow(self, handler: str | None = None, name: str = "hook") -> str:
        row = self.row("SELECT * FROM webhook_create_workflow(%s, %s::regproc)",
                       (name, handler or self.handler))
        return str(row["id"])


def make_tenant(cluster, name: str, admin: bool = True) -> Tenant:
    """A LOGIN role with its own schema (and a params handler in it when it is
    a webhook_admin member)."""
    cluster.sql(f'CREATE ROLE "{name}" LOGIN')
    cluster.sql(f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"')
    if admin:
        cluster.sql(f'GRANT webhook_admin TO "{name}"')
        cluster.sql(TENANT_HANDLER.format(schema=name), user=name)
    return Tenant(cluster, name)


def drop_tenants(cluster, names) -> None:
    """Removes every workflow, then the roles with all they own."""
    cluster.sql("DELETE FROM webhook.workflows")
    for name in names:
        cluster.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
        cluster.sql(f'DROP OWNED BY "{name}" CASCADE')
        cluster.sql(f'DROP ROLE IF EXISTS "{name}"')


def private_cluster_fixture(**conf):
    """A module-scoped fixture: a private preloaded cluster (one listener
    process, plus ``conf``) with the extension created."""

    @pytest.fixture(scope="module")
    def private(e2e_root):
        from conftest import Cluster, uniq
        c = Cluster(e2e_root, preload=True, conf={"webhook.workers": 1, **conf}, name=uniq("attack"))
        try:
            c.start()
            c.sql("CREATE EXTENSION webhook_ext")
            wait_ready(c)
            yield c
        finally:
            c.destroy()

    return private


def tenants_fixture(*keys: str):
    """A fixture: {key: Tenant} of fresh webhook_admin tenants (``alice`` ->
    ``alice_1a2b…``) on the module's ``private`` cluster, dropped afterwards."""

    @pytest.fixture
    def tenants(private):
        from conftest import uniq
        names = {k: uniq(k) for k in keys}
        made = {k: make_tenant(private, n) for k, n in names.items()}
        try:
            yield made
        finally:
            drop_tenants(private, names.values())

    return tenants


private = private_cluster_fixture()
