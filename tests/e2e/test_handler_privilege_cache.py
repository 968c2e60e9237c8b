"""The listener caches "the owner may call its handler" (USAGE on the
schema, EXECUTE on the function) and the handler's parsed call, and forgets
them only on changes to functions, schemas, roles (pg_authid rows) and the
webhook tables. Losing the privilege through role *membership*
(REVOKE group FROM owner) changes pg_auth_members only: the listener keeps
running the handler as if the owner still had it.

README: "The handler must stay callable by its owner ... checked as the owner
... whenever the listener loads it", "so a role cannot name another role's
SECURITY DEFINER function".
"""

import time

import pytest

from conftest import uniq
from hookkit import post, set_response
from tenantkit import make_tenant, private  # noqa: F401  (fixture)


@pytest.fixture
def setup(private):
    alice = make_tenant(private, uniq("alice"))
    grp, sch = uniq("finance"), uniq("fin")
    private.sql(f'CREATE ROLE "{grp}" NOLOGIN')
    private.sql(f"CREATE SCHEMA {sch}")
    private.sql(f'GRANT USAGE ON SCHEMA {sch} TO "{grp}"')
    private.sql(f"CREATE TABLE {sch}.ledger (s text)")
    private.sql(f"INSERT INTO {sch}.ledger VALUES ('ledger-secret')")
    private.sql(f"""CREATE FUNCTION {sch}.export(e webhook.events) RETURNS jsonb LANGUAGE sql
                    SECURITY DEFINER AS $h$ SELECT jsonb_build_object('s', (SELECT s FROM {sch}.ledger)) $h$""")
    private.sql(f'GRANT "{grp}" TO "{alice.name}"')
    try:
        yield alice, grp, sch
    finally:
        private.sql("DELETE FROM webhook.workflows")
        private.sql(f'DROP OWNED BY "{alice.name}" CASCADE')
        private.sql(f'DROP ROLE "{alice.name}"')
        private.sql(f"DROP SCHEMA {sch} CASCADE")
        private.sql(f'DROP ROLE "{grp}"')


def test_handler_is_refused_once_the_owner_leaves_the_group_that_granted_it(private, setup):
    alice, grp, sch = setup
    wf = alice.create_workflow(handler=f"{sch}.export")
    set_response(private, wf, "workflow", user=alice.name)
    # Positive control: while alice is in the group, the handler runs.
    r = post(private, wf, json_body={})
    assert (r.status_code, r.json()) == (200, {"s": "ledger-secret"})

    private.sql(f'REVOKE "{grp}" FROM "{alice.name}"')
    err = alice.error(f"SELECT {sch}.export(NULL)", sqlstate="42501")
    assert err["message"] == f"permission denied for schema {sch}"
    time.sleep(0.5)

    r = post(private, wf, json_body={})
    ev = private.row("SELECT id, status, error FROM webhook.events WHERE workflow_id = %s "
                     "ORDER BY id DESC LIMIT 1", (wf,))
    # README: a failed handler → 500 {"msg":"Workflow failed","event_id":N}.
    assert (r.status_code, r.json()) == (500, {"msg": "Workflow failed", "event_id": ev["id"]}), \
        f"alice still runs {sch}.export: {r.status_code} {r.text}"
    assert (ev["status"], ev["error"]) == (
        "failed", "42501: permission denied: the workflow's owner may not call its handler "
                  "(USAGE on its schema and EXECUTE on it are required)"), ev
    # Nothing of the ledger reached alice through the refused run.
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == 2
