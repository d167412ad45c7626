//! `crossrank loadtest`: requests/s, status counts and latency of a running server at several
//! concurrencies, for a fixed number of requests or a fixed time, and the server's peak RSS.

use crate::input::{jsonl_objects, read_source, string_field};
use anyhow::{bail, Context, Result};
use crossrank_eval::stats::percentile;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// Requests per level (ignored with --duration).
    #[arg(long, default_value_t = 32)]
    pub requests: usize,
    /// Seconds per level: keep every client sending for this long instead of a fixed count.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Bearer token.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Resend a refused request at once instead of waiting its Retry-After (as client SDKs
    /// do), to measure a server hammered by clients that ignore it.
    #[arg(long)]
    pub no_backoff: bool,
    /// Repeated traffic: one request per query of the workload (its passages), in file order,
    /// except that each request repeats an earlier one (the same query and chunks) with this
    /// probability, as RAG traffic does; for measuring the pair-score cache.
    #[arg(long, conflicts_with = "duration")]
    pub repeat_share: Option<f64>,
    /// Print JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// The request bodies of `--repeat-share`: one per query, passages grouped in file order.
fn per_query(
    objs: &[(usize, serde_json::Map<String, serde_json::Value>)],
    name: &str,
    dialect: &str,
) -> Result<Vec<Vec<u8>>> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (l, o) in objs {
        let q = string_field(name, *l, o, "query")?;
        let p = string_field(name, *l, o, "passage")?.to_string();
        match groups.iter_mut().find(|g| g.0 == q) {
            Some(g) => g.1.push(p),
            None => groups.push((q.to_string(), vec![p])),
        }
    }
    groups
        .into_iter()
        .map(|(q, d)| Ok(serde_json::to_vec(&body(dialect, &q, &d)?.1)?))
        .collect()
}

/// The path and body of one request in `dialect`.
fn body(dialect: &str, query: &str, docs: &[String]) -> Result<(&'static str, serde_json::Value)> {
    Ok(match dialect {
        "tei" => ("/rerank", json!({"query": query, "texts": docs})),
        "v1" => (
            "/v1/rerank",
            json!({"query": query, "documents": docs, "return_documents": false}),
        ),
        "v2" => ("/v2/rerank", json!({"query": query, "documents": docs})),
        other => bail!("--dialect must be tei, v1 or v2, not {other:?}"),
    })
}

/// Which body each of `n` requests sends: the next new one, or with probability `share` an
/// earlier request's (uniformly), from a fixed seed.
fn schedule(n: usize, distinct: usize, share: f64) -> Vec<usize> {
    let mut rng = crossrank_eval::stats::XorShift64::new(0x5eed_cafe);
    let (mut out, mut fresh) = (Vec::with_capacity(n), 0usize);
    for j in 0..n {
        let u = (rng.next_u64() % 1_000_000) as f64 / 1e6;
        if j > 0 && u < share {
            let earlier = out[(rng.next_u64() % j as u64) as usize];
            out.push(earlier);
        } else {
            out.push(fresh % distinct.max(1));
            fresh += 1;
        }
    }
    out
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
    let (path, first) = body(&args.dialect, &query, &docs)?;
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let first = serde_json::to_vec(&first)?;
    // The bodies sent: the one request of all passages, or with --repeat-share one per query.
    let bodies = match args.repeat_share {
        Some(f) if !(0.0..1.0).contains(&f) => bail!("--repeat-share must be in [0, 1)"),
        Some(_) => per_query(&objs, &name, &args.dialect)?,
        None => vec![first.clone()],
    };
    let client = reqwest::blocking::Client::builder().timeout(None).build()?;
    // One warm-up request, which must succeed (with --repeat-share, another query, so that
    // nothing it scores is cached for the measured requests).
    let warm = match args.repeat_share {
        Some(_) => serde_json::to_vec(&body(&args.dialect, "crossrank warm-up", &docs[..1])?.1)?,
        None => first,
    };
    let (st, _) = send(&client, &url, &warm, args.api_key.as_deref())?;
    if st != 200 {
        bail!("{url}: the warm-up request answered HTTP {st}");
    }
    for &c in &args.concurrency {
        let order = schedule(
            args.requests,
            bodies.len(),
            args.repeat_share.unwrap_or(0.0),
        );
        let next = AtomicUsize::new(0);
        let lat = Mutex::new(Vec::new());
        let statuses = Mutex::new(BTreeMap::<String, usize>::new());
        let t0 = Instant::now();
        let until = args
            .duration
            .map(|d| t0 + Duration::from_secs_f64(d.max(0.0)));
        // The next request's body, or None when the level is over.
        let more = || match until {
            Some(u) => (Instant::now() < u).then(|| &bodies[0]),
            None => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                (i < args.requests).then(|| &bodies[order[i]])
            }
        };
        std::thread::scope(|s| {
            for _ in 0..c.max(1) {
                s.spawn(|| {
                    while let Some(body) = more() {
                        let t = Instant::now();
                        let key = match send(&client, &url, body, args.api_key.as_deref()) {
                            Ok((429, retry)) => {
                                if !args.no_backoff {
                                    // Honour Retry-After (capped so a level ends on time).
                                    let wait = retry.unwrap_or(1.0).clamp(0.1, 10.0);
                                    std::thread::sleep(Duration::from_secs_f64(wait));
                                }
                                "429".to_string()
                            }
                            Ok((200, _)) => {
                                lat.lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(t.elapsed().as_secs_f64() * 1e3);
                                "200".to_string()
                            }
                            Ok((status, _)) => status.to_string(),
                            Err(_) => "transport_error".to_string(),
                        };
                        *statuses
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(key)
                            .or_default() += 1;
                    }
                });
            }
        });
        let wall = t0.elapsed().as_secs_f64();
        let l = lat.into_inner().unwrap_or_else(|p| p.into_inner());
        let pct = |p: f64| percentile(&l, p);
        let statuses = statuses.into_inner().unwrap_or_else(|p| p.into_inner());
        let sent: usize = statuses.values().sum();
        let peak = server_peak_rss(&client, &args.url, args.api_key.as_deref());
        let report = json!({
            "url": url, "concurrency": c, "requests": sent, "documents": docs.len() / bodies.len(),
            "distinct_requests": bodies.len().min(args.requests), "repeat_share": args.repeat_share,
            "seconds": wall, "statuses": statuses, "ok_per_s": l.len() as f64 / wall,
            "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "server_peak_rss_mb": peak.map(|b| b as f64 / 1048576.0),
        });
        if args.json {
            println!("{report}");
        } else {
            let counts: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            println!(
                "concurrency {c:>3}: {sent} requests of {} documents in {wall:.1} s; {}; {:.2} ok/s, 200s p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms; server peak RSS {}",
                docs.len() / bodies.len(),
                counts.join(", "),
                l.len() as f64 / wall,
                pct(0.5),
                pct(0.95),
                pct(0.99),
                peak.map(|b| format!("{:.0} MB", b as f64 / 1048576.0))
                    .unwrap_or_else(|| "unknown".into()),
            );
        }
    }
    Ok(())
}

/// The server's peak resident memory from its /metrics, if it reports one.
fn server_peak_rss(
    client: &reqwest::blocking::Client,
    base: &str,
    key: Option<&str>,
) -> Option<u64> {
    let mut req = client.get(format!("{}/metrics", base.trim_end_matches('/')));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let text = req.send().ok()?.text().ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("crossrank_peak_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
}

/// Sends one request; the HTTP status and Retry-After seconds, or an error when no response
/// came.
fn send(
    client: &reqwest::blocking::Client,
    url: &str,
    body: &[u8],
    key: Option<&str>,
) -> Result<(u16, Option<f64>)> {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok());
    // Read the whole body so the connection is reused.
    let _ = resp.bytes();
    Ok((status, retry))
}
