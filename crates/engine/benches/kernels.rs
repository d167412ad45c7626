//! Micro-benchmarks of the GEMM kernels at MiniLM-L6's shapes (W50-dl20: 6,078 tokens), or
//! with `-- qwen3` at Qwen3-Reranker-0.6B's (1,364 tokens: five W50-dl20 pairs in its template).
//! `cargo bench -p crossrank-engine --bench kernels [-- qwen3]` prints GFLOP/s against the
//! measured FMA peak of one core.

use crossrank_engine::kernels::gemm::{Epilogue, Gemm, PackedMatrix};
use crossrank_engine::kernels::qgemm::{QGemm, QuantizedMatrix, QuantizedRows};
use crossrank_engine::kernels::{isa, peak};
use std::time::Instant;

fn median_ms(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let peak1 = peak::measured_peak_gflops();
    println!(
        "isa {}, measured FP32 FMA peak {peak1:.1} GFLOP/s per core",
        isa().name()
    );
    let args: Vec<String> = std::env::args().collect();
    let qwen3 = args.iter().any(|a| a == "qwen3");
    let custom: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let one;
    let (m, shapes): (usize, &[(&str, usize, usize)]) = if let [m, k, n] = custom[..] {
        one = [("custom", k, n)];
        (m, &one)
    } else if qwen3 {
        (
            1364,
            &[
                ("qkv", 1024, 4096),
                ("o", 2048, 1024),
                ("gate_up", 1024, 6144),
                ("down", 3072, 1024),
            ],
        )
    } else {
        (
            6078,
            &[
                ("qkv", 384, 1152),
                ("attn_out", 384, 384),
                ("ffn_in", 384, 1536),
                ("ffn_out", 1536, 384),
            ],
        )
    };
    println!(
        "{:<9} {:>5} {:>5} {:>5} {:>7} {:>10} {:>10} {:>7}",
        "layer", "m", "k", "n", "threads", "fp32 GF/s", "of peak", "int8 GOP/s"
    );
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for &(name, k, n) in shapes {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 104_729 % 1000) as f32 - 500.0) * 1e-3)
                .collect();
            let bias = vec![0.1f32; n];
            let packed = PackedMatrix::from_linear_weight(&w, n, k);
            let qw = QuantizedMatrix::from_linear_weight(&w, n, k);
            let mut c = vec![0.0f32; m * n];
            let flop = 2.0 * (m * k * n) as f64;
            let fp = pool.install(|| {
                median_ms(
                    || {
                        Gemm {
                            a: &a,
                            lda: k,
                            m,
                            b: &packed,
                            bias: Some(&bias),
                            accumulate: false,
                            epilogue: Epilogue::None,
                        }
                        .run(&mut c, n, true)
                    },
                    7,
                )
            });
            let mut qa = QuantizedRows::default();
            let q = pool.install(|| {
                median_ms(
                    || {
                        qa.quantize(&a, k, m, k, true);
                        QGemm {
                            a: &qa,
                            m,
                            b: &qw,
                            bias: Some(&bias),
                            accumulate: false,
                            epilogue: Epilogue::None,
                        }
                        .run(&mut c, n, true)
                    },
                    7,
                )
            });
            let gf = flop / fp / 1e6;
            println!(
                "{name:<9} {m:>5} {k:>5} {n:>5} {threads:>7} {gf:>10.1} {:>9.0}% {:>10.1}",
                100.0 * gf / (peak1 * threads as f64),
                flop / q / 1e6
            );
        }
    }
}
