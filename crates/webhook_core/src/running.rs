//! What an executor is running, as it writes it to its slot's file in the
//! data directory (src/execution/running_file.rs): the one record that
//! survives a crash restart, when PostgreSQL re-initialises shared memory.
//!
//! A record is one fixed-width line of text, so an administrator can read it
//! with `cat` and a new record always overwrites the whole of the previous
//! one with a single `pwrite` at offset 0:
//!
//! ```text
//! running  event=42 attempt=3 database=5 started_ms=1700000000000 sum=1a2b3c4d end
//! ```
//!
//! (with a checksum of the fields before `end`, so that a record cut or
//! mixed with the previous one by a process killed while writing it is
//! never taken for one). The first [`STATE_LEN`] bytes are the state: `idle` (no batch open),
//! `running` (a handler of this event started in a batch not yet ended),
//! `ended` (the process exited through PostgreSQL's exit path, e.g.
//! terminated: shared memory records that) or `quit` (PostgreSQL told it to
//! quit at once: another process crashed, or an immediate shutdown). A
//! signal handler marks `quit` by rewriting only those bytes, so the fields
//! after them stay as they were. Only a `running` record left behind means
//! its process died abruptly (a crash) while that handler's batch was open.
//! The trailing `end` tells a complete record from a cut one.

/// Bytes in a record (padded with spaces, ending in a newline).
pub const RECORD_LEN: usize = 128;

/// Bytes of the state word at the start of a record.
pub const STATE_LEN: usize = 8;

/// The state words, padded to [`STATE_LEN`].
pub const ENDED_MARK: &[u8; STATE_LEN] = b"ended   ";
pub const QUIT_MARK: &[u8; STATE_LEN] = b"quit    ";

/// The handler run a record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    pub event_id: i64,
    pub attempt: i32,
    /// The OID of the database the executor serves.
    pub database: u32,
    /// When the handler started (ms since the Unix epoch).
    pub started_unix_ms: i64,
}

/// What a slot's file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// No batch open (or an empty file).
    Idle,
    /// A batch was open with this handler running, or the last one run.
    Running(Running),
    /// The process exited through PostgreSQL's exit path while it ran.
    Ended(Running),
    /// The process was told to quit at once (another one crashed).
    Quit(Running),
    /// Not a record this version writes (cut short, or garbage).
    Unreadable,
}

impl Record {
    /// The handler run whose process crashed: only a `running` record that
    /// no exit path marked.
    pub fn crashed(&self) -> Option<Running> {
        match self {
            Record::Running(running) => Some(*running),
            _ => None,
        }
    }
}

fn padded(text: &str) -> [u8; RECORD_LEN] {
    let mut out = [b' '; RECORD_LEN];
    let bytes = text.as_bytes();
    let len = bytes.len().min(RECORD_LEN - 1);
    out[..len].copy_from_slice(&bytes[..len]);
    out[RECORD_LEN - 1] = b'\n';
    out
}

fn field_text(running: &Running) -> String {
    format!(
        "event={} attempt={} database={} started_ms={}",
        running.event_id, running.attempt, running.database, running.started_unix_ms
    )
}

/// FNV-1a (32 bits) of the fields' text.
fn checksum(text: &str) -> u32 {
    checksum_bytes(text.as_bytes())
}

fn checksum_bytes(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// The record of a handler about to run. Written into the record in place
/// (no allocation): executors write one before each handler.
pub fn encode_running(running: &Running) -> [u8; RECORD_LEN] {
    use std::io::Write;
    let mut out = padded("running");
    let mut cursor = std::io::Cursor::new(&mut out[..RECORD_LEN - 1]);
    cursor.set_position(STATE_LEN as u64 + 1);
    // The largest values take 105 bytes of the 127: the writes cannot fail.
    let _ = write!(
        cursor,
        "event={} attempt={} database={} started_ms={}",
        running.event_id, running.attempt, running.database, running.started_unix_ms
    );
    let end = cursor.position() as usize;
    let sum = checksum_bytes(&cursor.get_ref()[STATE_LEN + 1..end]);
    let _ = write!(cursor, " sum={sum:08x} end");
    out
}

/// The record of no batch open.
pub fn encode_idle() -> [u8; RECORD_LEN] {
    padded("idle")
}

/// Reads a record (a file's whole contents).
pub fn decode(bytes: &[u8]) -> Record {
    if bytes.is_empty() {
        return Record::Idle;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Record::Unreadable;
    };
    let Some(state) = text.get(..STATE_LEN.min(text.len())) else {
        return Record::Unreadable;
    };
    let state = state.trim_end();
    if state == "idle" {
        return Record::Idle;
    }
    let Some(running) = fields(text.get(STATE_LEN..).unwrap_or("")) else {
        return Record::Unreadable;
    };
    match state {
        "running" => Record::Running(running),
        "ended" => Record::Ended(running),
        "quit" => Record::Quit(running),
        _ => Record::Unreadable,
    }
}

fn fields(text: &str) -> Option<Running> {
    let mut tokens = text.split_ascii_whitespace();
    let mut value = |key: &str| {
        tokens
            .next()
            .and_then(|token| token.strip_prefix(key))
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_owned)
    };
    let running = Running {
        event_id: value("event")?.parse().ok()?,
        attempt: value("attempt")?.parse().ok()?,
        database: value("database")?.parse().ok()?,
        started_unix_ms: value("started_ms")?.parse().ok()?,
    };
    let sum = u32::from_str_radix(&value("sum")?, 16).ok()?;
    if tokens.next() != Some("end") || tokens.next().is_some() {
        return None;
    }
    (running.event_id > 0 && running.attempt > 0 && sum == checksum(&field_text(&running)))
        .then_some(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: Running = Running {
        event_id: 9_007_199_254_740_993,
        attempt: 1000,
        database: 4_294_967_295,
        started_unix_ms: 1_765_000_000_123,
    };

    fn marked(mark: &[u8; STATE_LEN]) -> [u8; RECORD_LEN] {
        let mut record = encode_running(&RUN);
        record[..STATE_LEN].copy_from_slice(mark);
        record
    }

    #[test]
    fn a_running_record_reads_back_and_is_a_crash() {
        let record = encode_running(&RUN);
        assert_eq!(record.len(), RECORD_LEN);
        assert_eq!(record[RECORD_LEN - 1], b'\n');
        assert_eq!(decode(&record), Record::Running(RUN));
        assert_eq!(decode(&record).crashed(), Some(RUN));
        let text = std::str::from_utf8(&record).unwrap();
        assert!(
            text.starts_with("running  event=9007199254740993 attempt=1000 "),
            "{text}"
        );
        assert!(text.trim_end().ends_with(" end"), "{text}");
    }

    #[test]
    fn the_largest_values_fit() {
        let largest = Running {
            event_id: i64::MAX,
            attempt: i32::MAX,
            database: u32::MAX,
            started_unix_ms: i64::MAX,
        };
        assert_eq!(decode(&encode_running(&largest)), Record::Running(largest));
    }

    #[test]
    fn marks_keep_the_fields_and_are_no_crash() {
        assert_eq!(decode(&marked(ENDED_MARK)), Record::Ended(RUN));
        assert_eq!(decode(&marked(QUIT_MARK)), Record::Quit(RUN));
        assert_eq!(decode(&marked(ENDED_MARK)).crashed(), None);
        assert_eq!(decode(&marked(QUIT_MARK)).crashed(), None);
    }

    #[test]
    fn idle_and_empty_are_idle() {
        assert_eq!(decode(&encode_idle()), Record::Idle);
        assert_eq!(decode(b""), Record::Idle);
        assert_eq!(decode(&encode_idle()).crashed(), None);
    }

    #[test]
    fn a_cut_or_foreign_record_is_unreadable() {
        let record = encode_running(&RUN);
        let text = std::str::from_utf8(&record).unwrap().trim_end();
        // Cut anywhere before its end marker.
        for cut in STATE_LEN..text.len() - 1 {
            assert_eq!(decode(&record[..cut]), Record::Unreadable, "cut at {cut}");
        }
        let one = Running {
            event_id: 1,
            attempt: 1,
            database: 1,
            started_unix_ms: 1,
        };
        let good = String::from_utf8(encode_running(&one).to_vec()).unwrap();
        assert_eq!(decode(good.as_bytes()), Record::Running(one));
        for bad in [
            good.replace(" end", " end extra"),
            good.replace("event=1", "event=0"),
            good.replace("event=1", "event=x"),
            good.replace("event=1 attempt=1", "attempt=1 event=1"),
            good.replace("attempt=1", "attempt=2"),
            good.replace("running", "walking"),
            good.replace(" sum=", " check="),
        ] {
            assert_eq!(decode(bad.as_bytes()), Record::Unreadable, "{bad}");
        }
        assert_eq!(decode(&[0xff, 0xfe, 0x00]), Record::Unreadable);
    }

    #[test]
    fn a_record_mixed_with_the_previous_one_is_unreadable() {
        let old = encode_running(&Running { event_id: 7, ..RUN });
        let new = encode_running(&Running { event_id: 8, ..RUN });
        // A process killed while copying the new record over the old one.
        for cut in STATE_LEN..RECORD_LEN {
            let mut mixed = old;
            mixed[..cut].copy_from_slice(&new[..cut]);
            let record = decode(&mixed);
            assert!(
                matches!(record, Record::Unreadable)
                    || record == decode(&new)
                    || record == decode(&old),
                "cut at {cut}: {record:?}"
            );
        }
        let mut mixed = old;
        // " event=8" over " event=7": the rest is the old record's.
        mixed[..STATE_LEN + 8].copy_from_slice(&new[..STATE_LEN + 8]);
        assert_eq!(decode(&mixed), Record::Unreadable);
        assert_eq!(decode(b"run"), Record::Unreadable);
    }

    #[test]
    fn a_shorter_record_overwrites_a_longer_one_completely() {
        let long = encode_running(&RUN);
        let short = encode_running(&Running {
            event_id: 1,
            attempt: 1,
            database: 1,
            started_unix_ms: 1,
        });
        let mut file = long;
        file.copy_from_slice(&short);
        assert_eq!(decode(&file), decode(&short));
        file.copy_from_slice(&encode_idle());
        assert_eq!(decode(&file), Record::Idle);
    }
}
