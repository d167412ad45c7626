//! `crossrank loadtest`: requests/s and latency of a running server at several concurrencies.

use crate::input::{jsonl_objects, read_source, string_field};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Arguments of `loadtest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Server base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// Workload JSONL of {"query", "passage"}: one request of all its passages (first query).
    #[arg(long)]
    pub workload: String,
    /// API to call: tei (/rerank), v1 (/v1/rerank) or v2 (/v2/rerank).
    #[arg(long, default_value = "tei")]
    pub dialect: String,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// Requests per level.
    #[arg(long, default_value_t = 32)]
    pub requests: usize,
    /// Bearer token.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Print JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let (name, text) = read_source(Some(&args.workload))?;
    let objs = jsonl_objects(&name, &text)?;
    if objs.is_empty() {
        bail!("{name}: empty workload");
    }
    let query = string_field(&name, objs[0].0, &objs[0].1, "query")?.to_string();
    let docs: Vec<String> = objs
        .iter()
        .map(|(l, o)| string_field(&name, *l, o, "passage").map(String::from))
        .collect::<Result<_>>()?;
    let (path, body) = match args.dialect.as_str() {
        "tei" => ("/rerank", json!({"query": query, "texts": docs})),
        "v1" => (
            "/v1/rerank",
            json!({"query": query, "documents": docs, "return_documents": false}),
        ),
        "v2" => ("/v2/rerank", json!({"query": query, "documents": docs})),
        other => bail!("--dialect must be tei, v1 or v2, not {other:?}"),
    };
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let body = serde_json::to_vec(&body)?;
    let client = reqwest::blocking::Client::builder().timeout(None).build()?;
    // One warm-up request.
    send(&client, &url, &body, args.api_key.as_deref())?;
    for &c in &args.concurrency {
        let next = AtomicUsize::new(0);
        let lat = Mutex::new(Vec::with_capacity(args.requests));
        let errors = AtomicUsize::new(0);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..c.max(1) {
                s.spawn(|| {
                    while next.fetch_add(1, Ordering::Relaxed) < args.requests {
                        let t = Instant::now();
                        match send(&client, &url, &body, args.api_key.as_deref()) {
                            Ok(()) => lat
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(t.elapsed().as_secs_f64() * 1e3),
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        let wall = t0.elapsed().as_secs_f64();
        let mut l = lat.into_inner().unwrap_or_else(|p| p.into_inner());
        l.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if l.is_empty() {
                f64::NAN
            } else {
                l[((p * (l.len() - 1) as f64).round() as usize).min(l.len() - 1)]
            }
        };
        let report = json!({
            "url": url, "concurrency": c, "requests": args.requests, "documents": docs.len(),
            "errors": errors.load(Ordering::Relaxed), "requests_per_s": l.len() as f64 / wall,
            "p50_ms": pct(0.5), "p95_ms": pct(0.95),
        });
        if args.json {
            println!("{report}");
        } else {
            println!(
                "concurrency {c:>3}: {:.2} requests/s, p50 {:.0} ms, p95 {:.0} ms, {} errors ({} requests of {} documents)",
                l.len() as f64 / wall,
                pct(0.5),
                pct(0.95),
                errors.load(Ordering::Relaxed),
                args.requests,
                docs.len()
            );
        }
    }
    Ok(())
}

fn send(
    client: &reqwest::blocking::Client,
    url: &str,
    body: &[u8],
    key: Option<&str>,
) -> Result<()> {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let v: Value = resp.json().unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: HTTP {status}: {v}");
    }
    Ok(())
}
