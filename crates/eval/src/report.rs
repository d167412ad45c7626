//! Reports: a Markdown summary and one self-contained HTML file with inline SVG charts
//! (quality vs candidates, latency vs candidates, per-query delta histogram) and the tables.

use crate::harness::EvalReport;
use std::fmt::Write;

const STAGES: [&str; 3] = ["first_stage", "reranked", "fused"];

fn metric_names(r: &EvalReport) -> Vec<String> {
    r.metrics.clone()
}

/// The stage table as Markdown.
pub fn stage_table(r: &EvalReport) -> String {
    let names = metric_names(r);
    let mut s = String::new();
    let _ = writeln!(s, "| stage | {} |", names.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(names.len()));
    for st in STAGES {
        if let Some(m) = r.stages.get(st) {
            let cells: Vec<String> = names.iter().map(|n| format!("{:.4}", m[n])).collect();
            let _ = writeln!(s, "| {st} | {} |", cells.join(" | "));
        }
    }
    s
}

/// The whole report as Markdown.
pub fn markdown(r: &EvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# crossrank eval: {}\n", r.dataset);
    let _ = writeln!(
        s,
        "Reranker `{}`, {} queries, top {} candidates reranked, binary relevance = grade >= {}.\n",
        r.reranker, r.queries, r.candidates, r.relevance_level
    );
    s.push_str(&stage_table(r));
    s.push('\n');
    for (stage, c) in &r.comparisons {
        let _ = writeln!(
            s,
            "- {stage} vs first_stage on {}: mean delta {:+.4}, wins / ties / losses {} / {} / {}, paired randomisation p = {:.4}",
            c.metric, c.mean_delta, c.wins, c.ties, c.losses, c.p_value
        );
    }
    let metric = r
        .comparisons
        .values()
        .next()
        .map(|c| c.metric.clone())
        .unwrap_or_else(|| "ndcg@10".into());
    let _ = writeln!(s, "\n## Candidate sweep\n\n| candidates | {metric} | p@5 | mrr@10 | recall@10 | rerank ms / query |\n|---|---|---|---|---|---|");
    for p in &r.sweep {
        let g = |k: &str| {
            p.metrics
                .get(k)
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.1} |",
            p.candidates,
            g(&metric),
            g("p@5"),
            g("mrr@10"),
            g("recall@10"),
            p.rerank_ms_per_query
        );
    }
    if let Some(t) = &r.tuned_fusion {
        let _ = writeln!(
            s,
            "\n## Fusion tuned on labels\n\nFitted on {} queries (every other one): rrf_k {}, reranker weight {:.2} ({} {:.4} there). On the {} held-out queries:\n\n| ranking | {} |\n|---|---|",
            t.tuned_on, t.setting.rrf_k, t.setting.reranker_weight, t.metric, t.tuned_metric, t.held_out, t.metric
        );
        for k in ["first_stage", "reranked", "default_fusion", "tuned_fusion"] {
            if let Some(v) = t.held_out_metrics.get(k) {
                let _ = writeln!(s, "| {k} | {v:.4} |");
            }
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A named, coloured series of (x, y) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart: series of (x, y) points on shared axes; points drawn as circles.
fn line_chart(id: &str, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h, l, r, t, b) = (560.0, 300.0, 60.0, 130.0, 30.0, 40.0);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.2.iter().copied()).collect();
    let (mut x0, mut x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    if x1 <= x0 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    let pad = ((y1 - y0) * 0.1).max(1e-3);
    y0 -= pad;
    y1 += pad;
    let sx = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let sy = |y: f64| h - b - (y - y0) / (y1 - y0) * (h - t - b);
    let mut s = format!("<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">");
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"18\" font-size=\"14\" text-anchor=\"middle\">{}</text>",
        (w - r + l) / 2.0,
        esc(title)
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>",
        h - b,
        w - r,
        h - b
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"#333\"/>",
        h - b
    );
    for i in 0..=4 {
        let y = y0 + (y1 - y0) * i as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{:.3}</text>",
            l - 4.0,
            sy(y) + 3.0,
            y
        );
    }
    let mut xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for x in xs {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{x}</text>",
            sx(x),
            h - b + 14.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
        (w - r + l) / 2.0,
        h - 6.0,
        esc(x_label)
    );
    let _ = write!(s, "<text x=\"14\" y=\"{}\" font-size=\"11\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{}</text>", h / 2.0, h / 2.0, esc(y_label));
    for (i, (name, color, p)) in series.iter().enumerate() {
        let path: Vec<String> = p
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(s, "<polyline class=\"series\" data-name=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>", esc(name), path.join(" "));
        for (x, y) in p {
            let _ = write!(s, "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{color}\"><title>{}: {x} -> {y:.4}</title></circle>", sx(*x), sy(*y), esc(name));
        }
        let ly = t + 14.0 * i as f64 + 10.0;
        let _ = write!(s, "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>", w - r + 10.0, ly - 9.0, w - r + 24.0, ly, esc(name));
    }
    s.push_str("</svg>");
    s
}

/// A histogram of per-query deltas.
fn histogram(id: &str, title: &str, deltas: &[f64]) -> String {
    let (w, h, l, b, t) = (560.0, 260.0, 50.0, 40.0, 30.0);
    let bins = 20usize;
    let m = deltas.iter().fold(0.0f64, |a, d| a.max(d.abs())).max(1e-9);
    let mut counts = vec![0usize; bins];
    for d in deltas {
        let i = (((d + m) / (2.0 * m)) * bins as f64).floor() as isize;
        counts[i.clamp(0, bins as isize - 1) as usize] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1) as f64;
    let bw = (w - l - 20.0) / bins as f64;
    let mut s = format!("<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">");
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"18\" font-size=\"14\" text-anchor=\"middle\">{}</text>",
        w / 2.0,
        esc(title)
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>",
        h - b,
        w - 20.0,
        h - b
    );
    for (i, c) in counts.iter().enumerate() {
        let bh = *c as f64 / top.max(1.0) * (h - t - b);
        let lo = -m + 2.0 * m * i as f64 / bins as f64;
        let color = if lo + m / bins as f64 >= 0.0 {
            "#2a7"
        } else {
            "#c44"
        };
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>[{lo:.3}, {:.3}): {c}</title></rect>",
            l + bw * i as f64,
            h - b - bh,
            bw - 1.0,
            lo + 2.0 * m / bins as f64
        );
    }
    let _ = write!(
        s,
        "<text x=\"{l}\" y=\"{}\" font-size=\"10\">{:.3}</text>",
        h - b + 14.0,
        -m
    );
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">0</text>",
        l + (w - l - 20.0) / 2.0,
        h - b + 14.0
    );
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{:+.3}</text>",
        w - 20.0,
        h - b + 14.0,
        m
    );
    let _ = write!(s, "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">per-query delta (reranked - first stage), {} queries</text>", w / 2.0, h - 8.0, deltas.len());
    s.push_str("</svg>");
    s
}

fn md_table_to_html(md: &str) -> String {
    let mut s = String::from("<table>");
    for (i, line) in md.lines().filter(|l| l.starts_with('|')).enumerate() {
        if i == 1 {
            continue;
        }
        let tag = if i == 0 { "th" } else { "td" };
        s.push_str("<tr>");
        for cell in line.trim_matches('|').split('|') {
            let _ = write!(s, "<{tag}>{}</{tag}>", esc(cell.trim()));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// The self-contained HTML report.
pub fn html(r: &EvalReport) -> String {
    let metric = r
        .comparisons
        .values()
        .next()
        .map(|c| c.metric.clone())
        .unwrap_or_else(|| "ndcg@10".into());
    let first = r
        .stages
        .get("first_stage")
        .and_then(|m| m.get(&metric))
        .copied()
        .unwrap_or(0.0);
    let xs: Vec<f64> = r.sweep.iter().map(|p| p.candidates as f64).collect();
    let quality = line_chart(
        "quality",
        &format!("{metric} vs candidates reranked"),
        "candidates",
        &metric,
        &[
            (
                "reranked",
                "#2a6fdb",
                r.sweep
                    .iter()
                    .map(|p| (p.candidates as f64, p.metrics[&metric]))
                    .collect(),
            ),
            (
                "first stage",
                "#999",
                xs.iter().map(|&x| (x, first)).collect(),
            ),
            (
                "recall@10",
                "#d98a2a",
                r.sweep
                    .iter()
                    .filter_map(|p| {
                        p.metrics
                            .get("recall@10")
                            .map(|v| (p.candidates as f64, *v))
                    })
                    .collect(),
            ),
        ],
    );
    let latency = line_chart(
        "latency",
        "rerank latency vs candidates",
        "candidates",
        "ms per query",
        &[(
            "median ms",
            "#7a3fd0",
            r.sweep
                .iter()
                .map(|p| (p.candidates as f64, p.rerank_ms_per_query))
                .collect(),
        )],
    );
    let deltas: Vec<f64> = r
        .per_query
        .values()
        .map(|m| {
            m.get("reranked").copied().unwrap_or(0.0) - m.get("first_stage").copied().unwrap_or(0.0)
        })
        .collect();
    let hist = histogram(
        "deltas",
        &format!("{metric}: reranked minus first stage"),
        &deltas,
    );
    let md = markdown(r);
    let comparisons: String = md
        .lines()
        .filter(|l| l.starts_with("- "))
        .map(|l| format!("<li>{}</li>", esc(&l[2..])))
        .collect();
    let sweep_md: String = md
        .lines()
        .skip_while(|l| !l.starts_with("## Candidate sweep"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>crossrank eval: {ds}</title><style>body{{font-family:sans-serif;margin:24px;max-width:1200px}}table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}.charts{{display:flex;flex-wrap:wrap;gap:16px}}</style></head><body><h1>crossrank eval: {ds}</h1><p>Reranker <code>{rr}</code>, {nq} queries, top {nc} candidates reranked, binary relevance = grade &gt;= {lvl}.</p><h2>Stages</h2>{stages}<ul>{comparisons}</ul><div class=\"charts\">{quality}{latency}{hist}</div><h2>Candidate sweep</h2>{sweep}</body></html>\n",
        ds = esc(&r.dataset),
        rr = esc(&r.reranker),
        nq = r.queries,
        nc = r.candidates,
        lvl = r.relevance_level,
        stages = md_table_to_html(&stage_table(r)),
        sweep = md_table_to_html(&sweep_md),
    )
}

/// A self-contained HTML page with the reliability diagram of a calibration on held-out pairs:
/// accuracy against mean confidence per bin (`(confidence, accuracy)` of non-empty bins),
/// before and after, beside the diagonal of perfect calibration, with each side's ECE.
pub fn reliability_html(
    title: &str,
    before: &[(f64, f64)],
    after: &[(f64, f64)],
    ece: (f64, f64),
) -> String {
    // Both axes 0..1 with ticks every 0.2: the diagonal, then each side's bins joined.
    let (size, m) = (360.0, 40.0);
    let at = |v: f64| m + v.clamp(0.0, 1.0) * (size - 2.0 * m);
    let up = |v: f64| size - at(v);
    let mut chart = format!(
        "<svg id=\"reliability\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{size}\" viewBox=\"0 0 {w} {size}\">",
        w = size + 140.0
    );
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        let _ = write!(
            chart,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{v:.1}</text><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{v:.1}</text>",
            at(v),
            size - m + 14.0,
            m - 4.0,
            up(v) + 3.0
        );
    }
    let _ = write!(
        chart,
        "<rect x=\"{m}\" y=\"{m}\" width=\"{s}\" height=\"{s}\" fill=\"none\" stroke=\"#333\"/><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#bbb\" stroke-dasharray=\"4\"/>",
        at(0.0),
        up(0.0),
        at(1.0),
        up(1.0),
        s = size - 2.0 * m
    );
    for (k, (name, color, pts)) in [
        ("uncalibrated", "#d9452a", before),
        ("calibrated", "#2a6fdb", after),
    ]
    .into_iter()
    .enumerate()
    {
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", at(x), up(y)))
            .collect();
        let _ = write!(
            chart,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
        for &(x, y) in pts {
            let _ = write!(
                chart,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                at(x),
                up(y)
            );
        }
        let _ = write!(
            chart,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{color}\">{name}</text>",
            size - m + 10.0,
            m + 14.0 + 16.0 * k as f64
        );
    }
    let _ = write!(
        chart,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">mean predicted probability (x) / share relevant (y)</text></svg>",
        size / 2.0,
        size - 6.0
    );
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>crossrank calibrate: {t}</title><style>body{{font-family:sans-serif;margin:24px;max-width:900px}}</style></head><body><h1>crossrank calibrate: {t}</h1><p>Expected calibration error on the held-out pairs: <b>{:.4}</b> uncalibrated, <b>{:.4}</b> calibrated (ten equal-width bins).</p>{chart}</body></html>\n",
        ece.0,
        ece.1,
        t = esc(title),
    )
}
