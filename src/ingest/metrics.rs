//! `/metrics`: the main thread reads one snapshot (metrics.sql) between two
//! batches, in a subtransaction of the batch's transaction so that a failure
//! answers this scrape alone; webhook_core::metrics renders it. A listener
//! reads at most one snapshot per [`SNAPSHOT_LIFETIME`]: scrapes within it
//! get the same answer, so however many scrapers ask however often, the
//! snapshot takes its main thread one statement a second.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use pgrx::spi::SpiClient;
use pgrx::JsonB;

use webhook_core::metrics::{response, Snapshot};
use webhook_core::request::Response;

use crate::pg::spi::{in_subtransaction, ok_or_raise};

const SNAPSHOT: &str = include_str!("metrics.sql");

/// How long a listener answers scrapes from the snapshot it last read.
const SNAPSHOT_LIFETIME: Duration = Duration::from_secs(1);

thread_local! {
    /// The last answer rendered from a snapshot, and when it was read.
    static LAST: RefCell<Option<(Instant, Response)>> = const { RefCell::new(None) };
}

/// The answer to a scrape.
pub fn answer(client: &mut SpiClient<'_>) -> Response {
    let fresh = LAST.with_borrow(|last| {
        last.as_ref()
            .filter(|(read, _)| read.elapsed() < SNAPSHOT_LIFETIME)
            .map(|(_, answer)| answer.clone())
    });
    if let Some(answer) = fresh {
        return answer;
    }
    let answer = read(client);
    if answer.status == 200 {
        LAST.set(Some((Instant::now(), answer.clone())));
    }
    answer
}

fn read(client: &mut SpiClient<'_>) -> Response {
    let read = in_subtransaction(|| {
        ok_or_raise(
            client
                .select(SNAPSHOT, Some(1), &[])
                .and_then(|rows| rows.first().get::<JsonB>(1)),
        )
    });
    let snapshot = match read {
        Ok(Some(JsonB(value))) => {
            serde_json::from_value::<Snapshot>(value).map_err(|e| e.to_string())
        }
        Ok(None) => Err("the snapshot statement returned no row".to_string()),
        Err(error) => Err(error.describe()),
    };
    match snapshot {
        Ok(snapshot) => response(&snapshot),
        Err(why) => {
            pgrx::warning!("webhook_ext listener could not read its metrics: {why}");
            Response::retry_later("Metrics unavailable")
        }
    }
}
