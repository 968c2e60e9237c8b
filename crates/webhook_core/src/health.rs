//! `/healthz`: whether a listener process accepts events, for load balancers.
//!
//! The listener's main thread checks once a second that the extension is
//! installed at the library's version; the network thread answers a probe
//! from what that check last found and how long ago it ran, without
//! touching the database. A check older than [`STALL_AFTER`] means the main
//! thread is held up (a commit waiting for a synchronous standby, a stuck
//! statement): events would not be answered either, so the probe fails too.

use std::time::Duration;

use serde_json::json;

use crate::request::Response;

/// The path a load balancer probes.
pub const PATH: &str = "/healthz";

/// A main thread whose last check is older than this is reported stalled.
/// It checks once a second, so this leaves two missed checks of slack.
pub const STALL_AFTER: Duration = Duration::from_secs(3);

/// The methods a probe may use.
pub const METHODS: [&str; 2] = ["GET", "HEAD"];

/// What the main thread's last check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// It has not checked yet (the process is starting).
    Never,
    /// It checked this long ago; `refusal` is what requests are answered
    /// instead of being served (`None`: they are served).
    Ago {
        elapsed: Duration,
        refusal: Option<Response>,
    },
}

/// The answer to a probe with `method`, given the main thread's last check.
pub fn answer(method: &str, checked: &Checked) -> Response {
    if !METHODS.contains(&method) {
        return Response::json(
            405,
            &json!({"msg": "Method not allowed", "allowed": METHODS}),
        )
        .with_header("allow", &METHODS.join(", "));
    }
    let answer = match checked {
        Checked::Never => Response::retry_later("Listener starting"),
        Checked::Ago { elapsed, .. } if *elapsed > STALL_AFTER => Response::retry_later(&format!(
            "Listener stalled: its main loop has not checked in for {} s",
            STALL_AFTER.as_secs()
        )),
        Checked::Ago {
            refusal: Some(refusal),
            ..
        } => refusal.clone(),
        Checked::Ago { refusal: None, .. } => Response::json(200, &json!({"msg": "ok"})),
    };
    // A probe's answer is about this moment only.
    answer.with_header("cache-control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(secs: f64, refusal: Option<Response>) -> Checked {
        Checked::Ago {
            elapsed: Duration::from_secs_f64(secs),
            refusal,
        }
    }

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_recent_check_that_found_the_extension_is_ok() {
        for method in ["GET", "HEAD"] {
            let response = answer(method, &ago(0.5, None));
            assert_eq!(response.status, 200);
            assert_eq!(response.body, br#"{"msg":"ok"}"#);
            assert_eq!(header(&response, "cache-control"), Some("no-store"));
            assert_eq!(header(&response, "retry-after"), None);
        }
    }

    #[test]
    fn the_refusal_requests_get_is_the_probes_answer() {
        let refusal =
            Response::retry_later("webhook_ext is not installed in the listener's database");
        let response = answer("GET", &ago(0.1, Some(refusal)));
        assert_eq!(response.status, 503);
        assert_eq!(
            response.body,
            br#"{"msg":"webhook_ext is not installed in the listener's database"}"#
        );
        assert_eq!(header(&response, "retry-after"), Some("1"));
    }

    #[test]
    fn an_old_check_is_a_stall_whatever_it_found() {
        for refusal in [None, Some(Response::retry_later("other"))] {
            let response = answer("GET", &ago(3.01, refusal));
            assert_eq!(response.status, 503);
            assert_eq!(
                response.body,
                br#"{"msg":"Listener stalled: its main loop has not checked in for 3 s"}"#
            );
            assert_eq!(header(&response, "retry-after"), Some("1"));
        }
        assert_eq!(answer("GET", &ago(3.0, None)).status, 200);
    }

    #[test]
    fn before_the_first_check_it_is_starting() {
        let response = answer("GET", &Checked::Never);
        assert_eq!(response.status, 503);
        assert_eq!(response.body, br#"{"msg":"Listener starting"}"#);
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get", "head"] {
            let response = answer(method, &ago(0.1, None));
            assert_eq!(response.status, 405, "{method}");
            assert_eq!(
                response.body,
                br#"{"msg":"Method not allowed","allowed":["GET","HEAD"]}"#
            );
            assert_eq!(header(&response, "allow"), Some("GET, HEAD"));
        }
    }
}
