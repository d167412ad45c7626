//! What the dialects share on the wire: typed request parsing whose errors name the field, the
//! positive count type, and the pieces of Cohere-style responses.

use crate::core::RerankOutcome;
use crate::errors::ApiError;
use crossrank_rank::cascade::CascadeReport;
use crossrank_rank::Ranked;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Parses a request object into its typed form. `null` counts as absent for every top-level
/// field; unknown fields are ignored (clients of other servers send their own). Errors are 422
/// and name the field: `missing field "query"`, `field "top_n" must be an integer >= 1 (got
/// integer 0)`, `field "texts[1]" must be a string (got map)`.
pub fn parse<T: DeserializeOwned>(mut obj: Map<String, Value>) -> Result<T, ApiError> {
    obj.retain(|_, v| !v.is_null());
    serde_path_to_error::deserialize(Value::Object(obj)).map_err(|e| {
        let path = e.path().to_string();
        ApiError::unprocessable(field_message(&path, &e.into_inner().to_string()))
    })
}

/// Rewrites serde's message about the value at `path` (`.` = the object itself) as one that
/// names the field the way a client reads it.
fn field_message(path: &str, serde: &str) -> String {
    let within = |field: &str| match path {
        "." => field.to_string(),
        p => format!("{p}.{field}"),
    };
    if let Some(rest) = serde.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return format!("missing field \"{}\"", within(field));
    }
    if let Some(rest) = serde.strip_prefix("invalid type: ") {
        if let Some((got, expected)) = rest.split_once(", expected ") {
            let expected = match expected {
                "a sequence" => "a list",
                "a map" => "an object",
                e => e,
            };
            return format!("field \"{path}\" must be {expected} (got {got})");
        }
    }
    if let Some(rest) = serde.strip_prefix("invalid value: ") {
        if let Some((got, expected)) = rest.split_once(", expected ") {
            return format!("field \"{path}\" must be {expected} (got {got})");
        }
    }
    if let Some(rest) = serde.strip_prefix("unknown variant ") {
        if let Some((got, expected)) = rest.split_once(", expected ") {
            return format!("field \"{path}\" must be {expected}, not {got}");
        }
    }
    format!("field \"{path}\": {serde}")
}

/// A positive integer (`top_n`, `max_chunks_per_doc`, ...); 0, negatives, fractions and
/// non-numbers are refused with the field's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Count(pub usize);

impl utoipa::PartialSchema for Count {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .description(Some("A positive integer"))
            .into()
    }
}

impl ToSchema for Count {}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl Visitor<'_> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer >= 1")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count, E> {
                match usize::try_from(n) {
                    Ok(n) if n >= 1 => Ok(Count(n)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(n), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(n), &self)),
                }
            }
        }
        d.deserialize_u64(CountVisitor)
    }
}

/// Optional count as a plain number.
pub fn count(c: Option<Count>) -> Option<usize> {
    c.map(|c| c.0)
}

/// Cohere's `meta.api_version`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiVersion {
    /// "1" or "2".
    pub version: &'static str,
}

/// Cohere's `meta.billed_units`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BilledUnits {
    /// One query against up to 100 documents is one unit.
    pub search_units: usize,
}

/// How a cascade answered (crossrank extension, cascade models only).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CascadeInfo {
    /// The stage whose ranking this is (1 = the first); below the last when `deadline_ms`
    /// stopped a later one.
    pub final_stage: usize,
    /// Whether the budget stopped a stage.
    pub cut: bool,
    /// Each stage, first first.
    pub stages: Vec<CascadeStage>,
}

/// One stage of a cascade in one request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CascadeStage {
    /// The served model.
    pub model: String,
    /// Documents it was given.
    pub documents: usize,
    /// Whether it finished.
    pub ran: bool,
    /// Milliseconds it took.
    pub ms: f64,
}

impl CascadeInfo {
    /// The wire form of a cascade's report.
    pub fn new(r: &CascadeReport) -> Self {
        CascadeInfo {
            final_stage: r.final_stage + 1,
            cut: r.final_stage + 1 < r.stages.len(),
            stages: r
                .stages
                .iter()
                .map(|s| CascadeStage {
                    model: s.model.clone(),
                    documents: s.documents,
                    ran: s.ran,
                    ms: s.ms,
                })
                .collect(),
        }
    }
}

/// What a result may carry beside its score, the same in every dialect (crossrank
/// extensions, absent for models they do not concern).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ResultExtras {
    /// Cascades: the stage that placed this result (1 = the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    /// Cascades: each stage's score of this document, first first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_scores: Option<Vec<f32>>,
    /// Calibrated models: the model's own probability (the score is calibrated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_score: Option<f32>,
}

impl ResultExtras {
    /// The extras of result `r` of `outcome`.
    pub fn of(outcome: &RerankOutcome, r: &Ranked) -> Self {
        let stages = outcome.cascade.as_ref().and_then(|c| c.scores.get(r.index));
        ResultExtras {
            stage: stages.map(Vec::len),
            stage_scores: stages.cloned(),
            raw_score: outcome.raw_score(r),
        }
    }
}

/// An error body. TEI clients get `{error, error_type}`, Cohere v1 / Jina / Voyage clients
/// `{message, detail}`, Cohere v2 `{message}`, the collection routes `{error}`; every error
/// response is JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong (TEI dialect and collection routes).
    pub error: Option<String>,
    /// TEI's error class: Validation, Unauthorized, Overloaded, Unhealthy, Backend.
    pub error_type: Option<String>,
    /// What went wrong (Cohere, Jina, Voyage dialects).
    pub message: Option<String>,
    /// The same text as `message` (Cohere v1, Jina, Voyage).
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Probe {
        query: String,
        texts: Vec<String>,
        top_n: Option<Count>,
        flag: Option<bool>,
    }

    fn err(v: Value) -> String {
        let Value::Object(m) = v else { unreachable!() };
        let e = parse::<Probe>(m).unwrap_err();
        assert_eq!(e.status().as_u16(), 422);
        e.message
    }

    #[test]
    fn errors_name_the_field_and_what_it_must_be() {
        assert_eq!(err(json!({"texts": []})), "missing field \"query\"");
        assert_eq!(
            err(json!({"query": null, "texts": []})),
            "missing field \"query\""
        );
        assert_eq!(
            err(json!({"query": 5, "texts": []})),
            "field \"query\" must be a string (got integer `5`)"
        );
        assert_eq!(
            err(json!({"query": "q", "texts": ["a", {"x": 1}]})),
            "field \"texts[1]\" must be a string (got map)"
        );
        assert_eq!(
            err(json!({"query": "q", "texts": "a"})),
            "field \"texts\" must be a list (got string \"a\")"
        );
        assert_eq!(
            err(json!({"query": "q", "texts": [], "top_n": 0})),
            "field \"top_n\" must be an integer >= 1 (got integer `0`)"
        );
        assert!(err(json!({"query": "q", "texts": [], "top_n": -3})).contains("\"top_n\""));
        assert!(err(json!({"query": "q", "texts": [], "top_n": 1.5})).contains("\"top_n\""));
        assert_eq!(
            err(json!({"query": "q", "texts": [], "flag": "yes"})),
            "field \"flag\" must be a boolean (got string \"yes\")"
        );
    }

    #[test]
    fn null_is_absent_and_unknown_fields_are_ignored() {
        let Value::Object(m) =
            json!({"query": "q", "texts": ["a"], "top_n": null, "extra": {"x": 1}})
        else {
            unreachable!()
        };
        let p: Probe = parse(m).unwrap();
        assert_eq!(p.top_n, None);
        assert_eq!(p.texts, vec!["a"]);
    }
}
