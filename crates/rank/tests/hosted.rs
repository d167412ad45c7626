//! Hosted rerankers against a fault-injecting HTTP server on loopback: retries, Retry-After,
//! timeouts, malformed and short answers, splitting and merging.

use crossrank_rank::hosted::{HostedOptions, HostedReranker};
use crossrank_rank::long_docs::LongDocs;
use crossrank_rank::{RankError, Reranker, ScoreOptions};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

/// Cohere-style answer scoring document "d<i>" as i / 10000, sorted best first.
fn cohere_ok(req: &Value) -> Reply {
    let docs = req["documents"].as_array().unwrap();
    let mut results: Vec<Value> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let n: f64 = d.as_str().unwrap()[1..].parse().unwrap();
            json!({"index": i, "relevance_score": n / 10_000.0})
        })
        .collect();
    results.sort_by(|a, b| {
        b["relevance_score"]
            .as_f64()
            .unwrap()
            .total_cmp(&a["relevance_score"].as_f64().unwrap())
    });
    reply(200, json!({"id": "x", "results": results, "meta": {}}))
}

/// Requests seen: body and Authorization header.
type Seen = Arc<Mutex<Vec<(Value, Option<String>)>>>;

/// A loopback server answering request n (0-based) with `handler(n, body)`; records requests.
struct Fault {
    url: String,
    seen: Seen,
}

impl Fault {
    fn start(handler: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Fault {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let log = log.clone();
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut len = 0usize;
                    let mut auth = None;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        let lower = l.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if lower.starts_with("authorization:") {
                            auth = Some(l["authorization:".len()..].trim().to_string());
                        }
                    }
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let n = {
                        let mut s = log.lock().unwrap();
                        s.push((req.clone(), auth));
                        s.len() - 1
                    };
                    let r = handler(n, &req);
                    std::thread::sleep(r.delay);
                    let mut head = format!("HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n", r.status, r.body.len());
                    for (k, v) in &r.headers {
                        head += &format!("{k}: {v}\r\n");
                    }
                    let _ = stream.write_all(format!("{head}\r\n{}", r.body).as_bytes());
                });
            }
        });
        Fault { url, seen }
    }
    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn cohere(f: &Fault, opts: HostedOptions) -> HostedReranker {
    HostedReranker::from_spec(
        "cohere:rerank-v3.5",
        HostedOptions {
            base_url: Some(f.url.clone()),
            api_key: Some("test-key".into()),
            ..opts
        },
    )
    .unwrap()
}

fn fast() -> HostedOptions {
    HostedOptions {
        backoff: Duration::from_millis(20),
        timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

fn docs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("d{i}")).collect()
}

fn refs(d: &[String]) -> Vec<&str> {
    d.iter().map(String::as_str).collect()
}

#[test]
fn retry_after_429_is_honoured_then_succeeds() {
    let f = Fault::start(|n, req| {
        if n == 0 {
            Reply {
                headers: vec![("Retry-After".into(), "1".into())],
                ..reply(429, json!({"message": "slow down"}))
            }
        } else {
            cohere_ok(req)
        }
    });
    let r = cohere(&f, fast());
    let t = Instant::now();
    let out = r.score("q", &refs(&docs(3))).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured ({:?})",
        t.elapsed()
    );
    assert_eq!(f.calls(), 2);
    assert_eq!(
        out.iter().map(|x| x.score).collect::<Vec<_>>(),
        vec![0.0, 0.0001, 0.0002]
    );
    // The wire format and the key: Cohere v2 with a bearer token.
    let seen = f.seen.lock().unwrap();
    assert_eq!(seen[1].0["model"], "rerank-v3.5");
    assert_eq!(seen[1].0["top_n"], 3);
    assert_eq!(seen[1].1.as_deref(), Some("Bearer test-key"));
}

#[test]
fn server_error_is_retried_with_backoff() {
    let f = Fault::start(|n, req| {
        if n < 2 {
            reply(500, json!({"message": "boom"}))
        } else {
            cohere_ok(req)
        }
    });
    let out = cohere(&f, fast()).score("q", &refs(&docs(4))).unwrap();
    assert_eq!(f.calls(), 3);
    assert_eq!(out.len(), 4);
}

#[test]
fn persistent_failure_gives_a_clear_error() {
    let f = Fault::start(|_, _| reply(503, json!({"message": "overloaded"})));
    let e = cohere(
        &f,
        HostedOptions {
            max_retries: 2,
            ..fast()
        },
    )
    .score("q", &refs(&docs(2)))
    .unwrap_err();
    assert_eq!(f.calls(), 3);
    let msg = e.to_string();
    assert!(
        msg.contains("cohere")
            && msg.contains("HTTP 503")
            && msg.contains("overloaded")
            && msg.contains("3 attempts"),
        "{msg}"
    );
    assert!(
        !msg.contains("test-key"),
        "the key leaked into an error: {msg}"
    );
}

#[test]
fn a_refusal_policy_cohere_cannot_apply_is_refused_before_any_call() {
    let f = Fault::start(|_, req| cohere_ok(req));
    let opts = ScoreOptions {
        long_docs: Some(LongDocs::Reject),
        ..Default::default()
    };
    let e = cohere(&f, fast())
        .score_with("q", &refs(&docs(2)), &opts)
        .unwrap_err();
    assert!(matches!(e, RankError::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("truncation: false"), "{e}");
    assert_eq!(f.calls(), 0);
}

#[test]
fn client_errors_are_not_retried() {
    let f = Fault::start(|_, _| reply(400, json!({"message": "invalid model"})));
    let e = cohere(&f, fast()).score("q", &refs(&docs(2))).unwrap_err();
    assert_eq!(f.calls(), 1);
    assert!(
        matches!(
            e,
            RankError::Provider {
                status: Some(400),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn timeout_is_retried_then_reported() {
    let f = Fault::start(|_, req| Reply {
        delay: Duration::from_millis(800),
        ..cohere_ok(req)
    });
    let opts = HostedOptions {
        timeout: Duration::from_millis(200),
        max_retries: 1,
        ..fast()
    };
    let e = cohere(&f, opts)
        .score("q", &refs(&docs(2)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("timed out") && e.contains("2 attempts"), "{e}");
}

#[test]
fn malformed_json_and_short_results_are_clear_errors() {
    let f = Fault::start(|_, _| Reply {
        body: "{\"results\": [".into(),
        ..reply(200, Value::Null)
    });
    let e = cohere(&f, fast())
        .score("q", &refs(&docs(2)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("malformed JSON"), "{e}");
    assert_eq!(f.calls(), 1);
    let f = Fault::start(|_, _| {
        reply(
            200,
            json!({"results": [{"index": 0, "relevance_score": 0.5}]}),
        )
    });
    let e = cohere(&f, fast())
        .score("q", &refs(&docs(3)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("scored 1 of 3 documents"), "{e}");
    let f = Fault::start(|_, _| {
        reply(
            200,
            json!({"results": [{"index": 7, "relevance_score": 0.5}]}),
        )
    });
    let e = cohere(&f, fast())
        .score("q", &refs(&docs(1)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn large_requests_are_split_and_merged_in_order() {
    let f = Fault::start(|_, req| cohere_ok(req));
    let d = docs(2500);
    let out = cohere(&f, fast()).score("q", &refs(&d)).unwrap();
    assert_eq!(f.calls(), 3, "2,500 documents at 1,000 per call");
    let sizes: Vec<usize> = f
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(r, _)| r["documents"].as_array().unwrap().len())
        .collect();
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![500, 1000, 1000]);
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r.index, i);
        assert!(
            (r.score as f64 - i as f64 / 10_000.0).abs() < 1e-6,
            "document {i} got {}",
            r.score
        );
    }
    let ranked = cohere(&f, fast()).rerank("q", &refs(&d), Some(3)).unwrap();
    assert_eq!(
        ranked.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![2499, 2498, 2497]
    );
}

#[test]
fn voyage_jina_and_tei_wire_formats() {
    let f = Fault::start(|_, req| {
        let n = req["documents"].as_array().unwrap().len();
        reply(
            200,
            json!({"object": "list", "data": (0..n).map(|i| json!({"index": i, "relevance_score": 0.5})).collect::<Vec<_>>()}),
        )
    });
    let v = HostedReranker::from_spec(
        "voyage:rerank-2.5",
        HostedOptions {
            base_url: Some(f.url.clone()),
            api_key: Some("vk".into()),
            ..fast()
        },
    )
    .unwrap();
    assert_eq!(v.score("q", &["a", "b"]).unwrap().len(), 2);
    // A refusal policy travels as Voyage's own switch.
    let reject = ScoreOptions {
        long_docs: Some(LongDocs::Reject),
        ..Default::default()
    };
    assert_eq!(v.score_with("q", &["a"], &reject).unwrap().len(), 1);
    // ... and as the reranker's own policy (the CLI's --long-docs reject).
    let v = v.with_long_docs(LongDocs::Reject);
    assert_eq!(v.score("q", &["a"]).unwrap().len(), 1);
    let seen = f.seen.lock().unwrap();
    assert_eq!(seen[0].0["top_k"], 2);
    assert_eq!(seen[0].0["truncation"], true);
    assert_eq!(seen[1].0["truncation"], false);
    assert_eq!(seen[2].0["truncation"], false);
    drop(seen);

    let e = HostedReranker::from_spec(
        "jina:jina-reranker-v2-base-multilingual",
        HostedOptions::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("JINA_API_KEY"), "{e}");

    let f = Fault::start(|_, req| {
        let n = req["texts"].as_array().unwrap().len();
        reply(
            200,
            Value::Array(
                (0..n)
                    .rev()
                    .map(|i| json!({"index": i, "score": i as f64 / 100.0}))
                    .collect(),
            ),
        )
    });
    let t = HostedReranker::from_spec(&format!("tei:{}", f.url), fast()).unwrap();
    let d = docs(70);
    let out = t.score("q", &refs(&d)).unwrap();
    assert_eq!(f.calls(), 3, "TEI's 32-text client batches");
    assert!(
        (out[40].score - 0.08).abs() < 1e-6,
        "index 40 is the 9th of the second call"
    );
}
