//! `/metrics`: the Prometheus text exposition (format 0.0.4) of what
//! `webhook.workflow_stats` and `webhook_processes()` show, rendered from one
//! snapshot the listener's main thread reads (src/ingest/metrics.sql). Off
//! unless `webhook.metrics_networks` names who may read it: labels carry
//! workflow ids, and an id is a URL.

use std::fmt::Write;

use serde::Deserialize;

use crate::request::Response;

/// The path a Prometheus server scrapes.
pub const PATH: &str = "/metrics";

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Snapshot {
    pub workflows: Vec<WorkflowSample>,
    pub processes: Vec<ProcessSample>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct WorkflowSample {
    pub id: String,
    pub name: String,
    pub accepted: u64,
    pub redelivered: u64,
    pub handshakes: u64,
    pub refused: Vec<Refusal>,
    pub succeeded: u64,
    pub failed_attempts: u64,
    pub dead: u64,
    pub pending: u64,
    pub running: u64,
    pub failed: u64,
    /// Age of the oldest pending event; `None` when nothing is pending.
    pub oldest_pending_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ProcessSample {
    pub pid: i32,
    pub kind: String,
    /// The role whose handlers an executor runs.
    pub owner: Option<String>,
    pub state: String,
    pub since_seconds: f64,
    /// The workflow of the event whose handler runs now.
    pub workflow_id: Option<String>,
    pub workflow: Option<String>,
}

/// The 200 answer carrying the exposition of `snapshot`.
pub fn response(snapshot: &Snapshot) -> Response {
    Response {
        status: 200,
        headers: vec![("content-type".into(), CONTENT_TYPE.into())],
        body: render(snapshot).into_bytes(),
    }
}

/// One metric family: its header, then every sample.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape(text));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A sample of workflow `w`: labelled by its name and id, then `extra`.
    fn of_workflow(&mut self, w: &WorkflowSample, extra: &[(&str, &str)], value: f64) {
        let mut labels = vec![
            ("workflow", w.name.as_str()),
            ("workflow_id", w.id.as_str()),
        ];
        labels.extend_from_slice(extra);
        self.sample(&labels, value);
    }
}

/// A label value as the format writes it: backslash, double quote and line
/// feed escaped (a workflow name is anything its owner typed).
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The exposition text.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let workflows = &snapshot.workflows;

    let mut family = Family::new(
        &mut out,
        "webhook_requests_total",
        "counter",
        "Requests to a workflow: accepted (event stored), redelivered (answered from an earlier event), handshake (endpoint check answered), refused.",
    );
    for w in workflows {
        let refused: u64 = w.refused.iter().map(|r| r.count).sum();
        for (status, count) in [
            ("accepted", w.accepted),
            ("redelivered", w.redelivered),
            ("handshake", w.handshakes),
            ("refused", refused),
        ] {
            family.of_workflow(w, &[("status", status)], count as f64);
        }
    }

    let mut family = Family::new(
        &mut out,
        "webhook_refused_requests_total",
        "counter",
        "Refused requests to a workflow by HTTP status code and reason.",
    );
    for w in workflows {
        for r in &w.refused {
            let code = r.status.to_string();
            family.of_workflow(w, &[("code", &code), ("reason", &r.reason)], r.count as f64);
        }
    }

    let mut family = Family::new(
        &mut out,
        "webhook_handler_attempts_total",
        "counter",
        "Handler attempts by outcome (failed: an error, a timeout or a crash).",
    );
    for w in workflows {
        for (outcome, count) in [("succeeded", w.succeeded), ("failed", w.failed_attempts)] {
            family.of_workflow(w, &[("outcome", outcome)], count as f64);
        }
    }

    let mut family = Family::new(
        &mut out,
        "webhook_dead_events_total",
        "counter",
        "Events whose handler failed its last attempt.",
    );
    for w in workflows {
        family.of_workflow(w, &[], w.dead as f64);
    }

    let mut family = Family::new(
        &mut out,
        "webhook_events",
        "gauge",
        "Unfinished events now: pending (handler not run yet), running, failed (a retry is due later).",
    );
    for w in workflows {
        for (state, count) in [
            ("pending", w.pending),
            ("running", w.running),
            ("failed", w.failed),
        ] {
            family.of_workflow(w, &[("state", state)], count as f64);
        }
    }

    let mut family = Family::new(
        &mut out,
        "webhook_oldest_pending_event_seconds",
        "gauge",
        "Age of the workflow's oldest pending event (absent when none is pending).",
    );
    for w in workflows {
        if let Some(age) = w.oldest_pending_seconds {
            family.of_workflow(w, &[], age);
        }
    }

    let mut family = Family::new(
        &mut out,
        "webhook_process_state_seconds",
        "gauge",
        "Listener and executor processes: how long each has been in its state, with the workflow whose handler an executor runs.",
    );
    for p in &snapshot.processes {
        family.sample(
            &[
                ("pid", &p.pid.to_string()),
                ("kind", &p.kind),
                ("owner", p.owner.as_deref().unwrap_or("")),
                ("state", &p.state),
                ("workflow", p.workflow.as_deref().unwrap_or("")),
                ("workflow_id", p.workflow_id.as_deref().unwrap_or("")),
            ],
            p.since_seconds,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snapshot() -> Snapshot {
        serde_json::from_value(json!({
            "workflows": [{
                "id": "0b7e5f2c-3a4d-4e8f-9a1b-2c3d4e5f6a7b", "name": "orders \"eu\"\\\n",
                "accepted": 5, "redelivered": 1, "handshakes": 0,
                "refused": [{"status": 401, "reason": "Invalid signature", "count": 2}],
                "succeeded": 4, "failed_attempts": 3, "dead": 1,
                "pending": 1, "running": 0, "failed": 0, "oldest_pending_seconds": 2.5
            }],
            "processes": [{"pid": 42, "kind": "listener", "owner": null, "state": "listening",
                           "since_seconds": 10.0, "workflow_id": null, "workflow": null}]
        }))
        .unwrap()
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&snapshot());
        assert!(text.contains(
            "webhook_requests_total{workflow=\"orders \\\"eu\\\"\\\\\\n\",workflow_id=\"0b7e5f2c-3a4d-4e8f-9a1b-2c3d4e5f6a7b\",status=\"accepted\"} 5\n"
        ), "{text}");
    }

    #[test]
    fn refusals_sum_into_the_requests_and_keep_their_reason() {
        let text = render(&snapshot());
        assert!(text.contains("status=\"refused\"} 2\n"), "{text}");
        assert!(
            text.contains("code=\"401\",reason=\"Invalid signature\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let text = render(&snapshot());
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
            }
        }
        assert_eq!(declared.len(), 7);
    }

    #[test]
    fn no_pending_event_no_age() {
        let mut snapshot = snapshot();
        snapshot.workflows[0].oldest_pending_seconds = None;
        let text = render(&snapshot);
        assert!(
            !text.contains("webhook_oldest_pending_event_seconds{"),
            "{text}"
        );
    }

    #[test]
    fn processes_are_labelled_by_pid_kind_and_state() {
        let text = render(&snapshot());
        assert!(text.contains(
            "webhook_process_state_seconds{pid=\"42\",kind=\"listener\",owner=\"\",state=\"listening\",workflow=\"\",workflow_id=\"\"} 10\n"
        ), "{text}");
    }
}
