"""A role with only CREATE on schema public (not webhook_admin) plants
overloads of the webhook_* API functions next to the real ones in the
extension's schema (public). A superuser who calls the API on the default
search_path with untyped literals -- the way the README writes its examples
-- resolves the planted overload (PostgreSQL prefers a text parameter for an
unknown literal) and runs it with superuser rights.

The README claims: "Every function of the extension carries SET search_path
... so a superuser calling the API on the default path runs no planted code
either." The SET clause protects the body of the real function, not the
choice of which function a call resolves to.
"""

import pytest

from conftest import uniq
from tenantkit import make_tenant, private  # noqa: F401  (fixture)

PLANT = """
CREATE FUNCTION public.{fn}({args}) RETURNS {ret} LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO {m}.calls VALUES ('{fn}', current_user);
    BEGIN
        EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', '{m}');
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    RETURN NULL;
END $f$"""


@pytest.fixture
def roles(private):
    alice = make_tenant(private, uniq("alice"))
    mallory = make_tenant(private, uniq("mallory"), admin=False)
    m = mallory.name
    private.sql(f'GRANT CREATE ON SCHEMA public TO "{m}"')
    mallory.sql(f"CREATE TABLE {m}.calls (fn text, who text)")
    mallory.sql(f"GRANT USAGE ON SCHEMA {m} TO PUBLIC")
    mallory.sql(f"GRANT INSERT ON {m}.calls TO PUBLIC")
    try:
        yield alice, mallory
    finally:
        private.sql("DELETE FROM webhook.workflows")
        for t in (alice, mallory):
            private.sql(f'ALTER ROLE "{t.name}" NOSUPERUSER')
            private.sql(f'DROP OWNED BY "{t.name}" CASCADE')
            private.sql(f'DROP ROLE "{t.name}"')


def test_create_extension_warns_and_a_schema_of_its_own_keeps_overloads_out(private, roles, uniq):
    alice, mallory = roles
    m = mallory.name
    # Positive control: where mallory may create next to the API functions, a
    # planted overload is what a superuser's call with an untyped literal runs.
    # (PostgreSQL resolves calls by name; SET search_path cannot change that.)
    assert mallory.scalar("SELECT pg_has_role(current_user, 'webhook_admin', 'MEMBER')") is False
    assert mallory.scalar("SELECT has_schema_privilege('public', 'CREATE')") is True
    db = uniq("api")
    private.sql(f'CREATE DATABASE "{db}"')
    try:
        private.sql("GRANT CREATE ON SCHEMA public TO PUBLIC", dbname=db)
        # CREATE EXTENSION says so when non-superusers may create in its schema.
        _, notices = private.sql_notices("CREATE EXTENSION webhook_ext", dbname=db)
        warnings = [n for n in notices if n["severity"] == "WARNING"
                    and n["message"].startswith("roles that are not superusers may create objects in schema")]
        assert warnings == [{
            "sqlstate": "01000", "severity": "WARNING",
            "message": "roles that are not superusers may create objects in schema public, "
                       "which holds the webhook_* functions",
            "detail": "Such a role can plant an overload of an API function that a superuser's call resolves to.",
            "hint": "Revoke CREATE on that schema from them, or install the extension into a schema of its own: "
                    "CREATE EXTENSION webhook_ext SCHEMA webhook_api."}], notices
        # Positive control: mallory plants webhook_url(text) next to the real
        # webhook_url(uuid); a superuser's call with an untyped literal runs
        # it, with superuser rights (in a transaction that is rolled back).
        private.sql(f'CREATE SCHEMA "{m}" AUTHORIZATION "{m}"', dbname=db)
        private.sql(f"CREATE TABLE {m}.calls (fn text, who text)", user=m, dbname=db)
        private.sql(f"GRANT USAGE ON SCHEMA {m} TO PUBLIC", user=m, dbname=db)
        private.sql(f"GRANT INSERT, SELECT ON {m}.calls TO PUBLIC", user=m, dbname=db)
        private.sql(PLANT.format(fn="webhook_url", args="w text", ret="text", m=m), user=m, dbname=db)
        wf_id = "00000000-0000-4000-8000-000000000000"
        with private.connect(dbname=db) as conn:
            with conn.transaction(force_rollback=True):
                assert conn.execute(f"SELECT webhook_url('{wf_id}')").fetchone()[0] is None
                assert conn.execute(f"SELECT fn, who FROM {m}.calls").fetchall() == [("webhook_url", "postgres")]
                assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s",
                                    (m,)).fetchone()[0] is True, "the planted overload does not escalate"
        assert mallory.is_superuser() is False
        assert private.sql(f"SELECT fn, who FROM {m}.calls", dbname=db) == []
        private.sql("DROP FUNCTION public.webhook_url(text)", dbname=db)
        private.sql("DROP EXTENSION webhook_ext", dbname=db)

        # Installed into a schema of its own, the API is out of mallory's reach.
        private.sql("CREATE SCHEMA webhook_api", dbname=db)
        _, notices = private.sql_notices("CREATE EXTENSION webhook_ext SCHEMA webhook_api", dbname=db)
        # Only the warning that the listener serves another database remains.
        assert [n["message"] for n in notices] == [
            f'webhook_ext listener serves database "postgres", not "{db}"'], notices
        err = private.sql_error("CREATE FUNCTION webhook_api.webhook_url(w text) RETURNS text "
                                "LANGUAGE sql AS 'SELECT w'", user=m, dbname=db, sqlstate="42501")
        assert err["message"] == "permission denied for schema webhook_api"
    finally:
        private.sql(f'DROP DATABASE "{db}" WITH (FORCE)')
    assert mallory.is_superuser() is False
