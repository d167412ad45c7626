//! Finding the CUDA libraries at run time. cudarc opens libcuda, libcublas and libnvrtc by
//! name (dlopen) on first use and panics when one is missing; [`ensure`] opens each first, so
//! a missing library is an error that names it and says where it was looked for.
//!
//! Besides the loader's own search path (LD_LIBRARY_PATH, the system's folders), the folders in
//! `CROSSRANK_CUDA_LIBS` (colon-separated, e.g. a pip `nvidia/cu13/lib` folder) are tried
//! first. A library opened there by its full path is found again by cudarc under its soname.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The environment variable naming extra folders that hold CUDA libraries.
pub const LIB_DIRS_ENV: &str = "CROSSRANK_CUDA_LIBS";

/// A CUDA library the backend needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lib {
    /// The driver API (libcuda, installed with the NVIDIA driver).
    Driver,
    /// cuBLAS (and the cuBLASLt it links to).
    Cublas,
    /// The run-time compiler of the kernels.
    Nvrtc,
}

impl Lib {
    /// cudarc's name for the library.
    fn stem(self) -> &'static str {
        match self {
            Lib::Driver => "cuda",
            Lib::Cublas => "cublas",
            Lib::Nvrtc => "nvrtc",
        }
    }

    /// File-name prefixes opened from an explicit folder, dependencies first.
    fn files(self) -> &'static [&'static str] {
        match self {
            Lib::Driver => &["libcuda.so"],
            Lib::Cublas => &["libcublasLt.so", "libcublas.so"],
            Lib::Nvrtc => &["libnvrtc-builtins.so", "libnvrtc.so"],
        }
    }
}

struct Loaded(#[allow(dead_code)] libloading::Library);

fn held() -> &'static Mutex<Vec<Loaded>> {
    static HELD: OnceLock<Mutex<Vec<Loaded>>> = OnceLock::new();
    HELD.get_or_init(|| Mutex::new(Vec::new()))
}

fn results() -> &'static Mutex<HashMap<Lib, Result<(), String>>> {
    static DONE: OnceLock<Mutex<HashMap<Lib, Result<(), String>>>> = OnceLock::new();
    DONE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The folders of `CROSSRANK_CUDA_LIBS`.
pub fn extra_dirs() -> Vec<PathBuf> {
    std::env::var_os(LIB_DIRS_ENV)
        .map(|v| std::env::split_paths(&v).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

/// Opens `lib` (once per process; later calls return the first answer).
pub fn ensure(lib: Lib) -> Result<(), String> {
    let mut done = results().lock().unwrap_or_else(|p| p.into_inner());
    done.entry(lib)
        .or_insert_with(|| open(lib, &extra_dirs()))
        .clone()
}

/// Files in `dir` whose names start with `prefix` followed by `.` (versioned sonames included;
/// the `.alt` variants NVIDIA ships beside them are skipped).
fn matching(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && !n.contains(".alt."))
        })
        .collect();
    out.sort();
    out
}

fn open(lib: Lib, dirs: &[PathBuf]) -> Result<(), String> {
    let mut held = held().lock().unwrap_or_else(|p| p.into_inner());
    for dir in dirs {
        let mut opened_last = false;
        for (i, prefix) in lib.files().iter().enumerate() {
            for path in matching(dir, prefix) {
                // SAFETY: loading a vendor library runs its initialisers; these are NVIDIA's
                // own libraries, which the CUDA backend exists to call.
                if let Ok(l) = unsafe { libloading::Library::new(&path) } {
                    held.push(Loaded(l));
                    opened_last |= i + 1 == lib.files().len();
                    break;
                }
            }
        }
        if opened_last {
            return Ok(());
        }
    }
    let candidates = cudarc::get_lib_name_candidates(lib.stem());
    for name in &candidates {
        // SAFETY: as above.
        if let Ok(l) = unsafe { libloading::Library::new(name) } {
            held.push(Loaded(l));
            return Ok(());
        }
    }
    let hint = match lib {
        Lib::Driver => "is the NVIDIA driver installed?",
        Lib::Cublas | Lib::Nvrtc => {
            "put the folder that has it (a CUDA toolkit's lib64, or a pip nvidia-* package's lib) on LD_LIBRARY_PATH or in CROSSRANK_CUDA_LIBS"
        }
    };
    Err(format!(
        "lib{}.so could not be loaded (tried {}{}): {hint}",
        lib.stem(),
        candidates
            .iter()
            .filter(|n| n.starts_with(&format!("lib{}.so", lib.stem())))
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        match dirs.len() {
            0 => String::new(),
            n => format!(" and the {n} folder(s) of {LIB_DIRS_ENV}"),
        }
    ))
}
