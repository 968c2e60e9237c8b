//! `#[pg_test]`s of the SQL API, run by `cargo pgrx test` in a throwaway cluster.

use pgrx::prelude::*;

#[pg_test]
fn find_workflow_by_full_id_fragment_and_url() {
    Spi::run("CREATE FUNCTION h(e webhook.events) RETURNS jsonb LANGUAGE sql AS 'SELECT e.params'")
        .unwrap();
    let id = Spi::get_one::<String>("SELECT id::text FROM webhook_create_workflow('t', 'h')")
        .unwrap()
        .unwrap();
    let count = |q: String| {
        Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM webhook_find_workflow($1)",
            &[q.into()],
        )
        .unwrap()
        .unwrap()
    };
    assert_eq!(count(id.clone()), 1);
    assert_eq!(count(id.to_uppercase()), 1);
    assert_eq!(count(format!("http://example.test/hooks/{id}?x=1")), 1);
    assert_eq!(count(id[9..18].to_string()), 1);
    assert_eq!(count("zz".into()), 0);
}
