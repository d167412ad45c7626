//! `crossrank bench`: latency of whole rerank requests (tokenisation included).

use crate::input::read_pairs;
use crate::model_spec::{ModelArgs, QuantizeArg};
use anyhow::{bail, Result};
use crossrank_engine::kernels::peak;
use crossrank_eval::stats::percentile;
use std::time::Instant;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Workload: JSONL of {"query", "passage"}; the whole file is one request.
    #[arg(long)]
    pub workload: String,
    /// Timed requests.
    #[arg(long, default_value_t = 20)]
    pub repeat: usize,
    /// Untimed requests first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// CPU clock in GHz for the nominal FP32 peak (default: /proc/cpuinfo's "cpu MHz").
    #[arg(long)]
    pub clock_ghz: Option<f64>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn cpu_clock_ghz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some(mhz / 1000.0)
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    args.model.truncation_only("bench")?;
    let (name, pairs) = read_pairs(&args.workload)?;
    if pairs.is_empty() || args.repeat == 0 {
        bail!("{name}: nothing to time (empty workload or --repeat 0)");
    }
    let model = args.model.load()?;
    let encoded = model.tokenize(&pairs)?;
    let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
    let tokens: usize = lengths.iter().sum();
    let flops = model.model_flops(&lengths);
    let executed = model.executed_flops(&encoded);
    for _ in 0..args.warmup {
        model.predict(&pairs)?;
    }
    let mut ms = Vec::with_capacity(args.repeat);
    for _ in 0..args.repeat {
        let t = Instant::now();
        std::hint::black_box(model.predict(&pairs)?);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (median, p95) = (percentile(&ms, 0.5), percentile(&ms, 0.95));
    let clock = args.clock_ghz.or_else(cpu_clock_ghz).unwrap_or(2.5);
    let threads = model.threads();
    let on_cpu = model.device() == "cpu";
    let per_cycle = peak::nominal_flop_per_cycle();
    let nominal_peak = threads as f64 * per_cycle * clock;
    // The CPU peaks mean nothing for a GPU run (and the measuring loop takes a moment).
    let measured_peak = if on_cpu {
        threads as f64 * peak::measured_peak_gflops()
    } else {
        f64::NAN
    };
    // Achieved rate counts the FLOPs actually executed.
    let gflops = executed / 1e9 / (median / 1000.0);
    let cpu_only = |v: f64| on_cpu.then_some(v);
    let report = serde_json::json!({
        "engine": "crossrank", "quantize": crossrank_engine::Quantize::from(args.model.quantize).name(), "model": model.dir().display().to_string(), "workload": name,
        "device": model.device(), "device_name": model.device_name(), "dtype": model.dtype().name(),
        "device_memory_bytes": model.device_memory(),
        "isa": crossrank_engine::kernels::isa().name(), "threads": threads, "pairs": pairs.len(),
        "tokens": tokens, "model_gflop_per_request": flops / 1e9,
        "executed_gflop_per_request": executed / 1e9, "repeat": args.repeat,
        "median_ms": median, "p95_ms": p95, "pairs_per_s": pairs.len() as f64 / (median / 1000.0),
        "tokens_per_s": tokens as f64 / (median / 1000.0), "gflop_per_s": gflops,
        "clock_ghz": cpu_only(clock), "nominal_peak_gflop_per_s": cpu_only(nominal_peak),
        "fraction_of_nominal_peak": cpu_only(gflops / nominal_peak),
        "measured_peak_gflop_per_s": cpu_only(measured_peak), "fraction_of_measured_peak": cpu_only(gflops / measured_peak),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "workload   {name}: {} pairs, {tokens} tokens, {:.1} GFLOP per request ({:.1} executed: the BERT family's last layer runs first tokens only, decoders run shared prompt prefixes once)",
            pairs.len(),
            flops / 1e9,
            executed / 1e9
        );
        let kernels = match args.model.quantize {
            _ if !on_cpu => format!(
                "{}, {} ({})",
                model.dtype(),
                model.device(),
                model.device_name()
            ),
            QuantizeArg::None => {
                format!("fp32, {} kernels", crossrank_engine::kernels::isa().name())
            }
            QuantizeArg::Int8 => format!(
                "int8, {} kernels",
                if crossrank_engine::kernels::qgemm::vnni() {
                    "avx512-vnni"
                } else {
                    "portable integer"
                }
            ),
        };
        if on_cpu {
            println!("engine     crossrank {kernels}, {threads} thread(s)");
        } else {
            println!("engine     crossrank {kernels}");
        }
        println!(
            "latency    median {median:.1} ms, p95 {p95:.1} ms over {} requests",
            args.repeat
        );
        println!(
            "throughput {:.1} pairs/s, {:.0} tokens/s",
            pairs.len() as f64 / (median / 1000.0),
            tokens as f64 / (median / 1000.0)
        );
        if !on_cpu {
            println!("compute    {gflops:.1} GFLOP/s");
            return Ok(());
        }
        println!(
            "compute    {gflops:.1} GFLOP/s = {:.1}% of the measured FP32 FMA peak ({measured_peak:.0} GFLOP/s on {threads} core(s)); {:.1}% of the nominal {nominal_peak:.0} GFLOP/s = {threads} x {per_cycle} FLOP/cycle x {clock:.2} GHz",
            100.0 * gflops / measured_peak,
            100.0 * gflops / nominal_peak,
        );
    }
    Ok(())
}
