//! `#[pg_test]`s of the SQL API, run by `cargo pgrx test` inside a throwaway
//! cluster (each test in its own rolled-back transaction). The end-to-end
//! suite in tests/e2e covers the same API over real HTTP.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use serde_json::json;

    fn create_workflow(name: &str) -> String {
        Spi::run(
            "CREATE OR REPLACE FUNCTION test_handler(e webhook.events) RETURNS jsonb
             LANGUAGE sql AS 'SELECT jsonb_build_object(''got'', e.params)'",
        )
        .unwrap();
        Spi::get_one_with_args::<String>(
            "SELECT id::text FROM webhook_create_workflow($1, 'test_handler')",
            &[name.into()],
        )
        .unwrap()
        .unwrap()
    }

    /// Runs `sql` with one text argument in a subtransaction and returns the
    /// error it raised as "SQLSTATE: message".
    fn error_of(sql: &str, arg: String) -> String {
        crate::pipeline::spi_util::in_subtransaction(|| Spi::run_with_args(sql, &[arg.into()]))
            .err()
            .map(|e| e.describe())
            .unwrap_or_else(|| "no error".into())
    }

    /// Runs `sql` with the workflow id as its one argument.
    fn run(sql: &str, id: &str) {
        Spi::run_with_args(sql, &[id.to_string().into()]).unwrap();
    }

    /// `webhook_trigger(id, body => body)`'s result.
    fn trigger(id: &str, body: &str) -> serde_json::Value {
        Spi::get_one_with_args::<pgrx::JsonB>(
            "SELECT webhook_trigger($1::uuid, body => $2::jsonb)",
            &[id.to_string().into(), body.to_string().into()],
        )
        .unwrap()
        .unwrap()
        .0
    }

    fn count(query: &str, arg: String) -> i64 {
        Spi::get_one_with_args::<i64>(query, &[arg.into()])
            .unwrap()
            .unwrap()
    }

    #[pg_test]
    fn find_workflow_by_full_id_fragment_and_url() {
        let id = create_workflow("find");
        let find = |q: String| count("SELECT count(*) FROM webhook_find_workflow($1)", q);
        assert_eq!(find(id.clone()), 1);
        assert_eq!(find(id.to_uppercase()), 1);
        assert_eq!(find(id.replace('-', "")), 1);
        assert_eq!(find(format!("http://example.test/hooks/{id}?x=1")), 1);
        assert_eq!(find(id[9..18].to_string()), 1);
        assert_eq!(find("zz".into()), 0);
        assert_eq!(find("abc".into()), 0);
    }

    #[pg_test]
    fn url_uses_listen_address_and_port_by_default() {
        let id = create_workflow("url");
        let url =
            Spi::get_one_with_args::<String>("SELECT webhook_url($1::uuid)", &[id.clone().into()])
                .unwrap()
                .unwrap();
        assert_eq!(url, format!("http://127.0.0.1:8787/hooks/{id}"));
    }

    #[pg_test]
    fn kv_sample_keeps_line_order_and_types() {
        let id = create_workflow("kv");
        run("SELECT webhook_sample_from_kv($1::uuid, E'zeta=007\\nalpha: 1e3\\nflag=TRUE\\ntag=a\\ntag=b')", &id);
        let params = Spi::get_one_with_args::<pgrx::JsonB>(
            "SELECT jsonb_agg(jsonb_build_array(name, type, sample) ORDER BY position)
               FROM webhook.parameters WHERE workflow_id = $1::uuid",
            &[id.into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            params.0,
            json!([
                ["zeta", "text", "007"],
                ["alpha", "number", 1000],
                ["flag", "boolean", true],
                ["tag", "array", ["a", "b"]]
            ])
        );
    }

    #[pg_test]
    fn resampling_keeps_required_flags_of_remaining_parameters() {
        let id = create_workflow("resample");
        run(
            "SELECT webhook_sample_from_json($1::uuid, '{\"a\": 1, \"b\": {\"c\": \"x\"}}')",
            &id,
        );
        run(
            "SELECT webhook_set_required($1::uuid, ARRAY['a', 'b.c'])",
            &id,
        );
        run(
            "SELECT webhook_sample_from_json($1::uuid, '{\"b\": {\"c\": \"y\"}, \"d\": true}')",
            &id,
        );
        let required = Spi::get_one_with_args::<Vec<String>>(
            "SELECT array_agg(name ORDER BY name) FROM webhook.parameters
              WHERE workflow_id = $1::uuid AND required",
            &[id.into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(required, vec!["b.c".to_string()]);
    }

    #[pg_test]
    fn set_required_rejects_unknown_names_and_changes_nothing() {
        let id = create_workflow("unknown");
        run(
            "SELECT webhook_sample_from_json($1::uuid, '{\"a\": 1}')",
            &id,
        );
        let error = error_of(
            "SELECT webhook_set_required($1::uuid, ARRAY['a', 'nope'])",
            id.clone(),
        );
        assert_eq!(
            error,
            format!("42704: unknown parameter(s) for workflow {id}: nope")
        );
        let required = count(
            "SELECT count(*) FROM webhook.parameters WHERE workflow_id = $1::uuid AND required",
            id,
        );
        assert_eq!(required, 0);
    }

    #[pg_test]
    fn errors_have_proper_sqlstates() {
        assert_eq!(
            error_of("SELECT webhook_create_workflow($1, 'now')", "bad".into()),
            "42P13: handler now() must take exactly one argument of type webhook.events or jsonb"
        );
        let id = create_workflow("errors");
        assert_eq!(
            error_of(
                "SELECT webhook_sample_from_json($1::uuid, '42')",
                id.clone()
            ),
            "22023: a JSON sample must be an object or an array"
        );
        assert_eq!(
            error_of(
                "SELECT webhook_sample_from_kv($1::uuid, E'a=1\\nno separator')",
                id.clone()
            ),
            "22P02: invalid key-value sample"
        );
        assert_eq!(
            error_of("SELECT webhook_set_response($1::uuid, 'sometimes')", id),
            "22023: invalid response method \"sometimes\""
        );
        let unknown = "00000000-0000-0000-0000-000000000000".to_string();
        assert_eq!(
            error_of("SELECT webhook_url($1::uuid)", unknown.clone()),
            format!("42704: workflow {unknown} does not exist")
        );
    }

    #[pg_test]
    fn trigger_runs_the_pipeline_and_stores_the_event() {
        let id = create_workflow("trigger");
        run(
            "SELECT webhook_sample_from_json($1::uuid, '{\"order_id\": \"A\"}')",
            &id,
        );
        run(
            "SELECT webhook_set_required($1::uuid, ARRAY['order_id'])",
            &id,
        );

        let missing = trigger(&id, "{}");
        assert_eq!(missing["status"], 400);
        assert_eq!(
            missing["body"],
            json!({"msg": "Missing required parameter(s)", "missing": ["order_id"]})
        );

        let accepted = trigger(&id, "{\"order_id\": \"A-7\"}");
        assert_eq!(accepted["status"], 200);
        assert_eq!(accepted["body"]["msg"], "success");
        let events = count(
            "SELECT count(*) FROM webhook.events
              WHERE workflow_id = $1::uuid AND origin = 'trigger' AND status = 'succeeded'
                AND params->>'order_id' = 'A-7'",
            id,
        );
        assert_eq!(events, 1);
    }

    #[pg_test]
    fn workflow_method_returns_the_handler_value_and_failures_are_recorded() {
        let id = create_workflow("workflow-method");
        run("SELECT webhook_set_response($1::uuid, 'workflow')", &id);
        let ok = trigger(&id, "{\"x\": 1}");
        assert_eq!(ok["status"], 200);
        assert_eq!(ok["body"], json!({"got": {"x": 1}}));

        Spi::run(
            "CREATE OR REPLACE FUNCTION test_handler(e webhook.events) RETURNS jsonb
             LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''boom'' USING ERRCODE = ''P0001''; END'",
        )
        .unwrap();
        let failed = trigger(&id, "{\"x\": 2}");
        assert_eq!(failed["status"], 500);
        assert_eq!(failed["body"]["msg"], "Workflow failed");
        let error = Spi::get_one_with_args::<String>(
            "SELECT error FROM webhook.events WHERE workflow_id = $1::uuid AND status = 'failed'",
            &[id.into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(error, "P0001: boom");
    }
}
