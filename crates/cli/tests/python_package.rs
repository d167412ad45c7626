//! The Python package end to end: maturin builds the wheel from `crates/python`, pip installs
//! it into a venv, and pytest runs `crates/python/tests`: `predict` and `rank` against the
//! sentence-transformers 6.2 fixtures, errors, four threads, the LangChain and LlamaIndex
//! adapters with the frameworks' own types. The venv (maturin, numpy, pytest, the two
//! frameworks) lives under the target dir and is reused between runs.

mod common;

use common::*;
use std::path::Path;

#[test]
#[ignore = "e2e: maturin, numpy, pytest, langchain-core and llama-index-core from PyPI"]
fn the_wheel_builds_installs_and_passes_its_pytest_suite() {
    let py = venv(
        "py-package-venv",
        &[
            "maturin==1.16.0",
            "numpy",
            "pytest",
            "langchain-core>=0.3",
            "llama-index-core>=0.12",
        ],
    );
    let bin = py.parent().unwrap();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wheels");
    let _ = std::fs::remove_dir_all(&out);
    let manifest = repo().join("crates/python/Cargo.toml");
    // The test profile: the engine and its dependencies are optimised there too, and already
    // built by the rest of the suite (the README's release build is for shipping).
    Cmd::new(bin.join("maturin"))
        .args(["build", "--profile", "dev", "--auditwheel", "skip", "-m"])
        .arg(&manifest)
        .arg("--out")
        .arg(&out)
        .ok();
    let wheel = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("maturin wrote a wheel");
    let size = std::fs::metadata(&wheel).unwrap().len();
    eprintln!("wheel {} ({:.1} MB)", wheel.display(), size as f64 / 1e6);
    Cmd::new(&py)
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(["--force-reinstall", "--no-deps"])
        .arg(&wheel)
        .ok();
    // Run from outside the source tree so that `import crossrank` is the installed wheel.
    let report = Cmd::new(&py)
        .args(["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"])
        .arg(repo().join("crates/python/tests"))
        .env("CROSSRANK_SHARED", shared())
        // Empty counts as unset: the default model must come from the wheel itself.
        .env("CROSSRANK_DEFAULT_MODEL", "")
        .current_dir(&std::env::temp_dir())
        .ok();
    eprintln!("{report}");
    assert!(report.contains(" passed"), "{report}");
    assert!(!report.contains("skipped"), "{report}");
}
