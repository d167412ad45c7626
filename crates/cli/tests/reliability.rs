//! The reliability suite: a seeded request fuzzer over every route, every limit at and past
//! its value, kill -9 during concurrent uploads, and SIGTERM under load. All against a real
//! `crossrank serve` on loopback with the bundled model.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A response read off the wire.
struct Raw {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), bytes exactly as given.
fn raw(addr: &str, method: &str, path: &str, body: &[u8], extra: &str) -> std::io::Result<Raw> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut body = buf[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
            let n =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..p]).trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[p + 2..(p + 2 + n).min(rest.len())]);
            rest = &rest[(p + 4 + n).min(rest.len())..];
        }
        body = out;
    }
    Ok(Raw {
        status,
        content_type: header("content-type"),
        body,
    })
}

fn addr(srv: &Server) -> String {
    srv.url.trim_start_matches("http://").to_string()
}

/// Resident memory of a process in bytes.
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

// The limits the fuzzed server runs with (small, so that every request is cheap).
const MAX_DOCS: usize = 32;
const MAX_TOKENS: usize = 4096;
const MAX_CANDIDATES: usize = 50;
const MAX_COLLECTIONS: usize = 4;
const MAX_UPLOAD: usize = 20;
const MAX_CHUNKS: usize = 4;
const MAX_BODY: usize = 256 * 1024;

fn limited_server(dir: &std::path::Path) -> Server {
    let n = |v: usize| v.to_string();
    serve(&[
        "--collections",
        dir.to_str().unwrap(),
        "--max-documents",
        &n(MAX_DOCS),
        "--max-request-tokens",
        &n(MAX_TOKENS),
        "--max-candidates",
        &n(MAX_CANDIDATES),
        "--max-collections",
        &n(MAX_COLLECTIONS),
        "--max-upload-documents",
        &n(MAX_UPLOAD),
        "--max-chunks-per-doc",
        &n(MAX_CHUNKS),
        "--max-body-bytes",
        &n(MAX_BODY),
        // Every request reaches the engine's limits and queue.
        "--cache-mb",
        "0",
    ])
}

/// A value to put in a field: every JSON type, numbers at and past the limits, odd strings.
fn odd_value(r: &mut Rng) -> Value {
    match r.below(16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(0),
        4 => json!(*r.pick(&[
            1,
            2,
            3,
            MAX_CHUNKS,
            MAX_CHUNKS + 1,
            MAX_CANDIDATES,
            MAX_CANDIDATES + 1
        ])),
        5 => json!(*r.pick(&[1u64 << 53, u64::MAX, 1_000_000_000_000, 10_000_000])),
        6 => json!(*r.pick(&[1.5f64, -0.0, 1e308, -1e308, 3.0])),
        7 => json!(""),
        8 => json!("x".repeat(r.below(5000))),
        9 => json!(*r.pick(&["\u{0}", "\u{feff}", "👩‍👩‍👧‍👦", "é́́", "\u{202e}abc", "a\r\nb"])),
        10 => json!([]),
        11 => json!([1, "a", null]),
        12 => json!({"text": 5}),
        13 => json!([[[[[]]]]]),
        14 => json!({"a": {"b": {"c": []}}}),
        _ => json!(["short passage", "another passage about rivers"]),
    }
}

fn docs(r: &mut Rng, n: usize) -> Vec<Value> {
    let words = [
        "river", "reef", "coral", "the", "a", "数据", "été", "🙂", "rust", "query",
    ];
    (0..n)
        .map(|_| {
            let len = r.below(12) + 1;
            json!((0..len)
                .map(|_| *r.pick(&words))
                .collect::<Vec<_>>()
                .join(" "))
        })
        .collect()
}

/// One generated request: (method, path, body bytes).
fn generate(r: &mut Rng) -> (String, String, Vec<u8>) {
    let names = [
        "fz",
        "fz2",
        "a-b_c",
        "",
        "a%20b",
        "..",
        "%2e%2e",
        "c%00",
        "%FF",
        "ü",
        &"n".repeat(64),
        &"n".repeat(65),
        "new1",
        "new2",
        "new3",
        "new4",
        "new5",
    ];
    let name = r.pick(&names).to_string();
    let routes = [
        ("POST", "/rerank".to_string()),
        ("POST", "/v1/rerank".to_string()),
        ("POST", "/v2/rerank".to_string()),
        ("POST", format!("/v1/collections/{name}/documents")),
        ("POST", format!("/v1/collections/{name}/search")),
        (
            "DELETE",
            format!(
                "/v1/collections/{name}/documents/{}",
                r.pick(&["d1", "%20", "%FF%FE", "x"])
            ),
        ),
        ("GET", "/health".to_string()),
        ("GET", "/info".to_string()),
        ("GET", "/metrics".to_string()),
        ("GET", "/openapi.json".to_string()),
        ("GET", "/v1/rerank".to_string()),
        ("PUT", "/rerank".to_string()),
        ("PATCH", "/v2/rerank".to_string()),
        ("GET", "/v1/collections/fz/search".to_string()),
        (
            "POST",
            format!(
                "/{}",
                r.pick(&[
                    "nope",
                    "v3/rerank",
                    "v1/collections",
                    "v1/collections/fz",
                    "%00",
                    "rerank/"
                ])
            ),
        ),
    ];
    let (method, path) = r.pick(&routes).clone();
    let n_docs = *r.pick(&[0, 1, 2, 3, 5, MAX_DOCS, MAX_DOCS + 1]);
    let mut body = match path.as_str() {
        "/rerank" => json!({"query": "rivers and reefs", "texts": docs(r, n_docs),
            "truncate": *r.pick(&[true, false]), "raw_scores": *r.pick(&[true, false])}),
        "/v1/rerank" | "/v2/rerank" => {
            json!({"query": "rivers and reefs", "documents": docs(r, n_docs),
            "top_n": r.below(6) + 1, "max_chunks_per_doc": *r.pick(&[1, 2, MAX_CHUNKS, MAX_CHUNKS + 1, 1_000_000]),
            "max_tokens_per_doc": *r.pick(&[1, 8, 4096, 10_000_000])})
        }
        p if p.ends_with("/documents") => {
            let n = *r.pick(&[1, 2, 4, MAX_UPLOAD, MAX_UPLOAD + 1]);
            let d: Vec<Value> = (0..n)
                .map(|i| json!({"id": format!("d{}", r.below(40) + i), "text": docs(r, 1)[0]}))
                .collect();
            json!({"documents": d, "chunk_tokens": *r.pick(&[Value::Null, json!(8), json!(2), json!(100000)]),
                "overlap": *r.pick(&[0, 1, 7, 9])})
        }
        p if p.ends_with("/search") => {
            json!({"query": *r.pick(&["river", "", "   ", "reef coral"]),
            "candidates": *r.pick(&[1, 5, MAX_CANDIDATES, MAX_CANDIDATES + 1, 1_000_000_000_000u64 as usize]),
            "top_k": *r.pick(&[1, 3, MAX_CANDIDATES + 1]),
            "retriever": *r.pick(&["bm25", "dense", "hybrid", "magic"]),
            "min_score": *r.pick(&[Value::Null, json!(0.5), json!("high")])})
        }
        _ => json!({}),
    };
    // Mutate: replace or add a field with an odd value, or break the body entirely.
    match r.below(10) {
        0..=3 => {}
        4..=6 => {
            let keys = [
                "query",
                "texts",
                "documents",
                "top_n",
                "candidates",
                "top_k",
                "model",
                "truncation",
                "truncate",
                "truncation_direction",
                "rank_fields",
                "return_documents",
                "filters",
                "fusion",
                "chunk_tokens",
                "retriever",
            ];
            body[*r.pick(&keys)] = odd_value(r);
        }
        _ => {}
    }
    let bytes = match r.below(12) {
        0 => (0..r.below(200)).map(|_| r.next() as u8).collect(),
        1 => b"{\"query\": \"a\", \"texts\": [\"\xff\xfe\"]}".to_vec(),
        2 => serde_json::to_vec(&odd_value(r)).unwrap(),
        3 => {
            let mut b = serde_json::to_vec(&body).unwrap();
            b.truncate(r.below(b.len().max(1)));
            b
        }
        4 => format!(
            "{{\"query\": \"q\", \"texts\": [\"{}\"]}}",
            "w ".repeat(MAX_BODY / 2 + 10)
        )
        .into_bytes(),
        _ => serde_json::to_vec(&body).unwrap(),
    };
    (method.to_string(), path, bytes)
}

#[test]
fn fuzzed_requests_never_crash_the_server_and_every_error_is_json() {
    let dir = temp_dir("fuzz");
    let srv = limited_server(&dir);
    let a = addr(&srv);
    let seed_docs = json!({"documents": [{"id": "d1", "text": "rivers carry water to the sea"},
        {"id": "d2", "text": "coral reefs grow in warm water"}]});
    let up = raw(
        &a,
        "POST",
        "/v1/collections/fz/documents",
        seed_docs.to_string().as_bytes(),
        "",
    )
    .unwrap();
    assert_eq!(up.status, 200, "{}", String::from_utf8_lossy(&up.body));
    let rss_before = rss(srv.child.id());

    const REQUESTS: usize = 3000;
    const THREADS: u64 = 4;
    let counts = Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let failures = Mutex::new(Vec::<String>::new());
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (a, counts, failures) = (&a, &counts, &failures);
            s.spawn(move || {
                let mut r = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                for _ in 0..REQUESTS / THREADS as usize {
                    let (method, path, body) = generate(&mut r);
                    let resp = match raw(a, &method, &path, &body, "") {
                        Ok(resp) => resp,
                        Err(e) => {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{method} {path}: no response: {e}"));
                            continue;
                        }
                    };
                    *counts.lock().unwrap().entry(resp.status).or_default() += 1;
                    let shown = || {
                        format!(
                            "{method} {path} -> {} {}: {}",
                            resp.status,
                            resp.content_type,
                            String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)])
                        )
                    };
                    if resp.status >= 500 && resp.status != 503 {
                        failures.lock().unwrap().push(shown());
                    }
                    if resp.status >= 400 {
                        let v: Option<Value> = serde_json::from_slice(&resp.body).ok();
                        let msg = v
                            .as_ref()
                            .and_then(|v| v.get("error").or(v.get("message")))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        if !resp.content_type.starts_with("application/json") || msg.is_empty() {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("not a JSON error: {}", shown()));
                        }
                    }
                }
            });
        }
    });
    let elapsed = t0.elapsed();
    let counts = counts.into_inner().unwrap();
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "fuzz: {REQUESTS} requests in {:.1} s, statuses {counts:?}",
        elapsed.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} bad answers, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    // The generator reaches successes and refusals alike.
    assert!(counts.get(&200).copied().unwrap_or(0) > 100, "{counts:?}");
    for st in [400u16, 404, 405, 413, 422] {
        assert!(counts.contains_key(&st), "no {st} among {counts:?}");
    }
    // Alive, healthy and not bloated.
    let h = raw(&a, "GET", "/health", b"", "").unwrap();
    assert_eq!(h.status, 200);
    let after = rss(srv.child.id());
    eprintln!(
        "fuzz: server RSS {} MB before, {} MB after",
        rss_before >> 20,
        after >> 20
    );
    assert!(after < 1 << 30, "RSS {} MB", after >> 20);
    let _ = std::fs::remove_dir_all(&dir);
}

fn message(v: &Value) -> String {
    v.get("error")
        .or(v.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn every_limit_is_a_4xx_naming_the_limit_and_the_value() {
    let dir = temp_dir("limits");
    let srv = limited_server(&dir);
    let docs = |n: usize| {
        (0..n)
            .map(|i| format!("passage {i} about rivers"))
            .collect::<Vec<_>>()
    };
    let check = |path: &str, body: Value, status: u16, words: &[&str]| {
        let (st, v, _) = srv.post(path, &body);
        assert_eq!(st, status, "{path} {v}");
        let m = message(&v);
        for w in words {
            assert!(m.contains(w), "{path}: {m:?} does not name {w:?}");
        }
    };
    // At the limit: accepted.
    let (st, _, _) = srv.post("/rerank", &json!({"query": "q", "texts": docs(MAX_DOCS)}));
    assert_eq!(st, 200);
    check(
        "/rerank",
        json!({"query": "q", "texts": docs(MAX_DOCS + 1)}),
        413,
        &["max_documents", "33"],
    );
    let long = "word ".repeat(3000);
    // Three documents of 3,000 words: up to 4 chunks of 512 tokens each, past 4,096 tokens.
    check(
        "/v1/rerank",
        json!({"query": "q", "documents": [long, long, long]}),
        413,
        &["max_request_tokens", "4096"],
    );
    check(
        "/v1/rerank",
        json!({"query": "q", "documents": ["a"], "max_chunks_per_doc": MAX_CHUNKS + 1}),
        422,
        &["max_chunks_per_doc", "5"],
    );
    let (st, _, _) = srv.post(
        "/v1/rerank",
        &json!({"query": "q", "documents": ["a"], "max_chunks_per_doc": MAX_CHUNKS}),
    );
    assert_eq!(st, 200);
    check(
        "/v1/rerank",
        json!({"query": "q", "documents": ["a"], "max_chunks_per_doc": 100000, "max_tokens_per_doc": 10000000}),
        422,
        &["max_chunks_per_doc"],
    );
    let up = |n: usize| json!({"documents": (0..n).map(|i| json!({"id": format!("d{i}"), "text": "rivers"})).collect::<Vec<_>>()});
    let (st, v, _) = srv.post("/v1/collections/c0/documents", &up(MAX_UPLOAD));
    assert_eq!(st, 200, "{v}");
    check(
        "/v1/collections/c0/documents",
        up(MAX_UPLOAD + 1),
        413,
        &["max_upload_documents", "21"],
    );
    // Chunking counts: 5 documents of 200 words in chunks of 8 words is past 20.
    let words = "river ".repeat(200);
    check(
        "/v1/collections/c0/documents",
        json!({"documents": (0..5).map(|i| json!({"id": format!("L{i}"), "text": words})).collect::<Vec<_>>(), "chunk_tokens": 8}),
        413,
        &["max_upload_documents", "chunks"],
    );
    check(
        "/v1/collections/c0/documents",
        json!({"documents": [{"id": "x", "text": "t"}], "chunk_tokens": 8, "overlap": 8}),
        422,
        &["overlap"],
    );
    for big in [MAX_CANDIDATES as u64 + 1, 1_000_000_000_000] {
        check(
            "/v1/collections/c0/search",
            json!({"query": "river", "candidates": big}),
            422,
            &["max_candidates", &big.to_string()],
        );
        check(
            "/v1/collections/c0/search",
            json!({"query": "river", "top_k": big}),
            422,
            &["top_k", "max_candidates"],
        );
    }
    let (st, v, _) = srv.post("/v1/collections/c0/search", &json!({"query": "river", "retriever": "bm25", "candidates": MAX_CANDIDATES, "top_k": MAX_CANDIDATES}));
    assert_eq!(st, 200, "{v}");
    for i in 1..MAX_COLLECTIONS {
        let (st, v, _) = srv.post(&format!("/v1/collections/c{i}/documents"), &up(1));
        assert_eq!(st, 200, "{v}");
    }
    check(
        &format!("/v1/collections/c{MAX_COLLECTIONS}/documents"),
        up(1),
        422,
        &["max_collections", "4"],
    );
    // Existing collections still take writes.
    let (st, _, _) = srv.post("/v1/collections/c1/documents", &up(2));
    assert_eq!(st, 200);
    check(
        "/rerank",
        json!({"query": "q", "texts": ["w ".repeat(MAX_BODY)]}),
        413,
        &["limit"],
    );
    // /info shows every limit.
    let (_, info) = srv.get("/info");
    let info: Value = serde_json::from_str(&info).unwrap();
    for (k, v) in [
        ("max_documents", MAX_DOCS),
        ("max_request_tokens", MAX_TOKENS),
        ("max_candidates", MAX_CANDIDATES),
        ("max_collections", MAX_COLLECTIONS),
        ("max_upload_documents", MAX_UPLOAD),
        ("max_chunks_per_doc", MAX_CHUNKS),
    ] {
        assert_eq!(info["limits"][k], v, "{k} in {}", info["limits"]);
    }
    assert!(info["limits"]["max_queue_ms"].is_u64());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_methods_unknown_routes_and_bad_paths_answer_json_in_the_dialect() {
    let srv = serve(&[]);
    let a = addr(&srv);
    let r = raw(&a, "GET", "/v1/rerank", b"", "").unwrap();
    assert_eq!(r.status, 405);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["message"].as_str().unwrap().contains("POST"), "{v}");
    let r = raw(&a, "PUT", "/rerank", b"{}", "").unwrap();
    assert_eq!(r.status, 405);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error_type"], "Validation", "{v}");
    let r = raw(&a, "POST", "/v1/collections/%FF/search", b"{}", "").unwrap();
    assert!(r.status == 400 || r.status == 404, "{}", r.status);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(!message(&v).is_empty(), "{v}");
    let r = raw(&a, "GET", "/nothing/here", b"", "").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.content_type.starts_with("application/json"));
}

#[test]
fn kill_9_during_concurrent_uploads_loses_no_acknowledged_document() {
    let dir = temp_dir("kill9-uploads");
    let mut srv = serve(&["--collections", dir.to_str().unwrap()]);
    let url = srv.url.clone();
    let acked = Mutex::new(Vec::<(usize, usize)>::new());
    let in_flight = Mutex::new(Vec::<(usize, usize)>::new());
    let sent = AtomicUsize::new(0);
    const BATCH: usize = 10;
    let token = |t: usize, b: usize, i: usize| format!("zq{t}b{b}i{i}");
    std::thread::scope(|s| {
        for t in 0..4 {
            let (url, acked, in_flight, sent) = (&url, &acked, &in_flight, &sent);
            s.spawn(move || {
                let client = Server::client();
                for b in 0.. {
                    let docs: Vec<Value> = (0..BATCH)
                        .map(|i| json!({"id": format!("t{t}-b{b}-{i}"), "text": format!("document {} of batch {b}", token(t, b, i))}))
                        .collect();
                    in_flight.lock().unwrap().push((t, b));
                    sent.fetch_add(1, Ordering::Relaxed);
                    let r = client
                        .post(format!("{url}/v1/collections/crash/documents"))
                        .json(&json!({"documents": docs}))
                        .send();
                    match r {
                        Ok(r) if r.status().as_u16() == 200 => {
                            in_flight.lock().unwrap().retain(|x| *x != (t, b));
                            acked.lock().unwrap().push((t, b));
                        }
                        _ => break,
                    }
                }
            });
        }
        // Let the uploads run, then kill the server without warning.
        let t0 = Instant::now();
        while acked.lock().unwrap().len() < 60 && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        srv.child.kill().unwrap(); // SIGKILL
        let _ = srv.child.wait();
    });
    let acked = acked.into_inner().unwrap();
    let in_flight = in_flight.into_inner().unwrap();
    assert!(
        acked.len() >= 60,
        "only {} batches acknowledged",
        acked.len()
    );
    let srv = serve(&["--collections", dir.to_str().unwrap()]);
    let found = |t: usize, b: usize, i: usize| -> bool {
        let (st, v, _) = srv.post(
            "/v1/collections/crash/search",
            &json!({"query": token(t, b, i), "retriever": "bm25", "candidates": 1, "top_k": 1}),
        );
        assert_eq!(st, 200, "{v}");
        v["results"][0]["id"] == format!("t{t}-b{b}-{i}")
    };
    let mut lost = Vec::new();
    for &(t, b) in &acked {
        for i in 0..BATCH {
            if !found(t, b, i) {
                lost.push(format!("t{t}-b{b}-{i}"));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "acknowledged documents lost after kill -9: {lost:?}"
    );
    // A batch in flight at the kill is all there or not there at all.
    for &(t, b) in &in_flight {
        let present = (0..BATCH).filter(|&i| found(t, b, i)).count();
        assert!(
            present == 0 || present == BATCH,
            "batch t{t}-b{b}: {present} of {BATCH} documents"
        );
    }
    eprintln!(
        "kill -9: {} batches ({} documents) acknowledged, all found; {} in flight",
        acked.len(),
        acked.len() * BATCH,
        in_flight.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_under_load_answers_in_flight_refuses_new_and_exits_0() {
    let mut srv = serve(&[
        "--threads",
        "2",
        "--shutdown-grace-ms",
        "20000",
        "--cache-mb",
        "0",
    ]);
    let (q, docs) = w50();
    let body = json!({"query": q, "documents": docs, "return_documents": false});
    let url = srv.url.clone();
    let t0 = Instant::now();
    // (start, end, status or None for no response), in seconds since t0.
    let log = Mutex::new(Vec::<(f64, f64, Option<u16>)>::new());
    let term_at = Mutex::new(None::<f64>);
    let exited_at = Mutex::new(None::<f64>);
    let exit = std::thread::scope(|s| {
        for _ in 0..6 {
            let (url, body, log, exited_at) = (&url, &body, &log, &exited_at);
            s.spawn(move || {
                let client = Server::client();
                loop {
                    let start = t0.elapsed().as_secs_f64();
                    // Keep sending until a second after the server is gone.
                    if exited_at.lock().unwrap().is_some_and(|t| start > t + 1.0) {
                        break;
                    }
                    let st = client
                        .post(format!("{url}/v1/rerank"))
                        .json(body)
                        .send()
                        .ok()
                        .map(|r| {
                            let st = r.status().as_u16();
                            let _ = r.bytes();
                            st
                        });
                    log.lock()
                        .unwrap()
                        .push((start, t0.elapsed().as_secs_f64(), st));
                    if st.is_none() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        }
        // Under load for a while, then SIGTERM.
        while log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.2 == Some(200))
            .count()
            < 3
        {
            assert!(t0.elapsed() < Duration::from_secs(300), "no load");
            std::thread::sleep(Duration::from_millis(20));
        }
        let at = t0.elapsed().as_secs_f64();
        *term_at.lock().unwrap() = Some(at);
        let kill = Command::new("kill")
            .args(["-TERM", &srv.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = srv.child.wait().unwrap();
        let exited = t0.elapsed().as_secs_f64();
        *exited_at.lock().unwrap() = Some(exited);
        (status, exited - at)
    });
    let (status, exit_after) = exit;
    let at = term_at.into_inner().unwrap().unwrap();
    let log = log.into_inner().unwrap();
    assert!(status.success(), "exit {status:?}");
    assert!(exit_after < 20.0, "exited {exit_after:.1} s after SIGTERM");
    // Requests sent well before the signal were all answered.
    let before: Vec<_> = log.iter().filter(|e| e.0 < at - 0.05).collect();
    assert!(
        before.iter().all(|e| matches!(e.2, Some(200) | Some(429))),
        "{before:?}"
    );
    // Requests sent once shutdown had begun got no 200: refused (503) or no connection.
    let after: Vec<_> = log.iter().filter(|e| e.0 > at + 0.2).collect();
    assert!(!after.is_empty());
    assert!(after.iter().all(|e| e.2 != Some(200)), "{after:?}");
    let in_flight = log.iter().filter(|e| e.0 < at && e.1 > at).count();
    eprintln!("sigterm: {in_flight} requests in flight answered, {} refused after, exit 0 after {exit_after:.2} s", after.len());
    assert!(in_flight > 0, "no request was in flight at the signal");
}
