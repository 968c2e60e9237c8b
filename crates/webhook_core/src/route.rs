//! Which workflow a request path names.
//!
//! Exactly one spelling of a workflow URL is accepted: `/hooks/{id}` with the id
//! in its canonical form (8-4-4-4-12 lower-case hex digits, as `uuid::Uuid`
//! prints it and `webhook_url()` hands out). Upper case, braces, `urn:uuid:`,
//! missing hyphens, a trailing slash or anything after the id all name no
//! workflow. A lenient match would let a request slip past path-based rules in
//! a proxy in front (`deny /hooks/<id>` would not stop `/hooks/<ID>/`).

use uuid::Uuid;

/// Where a request path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/hooks/{canonical id}`.
    Workflow(Uuid),
    /// Under `/hooks/` but not a canonical id: 404 "Workflow not found".
    NoSuchWorkflow,
    /// `/healthz`: the listener's health, for load balancers (health.rs).
    Health,
    /// `/metrics`: the Prometheus exposition (metrics.rs), when enabled.
    Metrics,
    /// Any other path: 404 "Not found".
    NotFound,
}

/// The route of a request path (without its query string).
pub fn route(path: &str) -> Route {
    if path == crate::health::PATH {
        return Route::Health;
    }
    if path == crate::metrics::PATH {
        return Route::Metrics;
    }
    let Some(rest) = path.strip_prefix("/hooks/") else {
        return Route::NotFound;
    };
    match canonical_id(rest) {
        Some(id) => Route::Workflow(id),
        None => Route::NoSuchWorkflow,
    }
}

/// The id if `s` is exactly a hyphenated lower-case UUID.
fn canonical_id(s: &str) -> Option<Uuid> {
    const HYPHENS: [usize; 4] = [8, 13, 18, 23];
    let bytes = s.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        if HYPHENS.contains(&i) {
            b == b'-'
        } else {
            b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
        }
    });
    if !well_formed {
        return None;
    }
    Uuid::try_parse(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b7e5f2c-3a4d-4e8f-9a1b-2c3d4e5f6a7b";

    #[test]
    fn canonical_id_is_a_workflow() {
        assert_eq!(
            route(&format!("/hooks/{ID}")),
            Route::Workflow(Uuid::parse_str(ID).unwrap())
        );
    }

    #[test]
    fn other_spellings_of_the_id_are_no_workflow() {
        let upper = ID.to_uppercase();
        let simple = ID.replace('-', "");
        let variants = [
            format!("/hooks/{upper}"),
            format!("/hooks/{}", ID.replacen('b', "B", 1)),
            format!("/hooks/urn:uuid:{ID}"),
            format!("/hooks/{{{ID}}}"),
            format!("/hooks/{simple}"),
            format!("/hooks/{ID}/"),
            format!("/hooks/{ID}/extra"),
            format!("/hooks/{ID}%20"),
            format!("/hooks/%30{}", &ID[1..]),
            format!("/hooks/{ID};x"),
            format!("/hooks//{ID}"),
            format!("/hooks/{}", &ID[..35]),
            format!("/hooks/{ID}0"),
            format!("/hooks/{}g", &ID[..35]),
            "/hooks/".to_string(),
            "/hooks/not-a-uuid".to_string(),
        ];
        for path in variants {
            assert_eq!(route(&path), Route::NoSuchWorkflow, "{path}");
        }
    }

    #[test]
    fn healthz_is_exactly_one_path() {
        assert_eq!(route("/healthz"), Route::Health);
        for path in [
            "/healthz/",
            "/Healthz",
            "/healthz/x",
            "//healthz",
            "/hooks/healthz",
        ] {
            assert_ne!(route(path), Route::Health, "{path}");
        }
    }

    #[test]
    fn paths_outside_hooks_are_not_found() {
        for path in [
            "/",
            "/hooks",
            "/Hooks/x",
            "//hooks/x",
            "/hook/x",
            "/api/hooks/x",
        ] {
            assert_eq!(route(path), Route::NotFound, "{path}");
        }
        assert_eq!(route(&format!("/HOOKS/{ID}")), Route::NotFound);
    }
}
