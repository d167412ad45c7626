//! Property tests for request parsing: no body and no field value makes the parsers panic,
//! and every error names the field and carries a 4xx status.

use super::{handler, json_body, Fields, ROUTES};
use axum::body::Bytes;
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
    fn every_accessor_accepts_only_its_type_and_names_the_field(v in any_json()) {
        let mut m = Map::new();
        m.insert("f".into(), v.clone());
        let f = Fields(&m);
        let named = |e: &crate::errors::ApiError| e.message.contains("\"f\"") && e.status().as_u16() == 422;
        match f.string("f") {
            Ok(s) => prop_assert_eq!(Value::String(s), v.clone()),
            Err(e) => prop_assert!(named(&e) && !v.is_string(), "{}", e.message),
        }
        match f.opt_bool("f") {
            Ok(Some(b)) => prop_assert_eq!(Value::Bool(b), v.clone()),
            Ok(None) => prop_assert!(v.is_null()),
            Err(e) => prop_assert!(named(&e) && !v.is_boolean()),
        }
        match f.opt_count("f") {
            Ok(Some(n)) => prop_assert!(n >= 1 && v.as_u64() == Some(n as u64)),
            Ok(None) => prop_assert!(v.is_null()),
            Err(e) => prop_assert!(named(&e) && !matches!(v.as_u64(), Some(n) if n >= 1)),
        }
        match f.opt_strings("f") {
            Ok(Some(list)) => prop_assert_eq!(json!(list), v.clone()),
            Ok(None) => prop_assert!(v.is_null()),
            Err(e) => prop_assert!(named(&e)),
        }
        match f.array("f") {
            Ok(a) => prop_assert_eq!(&Value::Array(a.clone()), &v),
            Err(e) => prop_assert!(named(&e) && !v.is_array()),
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
    let spec: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
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
