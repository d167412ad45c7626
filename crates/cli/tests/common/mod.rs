//! Helpers shared by the integration tests: paths, a spawned `crossrank serve`, fixtures.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn shared() -> PathBuf {
    std::env::var_os("CROSSRANK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_crossrank")
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("crossrank-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn fixture_rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A `crossrank serve` child process on a free loopback port; killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        // Tests share two slow cores: a generous request timeout unless a test sets its own.
        let timeout: &[&str] = if args.contains(&"--request-timeout-ms") {
            &[]
        } else {
            &["--request-timeout-ms", "900000"]
        };
        let mut child = Command::new(bin())
            .arg("serve")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(timeout)
            .args(args)
            .env("HF_HUB_OFFLINE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crossrank serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(u) = l.strip_prefix("crossrank listening on ") {
                        break u.trim().to_string();
                    }
                }
                _ => panic!("server exited before listening: {:?}", child.wait()),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, url }
    }

    pub fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap()
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let resp = Self::client()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v, headers)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let resp = Self::client()
            .get(format!("{}{path}", self.url))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `crossrank score` on (query, passage) pairs: the scores every API must reproduce.
pub fn score_with_cli(query: &str, docs: &[String], extra: &[&str]) -> Vec<f64> {
    let dir = temp_dir("score-ref");
    let file = dir.join("pairs.jsonl");
    let text: String = docs
        .iter()
        .map(|d| serde_json::json!({"query": query, "passage": d}).to_string() + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();
    let out = Command::new(bin())
        .args(["score", "--pairs", file.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["score"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// The first W50-dl20 request: its query and 50 passages.
pub fn w50() -> (String, Vec<String>) {
    let rows = fixture_rows(&shared().join("bench/w50-dl20.jsonl"));
    let q = rows[0]["query"].as_str().unwrap().to_string();
    (
        q,
        rows.iter()
            .map(|r| r["passage"].as_str().unwrap().to_string())
            .collect(),
    )
}

/// A Python venv under the target dir with `packages` installed by pip (made once, reused).
pub fn venv(name: &str, packages: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let py = dir.join("bin/python");
    if !dir.join(".ready").exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let st = Command::new(&python)
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3 -m venv");
        assert!(st.success(), "creating the venv {name} failed");
        let st = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(packages)
            .status()
            .expect("pip install");
        assert!(st.success(), "pip install {packages:?} failed");
        std::fs::write(dir.join(".ready"), "ok").unwrap();
    }
    py
}
