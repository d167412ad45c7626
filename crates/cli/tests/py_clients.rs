//! The official Python SDKs against a real server: cohere (`Client` -> /v1, `ClientV2` -> /v2),
//! voyageai (base_url .../v1) and langchain-cohere's `CohereRerank`. Their results must equal
//! `crossrank score` on the same pairs: the SDKs accept even `{}`, so only values prove
//! compatibility. The test setup installs the SDKs with pip into a venv under the target dir.

mod common;

use common::*;

#[test]
#[ignore = "e2e: the official SDKs from PyPI"]
fn official_clients_get_reference_scores() {
    let py = venv(
        "py-clients-venv",
        &["cohere>=5.13", "voyageai>=0.3", "langchain-cohere>=0.4"],
    );
    let (got, want) = script_against_server(&py, "clients.py", 20);
    assert_ranked_like(
        &got,
        &[
            "cohere.Client",
            "cohere.ClientV2",
            "voyageai.Client",
            "langchain_cohere.CohereRerank",
        ],
        &want,
    );
}
