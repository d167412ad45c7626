//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and the
//! wire types; `GET /openapi.json` serves it and a test checks it lists exactly [`super::ROUTES`].

use super::{collections, meta, tei, v1, v2, wire};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crossrank",
        description = "Cross-encoder reranking: TEI, Cohere v1/v2, Jina and Voyage dialects on \
                       one port, and collections with a two-stage search."
    ),
    paths(
        tei::rerank,
        v1::rerank,
        v2::rerank,
        collections::upsert,
        collections::delete,
        collections::search,
        meta::health,
        meta::info,
        meta::metrics,
        meta::openapi
    ),
    components(schemas(wire::Count, wire::ErrorBody)),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct Doc;

/// `Authorization: Bearer <key>` when the server has API keys.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as JSON.
pub fn document() -> serde_json::Value {
    let mut doc = Doc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    serde_json::to_value(&doc).unwrap_or_default()
}
