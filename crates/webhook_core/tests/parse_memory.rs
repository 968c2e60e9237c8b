//! The memory model of body parsing, checked against what is really allocated.
//!
//! A counting global allocator tracks the heap of the current thread (current and
//! peak bytes; a reallocation counts old and new block while both are live). For
//! many body shapes, hostile and real, the peak during a parse must stay within
//! what the parse asked its budget for plus a small constant: the estimates are
//! upper bounds, so the budget really bounds memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::PathBuf;

use serde_json::{Map, Value};
use webhook_core::body::{
    decode_text_within, parse_allowance, parse_body_within, BodyError, BodyLimits, MemoryBudget,
    ParsedBody, PARSE_COST_FACTOR,
};
use webhook_core::verify::{Scheme, SignedRequest};

// ---------------------------------------------------------------- the allocator

struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let now = CURRENT.get() + bytes as isize;
    CURRENT.set(now);
    if now > PEAK.get() {
        PEAK.set(now);
    }
}

fn shrank(bytes: usize) {
    CURRENT.set(CURRENT.get() - bytes as isize);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// thread-local counters are const-initialised cells without destructors, so
// reading them never allocates and never fails.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout is passed on unchanged (GlobalAlloc contract).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout is passed on unchanged (GlobalAlloc contract).
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System with this layout (every allocation goes through it).
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Both blocks are live while the bytes move.
        grew(new_size);
        // SAFETY: ptr was allocated by System with this layout; the caller's new size is passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            shrank(new_size);
        } else {
            shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result and the peak heap above what was held when
/// it started (the result, still held at the end, counts).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = CURRENT.get();
    PEAK.set(start);
    let out = f();
    (out, (PEAK.get() - start).max(0) as usize)
}

// ---------------------------------------------------------------- budgets

/// Records what it is asked for; refuses past `limit`.
struct Recorder {
    asked: usize,
    limit: usize,
}

impl Recorder {
    fn unlimited() -> Recorder {
        Recorder {
            asked: 0,
            limit: usize::MAX,
        }
    }
}

impl MemoryBudget for Recorder {
    fn reserve(&mut self, bytes: usize) -> bool {
        match self.asked.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.asked = total;
                true
            }
            _ => false,
        }
    }
}

/// What the parse may allocate beyond what it asked for: small blocks that do
/// not grow with the body: the parsed Content-Type (as long as the header),
/// clipped error messages, the executor's waker.
const SLACK: usize = 4 * 1024;

const LIMITS: BodyLimits = BodyLimits {
    max_decoded_bytes: 32 * 1024 * 1024,
    max_parts: 1000,
};

struct Outcome {
    result: Result<ParsedBody, BodyError>,
    asked: usize,
    peak: usize,
}

fn parse(ct: Option<&str>, ce: Option<&str>, body: &[u8]) -> Outcome {
    let mut budget = Recorder::unlimited();
    let (result, peak) = peak_of(|| parse_body_within(ct, ce, body, &LIMITS, &mut budget));
    Outcome {
        result,
        asked: budget.asked,
        peak,
    }
}

/// Parses and checks that the peak heap stayed within what was asked for.
#[track_caller]
fn bounded(name: &str, ct: Option<&str>, ce: Option<&str>, body: &[u8]) -> Outcome {
    let outcome = parse(ct, ce, body);
    assert!(
        outcome.peak <= outcome.asked + SLACK,
        "{name} ({} bytes): peak {} > asked {} + {SLACK} ({:?})",
        body.len(),
        outcome.peak,
        outcome.asked,
        outcome.result.as_ref().map(|p| p.kind)
    );
    outcome
}

#[track_caller]
fn parsed(name: &str, ct: Option<&str>, ce: Option<&str>, body: &[u8]) -> Outcome {
    let outcome = bounded(name, ct, ce, body);
    if let Err(e) = &outcome.result {
        panic!("{name}: {e}");
    }
    outcome
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn list(open: &str, item: impl Fn(usize) -> String, sep: &str, close: &str, n: usize) -> Vec<u8> {
    let mut out = String::from(open);
    for i in 0..n {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(&item(i));
    }
    out.push_str(close);
    out.into_bytes()
}

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const XML: Option<&str> = Some("application/xml");
const BOUNDARY: &str = "XyZzY";
const MULTIPART: Option<&str> = Some("multipart/form-data; boundary=XyZzY");

/// Sizes from tiny to past the allowance, so that both finished parses and
/// refusals part-way are measured.
const COUNTS: [usize; 5] = [1, 10, 1_000, 20_000, 200_000];

// ---------------------------------------------------------------- shapes

#[test]
fn json_shapes_stay_within_what_they_ask_for() {
    for n in COUNTS {
        bounded("zeros", JSON, None, &list("[", |_| "0".into(), ",", "]", n));
        bounded(
            "small objects",
            JSON,
            None,
            &list("[", |_| r#"{"a":1}"#.into(), ",", "]", n),
        );
        bounded(
            "many keys",
            JSON,
            None,
            &list("{", |i| format!("\"k{i}\":{i}"), ",", "}", n),
        );
        bounded(
            "duplicate keys",
            JSON,
            None,
            &list("{", |_| "\"a\":[1]".into(), ",", "}", n),
        );
        bounded(
            "short strings",
            JSON,
            None,
            &list("[", |_| "\"ab\"".into(), ",", "]", n),
        );
        bounded(
            "escaped strings",
            JSON,
            None,
            &list("[", |_| r#""\u00e9\n\"x""#.into(), ",", "]", n),
        );
        bounded(
            "floats and big numbers",
            JSON,
            None,
            &list(
                "[",
                |i| {
                    if i % 2 == 0 {
                        "1.5e300".into()
                    } else {
                        "123456789012345678901234567890".into()
                    }
                },
                ",",
                "]",
                n,
            ),
        );
        bounded(
            "nested pairs",
            JSON,
            None,
            &list("[", |_| "[[],{}]".into(), ",", "]", n),
        );
        bounded(
            "untyped",
            None,
            None,
            &list("[", |_| r#"{"a":"b"}"#.into(), ",", "]", n),
        );
        bounded(
            "json as text/plain",
            Some("text/plain"),
            None,
            &list("{", |i| format!("\"k{i}\":\"v\""), ",", "}", n),
        );
        bounded(
            "json as octet-stream",
            Some("application/octet-stream"),
            None,
            &list("[", |_| "1".into(), ",", "]", n),
        );
    }
    for len in [10, 100_000, 3_000_000] {
        let long = "x".repeat(len);
        parsed(
            "long string",
            JSON,
            None,
            format!("[\"{long}\"]").as_bytes(),
        );
        let escaped = "\\n".repeat(len / 2);
        parsed(
            "long escaped",
            JSON,
            None,
            format!("{{\"a\":\"{escaped}\"}}").as_bytes(),
        );
        let number = format!("[1{}]", "0".repeat(len.min(100_000)));
        bounded("long number", JSON, None, number.as_bytes());
    }
    for depth in [1, 64, 127, 128, 129, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        bounded("nested arrays", JSON, None, nested.as_bytes());
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        bounded("nested objects", JSON, None, objects.as_bytes());
    }
    for bad in [
        &b"[1,2,"[..],
        b"{\"a\":",
        b"[\"\\ud800\"]",
        b"\xff[]",
        b"[1] 2",
    ] {
        bounded("malformed", JSON, None, bad);
    }
    let utf16: Vec<u8> = "\u{feff}[\"\u{e9}\", 1, {\"k\": null}]"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    parsed("utf-16", JSON, None, &utf16);
    parsed(
        "latin1",
        Some("application/json; charset=latin1"),
        None,
        b"{\"caf\xe9\": \"\xe9\"}",
    );
}

#[test]
fn form_xml_multipart_shapes_stay_within_what_they_ask_for() {
    for n in COUNTS {
        bounded("a&a&a", FORM, None, &list("", |_| "a".into(), "&", "", n));
        bounded(
            "distinct pairs",
            FORM,
            None,
            &list("", |i| format!("k{i}={i}"), "&", "", n),
        );
        bounded(
            "percent escapes",
            FORM,
            None,
            &list("", |i| format!("%C3%A9{i}=%FF+x%2"), "&", "", n),
        );
        bounded(
            "latin1 form",
            Some("application/x-www-form-urlencoded; charset=latin1"),
            None,
            &list("", |i| format!("k{i}=caf%E9\u{e9}"), "&", "", n),
        );
        bounded(
            "json fields",
            FORM,
            None,
            &list(
                "",
                |i| format!("p{i}=%5B%7B%22a%22%3A1%7D%5D"),
                "&",
                "",
                n.min(20_000),
            ),
        );
        bounded(
            "xml siblings",
            XML,
            None,
            &list("<r>", |_| "<a/>".into(), "", "</r>", n),
        );
        bounded(
            "xml distinct siblings",
            XML,
            None,
            &list("<r>", |i| format!("<a{i}>t&amp;{i}</a{i}>"), "", "</r>", n),
        );
        bounded(
            "xml attributes",
            XML,
            None,
            &list("<r ", |i| format!("a{i}=\"v&lt;{i}\""), " ", "/>", n),
        );
        bounded(
            "xml text pieces",
            XML,
            None,
            &list(
                "<r>",
                |i| format!("x{i}<!--c--><![CDATA[y]]>"),
                "",
                "</r>",
                n,
            ),
        );
        bounded(
            "xml mixed",
            XML,
            None,
            &list("<r>", |i| format!("<a b=\"{i}\">t<c/></a>"), "", "</r>", n),
        );
        let parts = n.min(1_100);
        bounded(
            "multipart fields",
            MULTIPART,
            None,
            &multipart(parts, |i| {
                (format!("f{}", i % 7), None, format!("value {i}"))
            }),
        );
        bounded(
            "multipart files",
            MULTIPART,
            None,
            &multipart(parts.min(50), |i| {
                (
                    "file".into(),
                    Some(format!("f{i}.bin")),
                    "\u{1}\u{2}\u{ff}".repeat(1000),
                )
            }),
        );
    }
    let depth = format!("{}{}", "<a>".repeat(128), "</a>".repeat(128));
    bounded("xml too deep", XML, None, depth.as_bytes());
    let long_name = "n".repeat(1_000_000);
    bounded(
        "xml mismatched long names",
        XML,
        None,
        format!("<{long_name}></{long_name}x>").as_bytes(),
    );
    bounded(
        "xml unknown entity",
        XML,
        None,
        format!("<r>{}&{long_name};</r>", "x".repeat(1000)).as_bytes(),
    );
    parsed(
        "xml long text",
        XML,
        None,
        format!("<r><a>{}</a></r>", "&lt;x".repeat(200_000)).as_bytes(),
    );
    let big_header = multipart(1, |_| ("f".into(), Some("n".repeat(1_000_000)), "x".into()));
    parsed("multipart long filename", MULTIPART, None, &big_header);
    let many_headers = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n{}\r\nv\r\n--{BOUNDARY}--\r\n",
        (0..30)
            .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(1000)))
            .collect::<String>()
    );
    parsed(
        "multipart many headers",
        MULTIPART,
        None,
        many_headers.as_bytes(),
    );
    let json_field = multipart(1, |_| {
        (
            "payload".into(),
            None,
            String::from_utf8(list("[", |_| "{\"a\":1}".into(), ",", "]", 1_000)).unwrap(),
        )
    });
    parsed("multipart json field", MULTIPART, None, &json_field);
    let charset = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain; charset=shift_jis\r\n\r\n{}\r\n--{BOUNDARY}--\r\n",
        "\u{ff71}".repeat(10_000)
    );
    parsed("multipart shift_jis", MULTIPART, None, charset.as_bytes());
    for bad in [
        &b"--XyZzY\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"[..],
        b"no boundary at all",
        b"--XyZzY\r\nbroken header\r\n\r\nx\r\n--XyZzY--\r\n",
    ] {
        bounded("malformed multipart", MULTIPART, None, bad);
    }
    let mut text = vec![b'x'; 100_000];
    text.extend_from_slice(b"\xff\xfe");
    parsed("lossy text", Some("text/plain"), None, &text);
    parsed(
        "shift_jis text",
        Some("text/plain; charset=shift_jis"),
        None,
        &[b'\x82', b'\xa0'].repeat(50_000),
    );
    parsed(
        "other",
        Some("image/png"),
        None,
        &[0u8, 0xff, 0x80].repeat(10_000),
    );
}

#[test]
fn compressed_bodies_stay_within_what_they_ask_for() {
    let json = list("[", |i| format!("{{\"n\":{i}}}"), ",", "]", 2_000);
    parsed("gzip json", JSON, Some("gzip"), &gzip(&json));
    parsed("deflate json", JSON, Some("deflate"), &deflate(&json));
    let mut members = gzip(b"{\"a\":");
    members.extend(gzip(b"1}"));
    parsed("gzip members", JSON, Some("gzip"), &members);
    parsed(
        "stacked",
        JSON,
        Some("deflate, gzip"),
        &gzip(&deflate(&json)),
    );
    let form = list("", |i| format!("k{i}=v"), "&", "", 1_000);
    parsed("gzip form", FORM, Some("x-gzip"), &gzip(&form));
    let bomb = gzip(&vec![b' '; 40 * 1024 * 1024]);
    bounded("gzip bomb", JSON, Some("gzip"), &bomb);
    let truncated = gzip(&json);
    bounded(
        "truncated gzip",
        JSON,
        Some("gzip"),
        &truncated[..truncated.len() - 5],
    );
}

// ---------------------------------------------------------------- the corpus

struct Delivery {
    name: String,
    content_type: Option<String>,
    body: Vec<u8>,
    headers: Map<String, Value>,
}

/// The published deliveries of the end-to-end tests, with their bodies put on the
/// wire as the end-to-end harness does (tests/e2e/corpuskit.py).
fn corpus() -> Vec<Delivery> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .flat_map(|provider| std::fs::read_dir(provider).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let d: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let content_type = d["content_type"].as_str().map(str::to_owned);
        let is_form = content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let body = match &d["body"] {
            Value::Null => continue,
            Value::String(s) => s.clone().into_bytes(),
            Value::Object(fields) if is_form => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (k, v) in fields {
                    match v {
                        Value::String(s) => form.append_pair(k, s),
                        other => form.append_pair(k, &other.to_string()),
                    };
                }
                form.finish().into_bytes()
            }
            other => other.to_string().into_bytes(),
        };
        let mut headers = Map::new();
        for (k, v) in d["headers"].as_object().unwrap() {
            headers.insert(k.to_ascii_lowercase(), v.clone());
        }
        let name = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.push(Delivery {
            name,
            content_type,
            body,
            headers,
        });
    }
    assert!(out.len() >= 20, "the corpus is missing: {}", dir.display());
    out
}

/// Every real delivery parses, within what it asked for, and far inside its
/// allowance; the largest ratio of what parsing asked for to the body's length
/// is printed (`cargo test -p webhook_core --test parse_memory -- --nocapture`).
#[test]
fn real_deliveries_stay_far_inside_the_allowance() {
    let mut largest = (0.0f64, String::new());
    for d in corpus() {
        let outcome = parsed(&d.name, d.content_type.as_deref(), None, &d.body);
        let ratio = outcome.asked as f64 / d.body.len() as f64;
        println!(
            "{:<48} {:>6} bytes  asked {:>8}  ratio {:>5.2}  peak {:>8}",
            d.name,
            d.body.len(),
            outcome.asked,
            ratio,
            outcome.peak
        );
        if ratio > largest.0 {
            largest = (ratio, d.name.clone());
        }
        // Within half the factor, so that larger deliveries of the same shape
        // (more commits, more events) are far from refusal too.
        assert!(
            outcome.asked <= d.body.len() * PARSE_COST_FACTOR / 2 + 64 * 1024,
            "{}: asked {} for {} bytes",
            d.name,
            outcome.asked,
            d.body.len()
        );
        let (text, text_peak, text_asked) = decode_text(d.content_type.as_deref(), None, &d.body);
        assert_eq!(text.unwrap(), outcome.result.unwrap().text, "{}", d.name);
        assert!(text_peak <= text_asked + SLACK, "{}", d.name);
    }
    println!("largest ratio: {:.2} ({})", largest.0, largest.1);
}

/// A real delivery repeated to a few megabytes (GitHub pushes with many commits,
/// SendGrid batches of many events) stays inside the allowance too.
#[test]
fn large_real_shaped_deliveries_fit() {
    for d in corpus() {
        if d.content_type.as_deref() != Some("application/json") {
            continue;
        }
        let one = String::from_utf8(d.body.clone()).unwrap();
        let batch = format!(
            "[{}]",
            vec![one.as_str(); 2_000_000 / one.len() + 1].join(",")
        );
        let outcome = parsed(&d.name, JSON, None, batch.as_bytes());
        println!(
            "{:<48} x{:<5} {:>8} bytes  asked {:>9}  ratio {:>5.2}",
            d.name,
            2_000_000 / one.len() + 1,
            batch.len(),
            outcome.asked,
            outcome.asked as f64 / batch.len() as f64
        );
        assert!(
            outcome.asked <= parse_allowance(batch.len()),
            "{}: {} of {}",
            d.name,
            outcome.asked,
            parse_allowance(batch.len())
        );
    }
}

// ---------------------------------------------------------------- refusals

/// The shapes that exist to exhaust memory cost far more per byte than the
/// factor allows (measured below the floor, per byte added).
#[test]
fn hostile_shapes_cost_more_than_the_factor_allows() {
    type Shape = (&'static str, Option<&'static str>, fn(usize) -> Vec<u8>);
    let shapes: [Shape; 6] = [
        ("[0,0,…]", JSON, |n| {
            list("[", |_| "0".into(), ",", "]", n)
        }),
        ("[{\"a\":1},…]", JSON, |n| {
            list("[", |_| r#"{"a":1}"#.into(), ",", "]", n)
        }),
        ("[\"ab\",…]", JSON, |n| {
            list("[", |_| "\"ab\"".into(), ",", "]", n)
        }),
        ("a&a&…", FORM, |n| list("", |_| "a".into(), "&", "", n)),
        ("<r><a/><a/>…</r>", XML, |n| {
            list("<r>", |_| "<a/>".into(), "", "</r>", n)
        }),
        ("<r a0=\"\" a1=\"\" …/>", XML, |n| {
            list("<r ", |i| format!("a{i}=\"\""), " ", "/>", n)
        }),
    ];
    for (name, ct, body) in shapes {
        let (small, large) = (body(1), body(1500));
        let asked = |b: &[u8]| bounded(name, ct, None, b).asked;
        let ratio = (asked(&large) - asked(&small)) as f64 / (large.len() - small.len()) as f64;
        println!("{name:<24} {ratio:>6.1} bytes of memory per byte");
        assert!(ratio > PARSE_COST_FACTOR as f64, "{name}: {ratio}");
    }
}

/// 24 MB of `[0,0,…]`, about 23 KB gzipped, would take over 1.5 GB parsed: it is
/// refused with the allowance error before anything that size is allocated. The
/// peak is the decoded buffer while it grows (16 MiB and its 24 MB successor).
#[test]
fn the_zeros_bomb_is_refused_cheaply() {
    const DECODED: usize = 24 * 1000 * 1000;
    let mut zeros = Vec::with_capacity(DECODED);
    zeros.push(b'[');
    while zeros.len() < DECODED - 2 {
        zeros.extend_from_slice(b"0,");
    }
    zeros.extend_from_slice(b"0]");
    let decoded = zeros.len();
    let body = gzip(&zeros);
    drop(zeros);
    assert!(body.len() < 40_000, "{}", body.len());
    let outcome = bounded("zeros bomb", JSON, Some("gzip"), &body);
    match outcome.result {
        Err(e @ BodyError::ParamsTooLarge { .. }) => {
            assert_eq!(e.http_status(), 413);
            assert!(e.is_transport_level());
            assert_eq!(
                e.to_string(),
                format!(
                    "Request body too large: its parameters would take more than {} bytes of memory",
                    parse_allowance(decoded)
                )
            );
        }
        other => panic!("{:?}", other.map(|p| p.kind)),
    }
    println!(
        "zeros bomb: {} bytes gzipped, peak heap {} bytes, asked {}",
        body.len(),
        outcome.peak,
        outcome.asked
    );
    assert!(
        outcome.peak < 3 * DECODED + 1024 * 1024,
        "peak {}",
        outcome.peak
    );
}

#[test]
fn a_refusing_budget_makes_the_parse_busy() {
    let bodies: Vec<(Option<&str>, Option<&str>, Vec<u8>)> = vec![
        (
            JSON,
            None,
            list("[", |_| r#"{"a":1}"#.into(), ",", "]", 1_000),
        ),
        (
            JSON,
            Some("gzip"),
            gzip(&list("[", |_| "1".into(), ",", "]", 1_000)),
        ),
        (FORM, None, list("", |i| format!("k{i}=v"), "&", "", 1_000)),
        (XML, None, list("<r>", |_| "<a/>".into(), "", "</r>", 1_000)),
        (
            MULTIPART,
            None,
            multipart(20, |i| (format!("f{i}"), None, "v".into())),
        ),
        (Some("text/plain"), None, b"just text".to_vec()),
    ];
    for (ct, ce, body) in bodies {
        let mut recorder = Recorder::unlimited();
        parse_body_within(ct, ce, &body, &LIMITS, &mut recorder).unwrap();
        let needed = recorder.asked;
        assert!(needed > 0);
        let mut exact = Recorder {
            asked: 0,
            limit: needed,
        };
        assert!(
            parse_body_within(ct, ce, &body, &LIMITS, &mut exact).is_ok(),
            "{ct:?}"
        );
        for limit in [0, needed / 2, needed - 1] {
            let mut short = Recorder { asked: 0, limit };
            let e = parse_body_within(ct, ce, &body, &LIMITS, &mut short).unwrap_err();
            assert_eq!(e, BodyError::Busy, "{ct:?} with {limit} of {needed}");
            assert_eq!(e.to_string(), "Listener busy, retry later");
            assert_eq!(e.http_status(), 503);
            assert!(e.is_transport_level());
        }
    }
}

// ---------------------------------------------------------------- text only

fn decode_text(
    ct: Option<&str>,
    ce: Option<&str>,
    body: &[u8],
) -> (Result<String, BodyError>, usize, usize) {
    let mut budget = Recorder::unlimited();
    let (text, peak) = peak_of(|| decode_text_within(ct, ce, body, &LIMITS, &mut budget));
    (text, peak, budget.asked)
}

#[test]
fn decoding_text_is_bounded_the_same_way() {
    let json = list("[", |_| "0".into(), ",", "]", 1_000_000);
    let cases: Vec<(Option<&str>, Option<&str>, Vec<u8>)> = vec![
        (JSON, None, json.clone()),
        (JSON, Some("gzip"), gzip(&json)),
        (
            Some("text/plain; charset=latin1"),
            None,
            vec![0xe9; 100_000],
        ),
        (
            XML,
            None,
            b"<?xml version='1.0' encoding='latin1'?><r>\xe9</r>".to_vec(),
        ),
        (MULTIPART, None, vec![0xff; 100_000]),
        (None, None, b"\xef\xbb\xbfplain".to_vec()),
        (Some("image/png"), None, vec![0x80; 1000]),
    ];
    for (ct, ce, body) in cases {
        let (text, peak, asked) = decode_text(ct, ce, &body);
        let text = text.unwrap();
        assert!(peak <= asked + SLACK, "{ct:?}: peak {peak} > asked {asked}");
        // Only the text, not the values: the zeros are no problem here.
        if let Ok(parsed) = parse_body_within(ct, ce, &body, &LIMITS, &mut Recorder::unlimited()) {
            assert_eq!(parsed.text, text, "{ct:?}");
        }
    }
    // Malformed JSON or XML still has a text.
    let (text, _, _) = decode_text(JSON, None, b"{\"a\": \xff");
    assert_eq!(text.unwrap(), "{\"a\": \u{fffd}");
    let (text, _, _) = decode_text(XML, None, b"<a>");
    assert_eq!(text.unwrap(), "<a>");
    // Transfer errors stay errors.
    let (e, _, _) = decode_text(JSON, Some("br"), b"x");
    assert!(matches!(e, Err(BodyError::UnsupportedEncoding(_))));
    let mut none = Recorder { asked: 0, limit: 0 };
    assert_eq!(
        decode_text_within(JSON, Some("gzip"), &gzip(b"[]"), &LIMITS, &mut none),
        Err(BodyError::Busy)
    );
}

// ---------------------------------------------------------------- Twilio

fn twilio_request<'a>(
    headers: &'a Map<String, Value>,
    body: &'a [u8],
    url: &'a str,
) -> SignedRequest<'a> {
    SignedRequest {
        headers,
        body,
        url,
        method: "POST",
        now_unix: 0,
    }
}

#[test]
fn twilio_verification_is_bounded() {
    let twilio =
        Scheme::from_config("twilio", &["12345".to_string()], &Map::new()).expect("twilio scheme");
    let mut headers = Map::new();
    headers.insert(
        "content-type".into(),
        Value::String("application/x-www-form-urlencoded".into()),
    );
    headers.insert(
        "x-twilio-signature".into(),
        Value::String("RSOYDt4T1cUTdK1PDd93/VVr8B8=".into()),
    );
    let url = "https://example.com/hook";
    for n in COUNTS {
        for body in [
            list("", |_| "a".into(), "&", "", n),
            list("", |i| format!("Key{i}=%E9+value%FF{i}"), "&", "", n),
        ] {
            let request = twilio_request(&headers, &body, url);
            let mut budget = Recorder::unlimited();
            let (outcome, peak) = peak_of(|| twilio.verify_within(&request, &mut budget));
            assert!(
                peak <= budget.asked + SLACK,
                "{n}: peak {peak} > asked {}",
                budget.asked
            );
            match outcome {
                Ok(result) => {
                    assert!(result.is_err(), "the signature cannot match");
                    assert_eq!(result, twilio.verify(&request));
                }
                Err(e) => {
                    assert!(matches!(e, BodyError::ParamsTooLarge { .. }), "{e}");
                    assert!(twilio.verify(&request).is_err());
                }
            }
            if budget.asked > 0 {
                let mut short = Recorder {
                    asked: 0,
                    limit: budget.asked - 1,
                };
                let refused = twilio.verify_within(&request, &mut short);
                assert!(
                    matches!(
                        refused,
                        Err(BodyError::Busy | BodyError::ParamsTooLarge { .. })
                    ),
                    "{refused:?}"
                );
            }
        }
    }
    // The real deliveries still verify as Twilio signs them.
    for d in corpus() {
        if !d.name.starts_with("twilio") {
            continue;
        }
        let request = twilio_request(&d.headers, &d.body, url);
        let mut budget = Recorder::unlimited();
        let (outcome, peak) = peak_of(|| twilio.verify_within(&request, &mut budget));
        assert!(peak <= budget.asked + SLACK, "{}", d.name);
        assert_eq!(outcome.unwrap(), twilio.verify(&request), "{}", d.name);
    }
}

// ---------------------------------------------------------------- helpers

fn multipart(parts: usize, part: impl Fn(usize) -> (String, Option<String>, String)) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..parts {
        let (name, file, data) = part(i);
        out.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\""
        ));
        if let Some(file) = file {
            out.push_str(&format!(
                "; filename=\"{file}\"\r\nContent-Type: application/octet-stream"
            ));
        }
        out.push_str(&format!("\r\n\r\n{data}\r\n"));
    }
    out.push_str(&format!("--{BOUNDARY}--\r\n"));
    out.into_bytes()
}
