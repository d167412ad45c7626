//! [`PgStore`]: collections in PostgreSQL with pgvector. Every crossrank process pointed at the
//! same database serves the same collections; nothing is kept in the process but the registry
//! rows it has read and the bi-encoders it has loaded, so replicas are stateless.
//!
//! - Schema: created and migrated on first use, version recorded ([`schema`]).
//! - Writes: documents are chunked and embedded by crossrank's bi-encoder before any
//!   connection is taken, then written in one transaction per upload (upsert by id); the call
//!   returns only after the commit, so an acknowledged batch is whole and durable, and a batch
//!   cut short (a kill, an outage) leaves nothing.
//! - The first stage runs in SQL ([`search`]): HNSW cosine search with `hnsw.ef_search` set to
//!   at least the candidates asked for and iterative scans on, PostgreSQL full-text search
//!   (`websearch_to_tsquery`, `ts_rank`: PostgreSQL's ranking, not BM25) and the same
//!   hybrid fusion as the directory store; filters inside the SQL.
//! - A database that cannot be reached answers [`RetrieveError::Unavailable`] (503 in the
//!   server); the pool reconnects by itself once it is back. The connection string is shown
//!   without its password.
//!
//! The store's methods block (the trait's contract): each runs its queries on the store's own
//! small tokio runtime, so it can be called from any thread that is not itself driving async
//! tasks (the server calls it on blocking threads).

mod schema;
mod search;

use super::{CollectionStore, StoreStats, Upserted};
use crate::collection::{chunk_all, valid_name, validate, ChunkUnit, DocInput};
use crate::embedders::Embedders;
use crate::pipeline::{Candidates, SearchRequest};
use crate::{Result, RetrieveError};
use crossrank_engine::BiEncoder;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use pgvector::Vector;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

pub use schema::SCHEMA_VERSION;
pub use search::Scan;

/// The default floor of `hnsw.ef_search` (see [`PgConfig::ef_search`]).
pub const DEFAULT_EF_SEARCH: usize = 200;

/// How the store connects and what new collections are made with (`[store]` settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgConfig {
    /// HNSW graph degree of new collections (pgvector's `m`).
    pub hnsw_m: u32,
    /// HNSW build depth of new collections (pgvector's `ef_construction`).
    pub hnsw_ef_construction: u32,
    /// Candidates an HNSW search keeps at least (`hnsw.ef_search` is the larger of this and
    /// the candidates asked for, at most 1,000): recall against speed.
    pub ef_search: usize,
    /// Connections kept open.
    pub pool_size: usize,
    /// Milliseconds to connect, to wait for a pooled connection, and for one statement.
    pub timeout_ms: u64,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            hnsw_m: 16,
            hnsw_ef_construction: 64,
            ef_search: DEFAULT_EF_SEARCH,
            pool_size: 8,
            timeout_ms: 10_000,
        }
    }
}

/// A collection's registry row.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    id: i32,
    embedder: Option<String>,
    dim: Option<usize>,
}

impl Meta {
    /// The collection's table (an integer name: nothing from a request reaches the SQL text).
    fn table(&self) -> String {
        format!("crossrank_docs_{}", self.id)
    }
}

/// Collections in one PostgreSQL database.
pub struct PgStore {
    /// Drives the connections; shut down without blocking on drop.
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The connection string without its password, for messages.
    shown: String,
    config: PgConfig,
    embedder: Option<PathBuf>,
    max_collections: usize,
    embedders: Embedders,
    migrated: AtomicBool,
    known: Mutex<HashMap<String, Meta>>,
}

/// `postgres://USER@HOST:PORT/DB` of a connection string, never its password.
pub fn redacted(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// A database error as a retrieval error: a connection that failed, closed or timed out, or a
/// server shutting down, is [`RetrieveError::Unavailable`]; a refused statement is
/// [`RetrieveError::Store`].
pub(crate) fn db_error(e: tokio_postgres::Error) -> RetrieveError {
    use tokio_postgres::error::SqlState;
    let unavailable = match e.code() {
        None => true,
        Some(c) => {
            c.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(c)
        }
    };
    let message = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    };
    if unavailable || e.is_closed() {
        RetrieveError::Unavailable(message)
    } else {
        RetrieveError::Store(message)
    }
}

impl PgStore {
    /// A store on the database `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`, or the
    /// key=value form). New collections use `embedder` (none: lexical only); at most
    /// `max_collections` may exist in the database. Connects lazily: a database that is down
    /// now fails the first request, not this call.
    pub fn new(
        url: &str,
        embedder: Option<&Path>,
        max_collections: usize,
        config: PgConfig,
    ) -> Result<PgStore> {
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| {
            RetrieveError::Invalid(format!("--store: not a PostgreSQL connection string: {e}"))
        })?;
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        pg.connect_timeout(timeout)
            .application_name("crossrank")
            .options(format!("-c statement_timeout={}", config.timeout_ms));
        let shown = redacted(&pg);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("crossrank-postgres")
            .enable_all()
            .build()
            .map_err(|e| RetrieveError::Store(format!("starting the database runtime: {e}")))?;
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _in = rt.enter();
            Pool::builder(manager)
                .max_size(config.pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(timeout))
                .create_timeout(Some(timeout))
                .recycle_timeout(Some(timeout))
                .build()
                .map_err(|e| RetrieveError::Store(format!("the connection pool: {e}")))?
        };
        Ok(PgStore {
            rt: Some(rt),
            pool,
            shown,
            config,
            embedder: embedder.map(Path::to_path_buf),
            max_collections,
            embedders: Embedders::default(),
            migrated: AtomicBool::new(false),
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The database, without the password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match &self.rt {
            Some(rt) => rt.block_on(f),
            None => Err(RetrieveError::Unavailable("the store is shut down".into())),
        }
    }

    /// A pooled connection, the schema migrated on the first one.
    async fn client(&self) -> Result<deadpool_postgres::Client> {
        let mut client = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        if !self.migrated.load(Ordering::Acquire) {
            schema::migrate(&mut client)
                .await
                .map_err(|e| self.context(e))?;
            self.migrated.store(true, Ordering::Release);
        }
        Ok(client)
    }

    fn pool_error(&self, e: PoolError) -> RetrieveError {
        let e = match e {
            PoolError::Backend(e) => db_error(e),
            PoolError::Timeout(_) => RetrieveError::Unavailable(format!(
                "no connection within {} ms",
                self.config.timeout_ms
            )),
            other => RetrieveError::Unavailable(other.to_string()),
        };
        self.context(e)
    }

    /// Names the database in connection failures.
    fn context(&self, e: RetrieveError) -> RetrieveError {
        match e {
            RetrieveError::Unavailable(m) => RetrieveError::Unavailable(format!(
                "the collection store {} is unavailable: {m}",
                self.shown
            )),
            RetrieveError::Store(m) => {
                RetrieveError::Store(format!("the collection store {}: {m}", self.shown))
            }
            other => other,
        }
    }

    /// The registry row of `name`; `create` makes the collection if missing (within the
    /// limit), with the store's embedder.
    async fn meta(&self, name: &str, create: bool) -> Result<Meta> {
        valid_name(name)?;
        if let Some(m) = self.lock_known().get(name) {
            return Ok(m.clone());
        }
        let mut client = self.client().await?;
        let found = schema::lookup(&client, name)
            .await
            .map_err(|e| self.context(e))?;
        let meta = match found {
            Some(m) => m,
            None if !create => {
                return Err(RetrieveError::NotFound(format!("no collection {name:?}")))
            }
            None => {
                let (embedder, dim) = match &self.embedder {
                    Some(dir) => {
                        let e = self.embedders.get(dir)?;
                        (Some(dir.display().to_string()), Some(e.dim()))
                    }
                    None => (None, None),
                };
                self.create(&mut client, name, embedder.as_deref(), dim)
                    .await?
            }
        };
        self.lock_known().insert(name.to_string(), meta.clone());
        Ok(meta)
    }

    /// Creates collection `name` with the store's HNSW settings and collection limit.
    async fn create(
        &self,
        client: &mut deadpool_postgres::Client,
        name: &str,
        embedder: Option<&str>,
        dim: Option<usize>,
    ) -> Result<Meta> {
        let new = schema::NewCollection {
            name,
            embedder,
            dim,
            m: self.config.hnsw_m.clamp(2, 100),
            ef_construction: self.config.hnsw_ef_construction.clamp(4, 1000),
            max_collections: self.max_collections,
        };
        schema::create(client, &new)
            .await
            .map_err(|e| self.context(e))
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Meta>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bi_encoder(&self, meta: &Meta) -> Result<Option<Arc<BiEncoder>>> {
        meta.embedder
            .as_deref()
            .map(|e| self.embedders.get(Path::new(e)))
            .transpose()
    }

    async fn count(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        meta: &Meta,
    ) -> Result<u64> {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {}", meta.table()), &[])
            .await
            .map_err(|e| self.context(db_error(e)))?
            .get(0);
        Ok(n as u64)
    }

    async fn write(
        &self,
        meta: &Meta,
        docs: &[DocInput],
        vectors: Option<Vec<Vec<f32>>>,
    ) -> Result<u64> {
        let ctx = |e| self.context(db_error(e));
        // One row per id, the last upload of an id winning (as in the directory store).
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, d) in docs.iter().enumerate() {
            last.insert(&d.id, i);
        }
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_unstable();
        let vectors: Option<Vec<Vector>> =
            vectors.map(|v| v.into_iter().map(Vector::from).collect());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(ctx)?;
        let (cols, vals) = match vectors {
            Some(_) => (", embedding", ", $8"),
            None => ("", ""),
        };
        let stmt = tx
            .prepare(&format!(
                "INSERT INTO {t} (id, doc_id, text, title, source, updated_at, metadata{cols})
                 VALUES ($1, $2, $3, $4, $5, $6, $7{vals})
                 ON CONFLICT (id) DO UPDATE SET doc_id = EXCLUDED.doc_id, text = EXCLUDED.text,
                   title = EXCLUDED.title, source = EXCLUDED.source,
                   updated_at = EXCLUDED.updated_at, metadata = EXCLUDED.metadata{set}",
                t = meta.table(),
                set = if vectors.is_some() {
                    ", embedding = EXCLUDED.embedding"
                } else {
                    ""
                },
            ))
            .await
            .map_err(ctx)?;
        let doc_ids: Vec<&str> = docs
            .iter()
            .map(|d| d.doc_id.as_deref().unwrap_or(&d.id))
            .collect();
        for &i in &order {
            let d = &docs[i];
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![
                &d.id,
                &doc_ids[i],
                &d.text,
                &d.title,
                &d.source,
                &d.updated_at,
                &d.metadata,
            ];
            if let Some(v) = &vectors {
                params.push(&v[i]);
            }
            tx.execute(&stmt, &params).await.map_err(ctx)?;
        }
        let count = self.count(&tx, meta).await?;
        tx.commit().await.map_err(ctx)?;
        Ok(count)
    }
}

/// Loading and searching vectors computed elsewhere (`crossrank bench-retrieval --store`).
impl PgStore {
    /// Adds or replaces documents with their embeddings (all of one width), creating
    /// collection `name` without a bi-encoder if it is missing; one transaction.
    pub fn upsert_vectors(
        &self,
        name: &str,
        docs: &[DocInput],
        vectors: Vec<Vec<f32>>,
    ) -> Result<Upserted> {
        validate(docs)?;
        let dim = vectors.first().map(Vec::len);
        if vectors.len() != docs.len() || vectors.iter().any(|v| Some(v.len()) != dim) {
            return Err(RetrieveError::Invalid(
                "one embedding of one width per document".into(),
            ));
        }
        self.block_on(async {
            let meta = match self.meta(name, false).await {
                Err(RetrieveError::NotFound(_)) => {
                    let mut client = self.client().await?;
                    self.create(&mut client, name, None, dim).await?
                }
                other => other?,
            };
            if meta.dim != dim {
                return Err(RetrieveError::Invalid(format!(
                    "collection {name:?} holds {:?}-d vectors, not {dim:?}",
                    meta.dim
                )));
            }
            let count = self.write(&meta, docs, Some(vectors)).await?;
            Ok(Upserted {
                indexed: docs.len(),
                count,
            })
        })
    }

    /// Deletes collection `name` with its table (benchmarks clean up with it).
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        self.block_on(async {
            let meta = self.meta(name, false).await?;
            let mut client = self.client().await?;
            let ctx = |e| self.context(db_error(e));
            let tx = client.transaction().await.map_err(ctx)?;
            tx.execute(
                "DELETE FROM crossrank_collections WHERE id = $1",
                &[&meta.id],
            )
            .await
            .map_err(ctx)?;
            tx.batch_execute(&format!("DROP TABLE {}", meta.table()))
                .await
                .map_err(ctx)?;
            tx.commit().await.map_err(ctx)?;
            self.lock_known().remove(name);
            Ok(())
        })
    }

    /// How dense searches read the collections: the HNSW index with the configured floor.
    pub fn scan(&self) -> Scan {
        Scan::Hnsw {
            ef_search: self.config.ef_search,
        }
    }

    /// Drops collection `name`'s HNSW index (`on` false: bulk loads write faster without
    /// it; dense searches then scan) or builds it again (`on` true, with the store's `m` and
    /// `ef_construction`, in parallel where PostgreSQL allows, without a statement timeout).
    pub fn set_hnsw(&self, name: &str, on: bool) -> Result<()> {
        self.block_on(async {
            let meta = self.meta(name, false).await?;
            let mut client = self.client().await?;
            let (m, ef) = (
                self.config.hnsw_m.clamp(2, 100),
                self.config.hnsw_ef_construction.clamp(4, 1000),
            );
            schema::set_hnsw(&mut client, &meta, on.then_some((m, ef)))
                .await
                .map_err(|e| self.context(e))
        })
    }

    /// The `k` nearest documents to `q` with `filters` (ids and cosine similarities, best
    /// first), read as `scan` says.
    pub fn search_vector(
        &self,
        name: &str,
        q: &[f32],
        k: usize,
        filters: &crate::pipeline::Filters,
        scan: Scan,
    ) -> Result<Vec<(String, f32)>> {
        self.block_on(async {
            let meta = self.meta(name, false).await?;
            let mut client = self.client().await?;
            let tx = client
                .transaction()
                .await
                .map_err(|e| self.context(db_error(e)))?;
            let hits = search::dense(&tx, &meta, q, k, filters, scan)
                .await
                .map_err(|e| self.context(e))?;
            tx.commit().await.map_err(|e| self.context(db_error(e)))?;
            Ok(hits.into_iter().map(|(d, s)| (d.id, s)).collect())
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // A runtime dropped on an async thread would panic; this never blocks.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl CollectionStore for PgStore {
    fn upsert(
        &self,
        name: &str,
        docs: &[DocInput],
        chunk_at: Option<(usize, usize)>,
        max_documents: usize,
    ) -> Result<Upserted> {
        let meta = self.block_on(self.meta(name, true))?;
        let bi = self.bi_encoder(&meta)?;
        let chunked;
        let docs = match chunk_at {
            Some((tokens, overlap)) => {
                let unit = match &bi {
                    Some(e) => ChunkUnit::Tokens(e.tokenizer()),
                    None => ChunkUnit::Words,
                };
                chunked = chunk_all(docs, tokens, overlap, unit)?;
                &chunked[..]
            }
            None => docs,
        };
        if docs.len() > max_documents {
            return Err(RetrieveError::TooLarge(format!(
                "the upload makes {} chunks; the limit (max_upload_documents) is {max_documents}",
                docs.len()
            )));
        }
        validate(docs)?;
        // Embedded before a connection is taken: no transaction waits on the model.
        let vectors = match &bi {
            Some(e) => {
                let texts: Vec<String> = docs
                    .iter()
                    .map(|d| crate::collection::body(d.title.as_deref(), &d.text))
                    .collect();
                Some(e.embed(&texts)?)
            }
            None => None,
        };
        let count = self.block_on(self.write(&meta, docs, vectors))?;
        Ok(Upserted {
            indexed: docs.len(),
            count,
        })
    }

    fn delete(&self, name: &str, id: &str) -> Result<Option<u64>> {
        self.block_on(async {
            let meta = self.meta(name, false).await?;
            let client = self.client().await?;
            let n = client
                .execute(
                    &format!("DELETE FROM {} WHERE id = $1", meta.table()),
                    &[&id],
                )
                .await
                .map_err(|e| self.context(db_error(e)))?;
            if n == 0 {
                return Ok(None);
            }
            Ok(Some(self.count(&client, &meta).await?))
        })
    }

    fn first_stage(&self, name: &str, req: &SearchRequest) -> Result<Candidates> {
        let retriever = req.check()?;
        let t0 = Instant::now();
        let meta = self.block_on(self.meta(name, false))?;
        let needs_vector = !matches!(retriever, crate::collection::Retriever::Bm25);
        let q = match (needs_vector, self.bi_encoder(&meta)?) {
            (true, Some(e)) => e.embed(&[req.query.as_str()])?.pop(),
            _ => None,
        };
        let docs = self.block_on(async {
            let mut client = self.client().await?;
            let tx = client
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .map_err(|e| self.context(db_error(e)))?;
            let docs = search::first_stage(&tx, &meta, req, retriever, q.as_deref(), self.scan())
                .await
                .map_err(|e| self.context(e))?;
            tx.commit().await.map_err(|e| self.context(db_error(e)))?;
            Ok(docs)
        })?;
        Ok(Candidates::new(docs, t0.elapsed().as_secs_f64() * 1e3))
    }

    fn flush(&self, _wait: bool) {
        // Every write is committed before it is acknowledged: nothing is pending.
    }

    fn location(&self) -> String {
        self.shown.clone()
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            open: self.lock_known().len(),
            embedders_loaded: self.embedders.loaded(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_are_shown_without_their_password() {
        let c: tokio_postgres::Config = "postgres://app:hunter2@db.internal:6543/rag"
            .parse()
            .unwrap();
        assert_eq!(redacted(&c), "postgres://app@db.internal:6543/rag");
        let c: tokio_postgres::Config = "host=10.0.0.5 user=app password=hunter2 dbname=rag"
            .parse()
            .unwrap();
        assert_eq!(redacted(&c), "postgres://app@10.0.0.5:5432/rag");
        let e = PgStore::new(
            "postgres://127.0.0.1:99999/db",
            None,
            1,
            PgConfig::default(),
        )
        .err()
        .unwrap();
        assert!(
            matches!(&e, RetrieveError::Invalid(m) if m.contains("--store")),
            "{e}"
        );
    }

    #[test]
    fn an_unreachable_database_is_unavailable_at_once_and_named_without_the_password() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let store = PgStore::new(
            "postgres://app:hunter2@127.0.0.1:1/rag",
            None,
            1,
            PgConfig::default(),
        )
        .unwrap();
        let t = Instant::now();
        let req = SearchRequest {
            query: "q".into(),
            ..Default::default()
        };
        for e in [
            store.first_stage("c", &req).err().unwrap(),
            store
                .upsert("c", &[DocInput::new("a", "b")], None, 10)
                .unwrap_err(),
            store.delete("c", "a").unwrap_err(),
        ] {
            let m = e.to_string();
            assert!(matches!(e, RetrieveError::Unavailable(_)), "{m}");
            assert!(m.contains("postgres://app@127.0.0.1:1/rag"), "{m}");
            assert!(!m.contains("hunter2"), "{m}");
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // Bad requests are refused before the database is asked.
        let bad = store.first_stage("bad name", &req).err().unwrap();
        assert!(matches!(bad, RetrieveError::Invalid(_)), "{bad}");
        let empty = SearchRequest::default();
        let e = store.first_stage("c", &empty).err().unwrap();
        assert!(matches!(e, RetrieveError::Invalid(_)), "{e}");
    }
}
