//! `--device` on a host without a GPU (CI): `cuda` fails at once with a message that says
//! what is missing, `auto` runs on the CPU with exactly the CPU's scores and says why, and
//! options that only mean something on one device are refused on the other.

use crossrank_engine::backend::cuda;
use crossrank_engine::{CrossEncoder, CrossEncoderOptions, Device, Dtype, Quantize};
use crossrank_testkit::{repo, shared};
use std::path::{Path, PathBuf};

fn minilm() -> PathBuf {
    repo().join("models/minilm-l6-rerank")
}

fn load(dir: &Path, device: Device, dtype: Option<Dtype>) -> Result<CrossEncoder, String> {
    let options = CrossEncoderOptions {
        device,
        dtype,
        ..Default::default()
    };
    CrossEncoder::load(dir, options).map_err(|e| e.to_string())
}

/// True where this host has a usable GPU (then the no-GPU expectations do not apply).
fn has_gpu() -> bool {
    match cuda::probe(0) {
        Ok(info) => {
            eprintln!("SKIPPED: this host has a GPU ({})", info.name);
            true
        }
        Err(_) => false,
    }
}

#[test]
fn cuda_without_a_gpu_fails_at_once_naming_the_driver() {
    if has_gpu() {
        return;
    }
    let t = std::time::Instant::now();
    let e = load(&minilm(), Device::Cuda(0), None)
        .err()
        .expect("cuda must fail here");
    assert!(e.contains("--device cuda:0: no CUDA driver"), "{e}");
    assert!(e.contains("libcuda.so"), "{e}");
    assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
    let e = load(&minilm(), Device::Cuda(3), Some(Dtype::F16))
        .err()
        .unwrap();
    assert!(e.contains("cuda:3"), "{e}");
}

#[test]
fn auto_without_a_gpu_runs_on_the_cpu_with_the_cpus_scores() {
    if has_gpu() {
        return;
    }
    let pairs = [
        ("what is rust", "Rust is a systems programming language."),
        ("what is rust", "A fungus that grows on wheat."),
    ];
    let auto = load(&minilm(), Device::Auto, None).unwrap();
    let cpu = load(&minilm(), Device::Cpu, None).unwrap();
    assert_eq!(auto.device(), "cpu");
    assert_eq!(auto.dtype(), Dtype::F32);
    assert_eq!(auto.device_memory(), None);
    let note = auto.device_note().expect("auto says what it chose");
    assert!(
        note.starts_with("device auto: cpu (no CUDA driver"),
        "{note}"
    );
    assert_eq!(cpu.device_note(), None);
    assert_eq!(auto.predict(&pairs).unwrap(), cpu.predict(&pairs).unwrap());
}

#[test]
fn device_specific_options_are_refused_on_the_other_device() {
    let e = load(&minilm(), Device::Cpu, Some(Dtype::Bf16))
        .err()
        .unwrap();
    assert!(e.contains("--dtype bf16 runs on a GPU only"), "{e}");
    let e = CrossEncoder::load(
        &minilm(),
        CrossEncoderOptions {
            device: Device::Cuda(0),
            quantize: Quantize::Int8,
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("--quantize int8 is a CPU option"), "{e}");
    // An architecture the CUDA backend does not run yet: refused before any GPU is looked for,
    // and `auto` keeps it on the CPU.
    let modern = shared().join("fixtures/tiny-modernbert-cls");
    let e = load(&modern, Device::Cuda(0), None).err().unwrap();
    assert!(e.contains("ModernBert runs on --device cpu"), "{e}");
    let m = load(&modern, Device::Auto, None).unwrap();
    assert_eq!(m.device(), "cpu");
    assert!(
        m.device_note().unwrap().contains("does not run ModernBert"),
        "{:?}",
        m.device_note()
    );
}
