//! The first stage in SQL: dense (pgvector HNSW, cosine), lexical (PostgreSQL full-text search,
//! not BM25)
//! and hybrid (both, fused in Rust exactly as the directory store fuses them), with the
//! request's filters inside the query so that a filtered search still returns as many
//! candidates as asked.

use super::{db_error, Meta};
use crate::collection::{Retriever, StoredDoc};
use crate::hybrid::fuse;
use crate::pipeline::{Filters, SearchRequest};
use crate::Result;
use deadpool_postgres::GenericClient;
use pgvector::Vector;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// pgvector's largest `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1000;

const COLUMNS: &str = "id, doc_id, text, title, source, updated_at, metadata";

/// The lexical query: `websearch_to_tsquery` (quoted phrases, `-word`, `or`), with its
/// implicit AND between words turned into OR (`&` not followed by a negation), so that a
/// question matches documents holding some of its words, as a BM25 first stage does. A
/// query of stop words only matches nothing.
const TSQUERY: &str =
    "regexp_replace(websearch_to_tsquery('english', $1)::text, ' & (?!!)', ' | ', 'g')::tsquery";

type Param = Box<dyn ToSql + Sync + Send>;

/// `AND ...` for the filters, their values appended to `params` (numbered after them).
fn filter_sql(f: &Filters, params: &mut Vec<Param>) -> String {
    let mut sql = String::new();
    if let Some(s) = &f.source {
        params.push(Box::new(s.clone()));
        sql.push_str(&format!(" AND source = ${}", params.len()));
    }
    if let Some(d) = &f.doc_id {
        params.push(Box::new(d.clone()));
        sql.push_str(&format!(" AND doc_id = ${}", params.len()));
    }
    if !f.metadata.is_empty() {
        params.push(Box::new(serde_json::Value::Object(f.metadata.clone())));
        sql.push_str(&format!(" AND metadata @> ${}", params.len()));
    }
    sql
}

fn stored(r: &Row) -> StoredDoc {
    StoredDoc {
        id: r.get(0),
        doc_id: r.get(1),
        text: r.get(2),
        title: r.get(3),
        source: r.get(4),
        updated_at: r.get(5),
        metadata: r.get(6),
    }
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// How a dense search reads the collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The HNSW index, keeping `max(k, ef_search)` candidates (at most pgvector's 1,000).
    Hnsw {
        /// The floor of `hnsw.ef_search` (the store's `ef_search`).
        ef_search: usize,
    },
    /// A full scan: exact, to measure the index's recall against.
    Exact,
}

/// The `k` nearest documents to `q` by cosine (score = cosine similarity), best first.
pub async fn dense(
    tx: &impl GenericClient,
    meta: &Meta,
    q: &[f32],
    k: usize,
    filters: &Filters,
    scan: Scan,
) -> Result<Vec<(StoredDoc, f32)>> {
    // The HNSW scan keeps ef_search candidates; at least k, and with iterative scans a
    // filtered search keeps scanning until k rows pass the filter (relaxed order: re-sorted
    // below).
    let set = match scan {
        Scan::Exact => {
            "SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off".to_string()
        }
        Scan::Hnsw { ef_search } => {
            let ef = k.max(ef_search).clamp(1, MAX_EF_SEARCH);
            format!(
                "SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = relaxed_order"
            )
        }
    };
    tx.batch_execute(&set).await.map_err(db_error)?;
    let mut params: Vec<Param> = vec![Box::new(Vector::from(q.to_vec())), Box::new(k as i64)];
    let filters = filter_sql(filters, &mut params);
    let t = meta.table();
    let sql = format!(
        "WITH hits AS MATERIALIZED (
            SELECT {COLUMNS}, embedding <=> $1 AS distance FROM {t}
            WHERE embedding IS NOT NULL{filters}
            ORDER BY embedding <=> $1 LIMIT $2)
         SELECT {COLUMNS}, (1 - distance)::real FROM hits ORDER BY distance, id"
    );
    let rows = tx.query(&sql, &refs(&params)).await.map_err(db_error)?;
    Ok(rows.iter().map(|r| (stored(r), r.get(7))).collect())
}

/// The `k` best documents for `query` by `ts_rank` with length normalisation 1 (divided by
/// 1 + log of the document's length), best first. Measured on the SciFact subset of the tests
/// (50 claims, 1,051 abstracts, OR queries): nDCG@10 0.786 against 0.662 for `ts_rank_cd`
/// (cover density, which rewards a document holding all the words close together: rare for a
/// question's OR query) and 0.870 for tantivy's BM25, which PostgreSQL lacks (no term IDF).
async fn lexical(
    tx: &impl GenericClient,
    meta: &Meta,
    query: &str,
    k: usize,
    filters: &Filters,
) -> Result<Vec<(StoredDoc, f32)>> {
    let mut params: Vec<Param> = vec![Box::new(query.to_string()), Box::new(k as i64)];
    let filters = filter_sql(filters, &mut params);
    let t = meta.table();
    let sql = format!(
        "SELECT {COLUMNS}, ts_rank(body, q, 1)::real AS score
         FROM {t}, (SELECT {TSQUERY} AS q) AS query
         WHERE body @@ q{filters}
         ORDER BY score DESC, id LIMIT $2"
    );
    let rows = tx.query(&sql, &refs(&params)).await.map_err(db_error)?;
    Ok(rows.iter().map(|r| (stored(r), r.get(7))).collect())
}

/// The first stage: the request's `candidates` best stored documents, its filters applied.
/// `q` is the query's embedding (dense and hybrid only).
pub async fn first_stage(
    tx: &impl GenericClient,
    meta: &Meta,
    req: &SearchRequest,
    retriever: Retriever,
    q: Option<&[f32]>,
    scan: Scan,
) -> Result<Vec<StoredDoc>> {
    let (query, k, filters) = (req.query.as_str(), req.candidates, &req.filters);
    let vector = || {
        q.ok_or_else(|| {
            crate::RetrieveError::Invalid("dense retrieval needs the collection's embedder".into())
        })
    };
    let docs = |v: Vec<(StoredDoc, f32)>| v.into_iter().map(|(d, _)| d).collect();
    match retriever {
        Retriever::Bm25 => Ok(docs(lexical(tx, meta, query, k, filters).await?)),
        Retriever::Dense => Ok(docs(dense(tx, meta, vector()?, k, filters, scan).await?)),
        Retriever::Hybrid(mode) => {
            let depth = k.max(100);
            let l = lexical(tx, meta, query, depth, filters).await?;
            let d = dense(tx, meta, vector()?, depth, filters, scan).await?;
            let ids = |v: &[(StoredDoc, f32)]| -> Vec<(String, f32)> {
                v.iter().map(|(d, s)| (d.id.clone(), *s)).collect()
            };
            let fused = fuse(&ids(&l), &ids(&d), mode, k);
            let mut by_id: HashMap<String, StoredDoc> = l
                .into_iter()
                .chain(d)
                .map(|(d, _)| (d.id.clone(), d))
                .collect();
            Ok(fused
                .into_iter()
                .filter_map(|(id, _)| by_id.remove(&id))
                .collect())
        }
    }
}
