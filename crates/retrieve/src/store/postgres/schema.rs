//! The database layout of [`super::PgStore`]: a schema version table, a registry of collections
//! and one table per collection, created and migrated on first use.
//!
//! One table per collection (named by the registry's numeric id, `crossrank_docs_N`, so any
//! collection name fits PostgreSQL's 63-byte identifiers and needs no quoting): each collection
//! has its own embedding width (`vector(d)` needs a fixed `d` for an HNSW index), its own HNSW
//! graph and GIN index sized to it, and a search never reads another collection's rows. A
//! shared table with a collection column would need partial indexes per collection and a
//! dimension-less column.

use super::{db_error, Meta};
use crate::{Result, RetrieveError};
use deadpool_postgres::GenericClient;

/// The schema this binary writes; a database at a later version is refused.
pub const SCHEMA_VERSION: i32 = 1;

/// Serialises migrations and collection creation across every process on the database.
const LOCK_KEY: i64 = 0x6372_6f73_7372_6e6b; // "crossrnk"

/// Statements that bring a database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the collection registry.
    "CREATE TABLE crossrank_collections (
        id serial PRIMARY KEY,
        name text UNIQUE NOT NULL,
        embedder text,
        dim integer,
        hnsw_m integer NOT NULL,
        hnsw_ef_construction integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )",
];

/// Creates or upgrades the schema (idempotent; concurrent callers wait on one lock).
pub async fn migrate(client: &mut deadpool_postgres::Client) -> Result<()> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(db_error)?;
    if let Err(e) = tx
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .await
    {
        return Err(match db_error(e) {
            RetrieveError::Store(m) => RetrieveError::Store(format!(
                "the pgvector extension is not available in this database \
                 (CREATE EXTENSION vector failed: {m}); install pgvector or have an \
                 administrator create the extension"
            )),
            other => other,
        });
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS crossrank_schema (version integer NOT NULL)")
        .await
        .map_err(db_error)?;
    let have: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM crossrank_schema",
            &[],
        )
        .await
        .map_err(db_error)?
        .get(0);
    if have > SCHEMA_VERSION {
        return Err(RetrieveError::Store(format!(
            "the database holds crossrank schema version {have}; this crossrank knows \
             versions up to {SCHEMA_VERSION}: upgrade crossrank"
        )));
    }
    for step in &MIGRATIONS[have as usize..] {
        tx.batch_execute(step).await.map_err(db_error)?;
    }
    if have < SCHEMA_VERSION {
        tx.execute("DELETE FROM crossrank_schema", &[])
            .await
            .map_err(db_error)?;
        tx.execute(
            "INSERT INTO crossrank_schema (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)
}

/// The registry row of collection `name`, if any.
pub async fn lookup(client: &impl GenericClient, name: &str) -> Result<Option<Meta>> {
    let row = client
        .query_opt(
            "SELECT id, embedder, dim FROM crossrank_collections WHERE name = $1",
            &[&name],
        )
        .await
        .map_err(db_error)?;
    Ok(row.map(|r| Meta {
        id: r.get(0),
        embedder: r.get(1),
        dim: r.get::<_, Option<i32>>(2).map(|d| d as usize),
    }))
}

/// What a new collection is made with.
pub struct NewCollection<'a> {
    /// Its name (already validated).
    pub name: &'a str,
    /// The bi-encoder directory, if dense.
    pub embedder: Option<&'a str>,
    /// The embedding width.
    pub dim: Option<usize>,
    /// HNSW `m`.
    pub m: u32,
    /// HNSW `ef_construction`.
    pub ef_construction: u32,
    /// Most collections the database may hold.
    pub max_collections: usize,
}

/// Creates collection `new.name` (registry row, table, indexes) in one transaction, unless
/// another process made it first; returns its registry row either way.
pub async fn create(
    client: &mut deadpool_postgres::Client,
    new: &NewCollection<'_>,
) -> Result<Meta> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(db_error)?;
    if let Some(m) = lookup(&tx, new.name).await? {
        return Ok(m);
    }
    let have: i64 = tx
        .query_one("SELECT count(*) FROM crossrank_collections", &[])
        .await
        .map_err(db_error)?
        .get(0);
    if have as usize >= new.max_collections {
        return Err(RetrieveError::Limit(format!(
            "the database holds {have} collections, the limit (max_collections) is {}; \
             collection {:?} was not created",
            new.max_collections, new.name
        )));
    }
    let dim = new.dim.map(|d| d as i32);
    let id: i32 = tx
        .query_one(
            "INSERT INTO crossrank_collections (name, embedder, dim, hnsw_m, hnsw_ef_construction)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &new.name,
                &new.embedder,
                &dim,
                &(new.m as i32),
                &(new.ef_construction as i32),
            ],
        )
        .await
        .map_err(db_error)?
        .get(0);
    let meta = Meta {
        id,
        embedder: new.embedder.map(str::to_string),
        dim: new.dim,
    };
    tx.batch_execute(&table_ddl(&meta, new.m, new.ef_construction))
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(meta)
}

/// Drops the HNSW index of `meta`'s table, or with `build` (m, ef_construction) makes it
/// (again): one transaction, 1 GiB of maintenance memory, no statement timeout.
pub async fn set_hnsw(
    client: &mut deadpool_postgres::Client,
    meta: &Meta,
    build: Option<(u32, u32)>,
) -> Result<()> {
    if meta.dim.is_none() {
        return Err(RetrieveError::Invalid(
            "the collection has no embeddings (no embedder): it has no HNSW index".into(),
        ));
    }
    let t = meta.table();
    let tx = client.transaction().await.map_err(db_error)?;
    let mut sql = format!("DROP INDEX IF EXISTS {t}_embedding;");
    if let Some((m, ef_construction)) = build {
        sql.push_str("SET LOCAL maintenance_work_mem = '1GB'; SET LOCAL statement_timeout = 0;");
        sql.push_str(&hnsw_ddl(&t, m, ef_construction));
    }
    tx.batch_execute(&sql).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

fn hnsw_ddl(t: &str, m: u32, ef_construction: u32) -> String {
    format!(
        "CREATE INDEX {t}_embedding ON {t} USING hnsw (embedding vector_cosine_ops)
         WITH (m = {m}, ef_construction = {ef_construction});"
    )
}

/// The table and indexes of one collection. Only integers are formatted into the SQL.
fn table_ddl(meta: &Meta, m: u32, ef_construction: u32) -> String {
    let t = meta.table();
    let embedding = match meta.dim {
        Some(d) => format!("embedding vector({d}),"),
        None => String::new(),
    };
    let mut sql = format!(
        "CREATE TABLE {t} (
            id text PRIMARY KEY,
            doc_id text NOT NULL,
            text text NOT NULL,
            title text,
            source text,
            updated_at text,
            metadata jsonb,
            {embedding}
            body tsvector GENERATED ALWAYS AS
                (to_tsvector('english'::regconfig, coalesce(title, '') || ' ' || text)) STORED
        );
        CREATE INDEX {t}_body ON {t} USING gin (body);
        CREATE INDEX {t}_source ON {t} (source);
        CREATE INDEX {t}_doc_id ON {t} (doc_id);
        CREATE INDEX {t}_metadata ON {t} USING gin (metadata jsonb_path_ops);"
    );
    if meta.dim.is_some() {
        sql.push_str(&hnsw_ddl(&t, m, ef_construction));
    }
    sql
}
