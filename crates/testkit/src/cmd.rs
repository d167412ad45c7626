//! A command runner whose failures say what ran and what it printed.

use serde_json::Value;
use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A command to run once; `ok`, `fails` and `json` check the outcome and panic with the command
/// line, exit status, stdout and stderr when it is not the expected one.
pub struct Cmd {
    cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// `program` with no arguments; offline for the Hugging Face hub.
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        let mut cmd = Command::new(program);
        cmd.env("HF_HUB_OFFLINE", "1");
        Cmd { cmd, stdin: None }
    }

    /// Adds one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.cmd.arg(a);
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, a: I) -> Cmd {
        self.cmd.args(a);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.cmd.env(k, v);
        self
    }

    /// Runs in `dir`.
    pub fn current_dir(mut self, dir: &Path) -> Cmd {
        self.cmd.current_dir(dir);
        self
    }

    /// Feeds `text` on stdin.
    pub fn stdin(mut self, text: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(text.into());
        self
    }

    /// Runs to the end, whatever the exit status.
    pub fn output(mut self) -> (String, Output) {
        let line = format!("{:?}", self.cmd);
        self.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {line}: {e}"));
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = self.stdin.take().unwrap_or_default();
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for {line}: {e}"));
        let _ = writer.join();
        (line, out)
    }

    /// Runs and expects exit 0; returns stdout.
    pub fn ok(self) -> String {
        let (line, out) = self.output();
        if !out.status.success() {
            panic!("expected success\n{}", describe(&line, &out));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects exit 0 with JSON on stdout (a string value if it is not JSON).
    pub fn json(self) -> Value {
        let text = self.ok();
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    /// Runs and expects exit status `code` without a panic message; returns stderr.
    pub fn fails(self, code: i32) -> String {
        let (line, out) = self.output();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.code() != Some(code) || err.contains("panicked") {
            panic!(
                "expected exit {code} without a panic\n{}",
                describe(&line, &out)
            );
        }
        err
    }
}

/// The command line, exit status, stdout and stderr of a finished command.
pub fn describe(line: &str, out: &Output) -> String {
    format!(
        "command: {line}\nstatus: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
