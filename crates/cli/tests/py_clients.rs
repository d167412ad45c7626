//! The official Python SDKs against a real server: cohere (`Client` -> /v1, `ClientV2` -> /v2),
//! voyageai (base_url .../v1) and langchain-cohere's `CohereRerank`. Their results must equal
//! `crossrank score` on the same pairs: the SDKs accept even `{}`, so only values prove
//! compatibility. The test setup installs the SDKs with pip into a venv under the target dir.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "e2e: the official SDKs from PyPI"]
fn official_clients_get_reference_scores() {
    let py = venv(
        "py-clients-venv",
        &["cohere>=5.13", "voyageai>=0.3", "langchain-cohere>=0.4"],
    );
    let srv = serve(&["--api-key", "test-key"]);
    let (q, docs) = w50();
    let docs: Vec<String> = docs.into_iter().take(20).collect();
    let want = score_with_cli(&q, &docs, &[]);
    let dir = temp_dir("pyclients");
    let req = dir.join("request.json");
    std::fs::write(
        &req,
        serde_json::json!({"query": q, "documents": docs}).to_string(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/clients.py");
    let out = Command::new(&py)
        .arg(&script)
        .args([
            &srv.url,
            "minilm-l6-rerank",
            "test-key",
            req.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "clients.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
    for client in [
        "cohere.Client",
        "cohere.ClientV2",
        "voyageai.Client",
        "langchain_cohere.CohereRerank",
    ] {
        let res = got[client]
            .as_array()
            .unwrap_or_else(|| panic!("{client} missing: {got}"));
        assert_eq!(res.len(), want.len(), "{client}");
        for (k, r) in res.iter().enumerate() {
            let (i, s) = (r[0].as_u64().unwrap() as usize, r[1].as_f64().unwrap());
            assert_eq!(i, order[k], "{client}: rank {k}");
            assert!(
                (s - want[i]).abs() <= 1e-6,
                "{client}: index {i} score {s} vs {}",
                want[i]
            );
        }
    }
}
