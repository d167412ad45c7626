//! A spawned `crossrank serve` on loopback.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `crossrank serve` child process on a free loopback port; killed on drop.
pub struct Server {
    /// The child process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Server {
    /// Starts `bin serve` with `args`, waiting until it prints the address it listens on.
    pub fn start(bin: &Path, args: &[&str]) -> Server {
        // Tests share two slow cores: a generous request timeout unless a test sets its own.
        let timeout: &[&str] = if args.contains(&"--request-timeout-ms") {
            &[]
        } else {
            &["--request-timeout-ms", "900000"]
        };
        let mut child = Command::new(bin)
            .arg("serve")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(timeout)
            .args(args)
            .env("HF_HUB_OFFLINE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crossrank serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(u) = l.strip_prefix("crossrank listening on ") {
                        break u.trim().to_string();
                    }
                }
                _ => panic!(
                    "server {args:?} exited before listening: {:?}",
                    child.wait()
                ),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, url }
    }

    /// A blocking HTTP client with a long timeout.
    pub fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .expect("reqwest client")
    }

    /// POSTs JSON; returns the status, the body as JSON (a string value if it is not JSON) and
    /// the headers.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let resp = Self::client()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v, headers)
    }

    /// GETs; returns the status and the body text.
    pub fn get(&self, path: &str) -> (u16, String) {
        let resp = Self::client()
            .get(format!("{}{path}", self.url))
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
