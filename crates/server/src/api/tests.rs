//! Property tests for request parsing: no body and no field value makes the parsers panic,
//! and every error names the field and carries a 4xx status; the OpenAPI document lists the
//! routes the router serves.

use super::wire::parse;
use super::{collections, handler, json_body, tei, v1, v2, ROUTES};
use axum::body::Bytes;
use crossrank_retrieve::pipeline::SearchRequest;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn json_body_never_panics_and_errors_are_400(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        match json_body(Ok(Bytes::from(bytes.clone())), 1 << 20) {
            Ok(m) => {
                let v: Value = serde_json::from_slice(&bytes).expect("accepted bodies are JSON");
                prop_assert_eq!(v, Value::Object(m));
            }
            Err(e) => prop_assert_eq!(e.status().as_u16(), 400),
        }
    }

    #[test]
    fn any_value_in_any_field_parses_or_is_a_422_naming_that_field(v in any_json(), pick in 0usize..64) {
        let bases: [(&str, Value); 5] = [
            ("tei", json!({"query": "q", "texts": ["a"]})),
            ("v1", json!({"query": "q", "documents": ["a"]})),
            ("v2", json!({"query": "q", "documents": ["a"]})),
            ("search", json!({"query": "q"})),
            ("upload", json!({"documents": [{"id": "a", "text": "t"}]})),
        ];
        let fields: [&[&str]; 5] = [
            &["query", "texts", "raw_scores", "return_text", "truncate", "truncation_direction", "model", "instruction"],
            &["query", "documents", "model", "top_n", "top_k", "return_documents", "rank_fields", "max_chunks_per_doc", "max_tokens_per_doc", "truncation", "instruction"],
            &["query", "documents", "model", "top_n", "max_tokens_per_doc", "instruction"],
            &["query", "top_k", "candidates", "retriever", "filters", "fusion", "min_score"],
            &["documents", "chunk_tokens", "overlap"],
        ];
        let (kind, base) = &bases[pick % 5];
        let names = fields[pick % 5];
        let field = names[(pick / 5) % names.len()];
        let mut m: Map<String, Value> = base.as_object().unwrap().clone();
        m.insert(field.into(), v.clone());
        let result = match *kind {
            "tei" => parse::<tei::TeiRequest>(m).map(|_| ()),
            "v1" => parse::<v1::V1Request>(m).map(|_| ()),
            "v2" => parse::<v2::V2Request>(m).map(|_| ()),
            "search" => parse::<SearchRequest>(m).map(|_| ()),
            _ => parse::<collections::UploadRequest>(m).map(|_| ()),
        };
        // Null is absent: an optional field set to null parses.
        if v.is_null() && !["query", "texts", "documents"].contains(&field) {
            prop_assert!(result.is_ok(), "{} {}: null refused", kind, field);
        }
        if let Err(e) = result {
            prop_assert_eq!(e.status().as_u16(), 422);
            prop_assert!(e.message.contains(field), "{} {}: {}", kind, field, e.message);
        }
    }
}

#[test]
fn a_body_that_is_not_an_object_is_refused() {
    for body in ["[]", "1", "\"x\"", "null", "{", "\u{feff}{}"] {
        let e = json_body(Ok(Bytes::from(body)), 100).unwrap_err();
        assert_eq!(e.status().as_u16(), 400, "{body}");
    }
    assert!(json_body(Ok(Bytes::from("{}")), 100).unwrap().is_empty());
}

#[test]
fn openapi_documents_exactly_the_routes_the_router_serves() {
    let spec = super::openapi::document();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    assert!(spec["components"]["schemas"]["V1Request"].is_object());
    let paths = spec["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| {
            let _ = handler(m, p); // every row has a handler
            (m.to_string(), p.to_string())
        })
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
}
