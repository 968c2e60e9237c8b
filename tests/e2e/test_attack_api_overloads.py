"""Issue 6 item 1 (found in review): a role with only CREATE on schema public (not webhook_admin) plants
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
        assert len(warnings) == 1, notices
        assert "SCHEMA" in warnings[0]["hint"]
        private.sql("DROP EXTENSION webhook_ext", dbname=db)

        # Installed into a schema of its own, the API is out of mallory's reach.
        private.sql("CREATE SCHEMA webhook_api", dbname=db)
        _, notices = private.sql_notices("CREATE EXTENSION webhook_ext SCHEMA webhook_api", dbname=db)
        assert not [n for n in notices if n["message"].startswith("roles that are not superusers")], notices
        err = private.sql_error("CREATE FUNCTION webhook_api.webhook_url(w text) RETURNS text "
                                "LANGUAGE sql AS 'SELECT w'", user=m, dbname=db, sqlstate="42501")
        assert err["message"] == "permission denied for schema webhook_api"
    finally:
        private.sql(f'DROP DATABASE "{db}" WITH (FORCE)')
    assert mallory.is_superuser() is False
