//! `--store`: where `index`, `search` and `eval` keep collections: a directory (the default) or
//! a PostgreSQL database with pgvector.

use anyhow::{Context, Result};
use crossrank_retrieve::store::{CollectionStore, DirStore, PgConfig, PgStore};
use std::path::Path;

/// The store flag shared by the collection commands.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Keep collections in PostgreSQL + pgvector: postgres://USER[:PASSWORD]@HOST:PORT/DB (or
    /// set CROSSRANK_STORE). --collection then names a collection in that database.
    #[arg(long, env = "CROSSRANK_STORE", hide_env_values = true)]
    pub store: Option<String>,
}

impl StoreArgs {
    /// The store holding `collection` (a directory, or with `--store` a name) and the name to
    /// call it by. `embedder` is for a new collection; `load_embedder`: a directory collection
    /// loads its bi-encoder (dense search, writes).
    pub fn open(
        &self,
        collection: &Path,
        embedder: Option<&Path>,
        load_embedder: bool,
    ) -> Result<(Box<dyn CollectionStore>, String)> {
        match &self.store {
            Some(url) => {
                let name = collection
                    .to_str()
                    .context("--collection: a collection name is UTF-8")?
                    .to_string();
                let store = PgStore::new(url, embedder, usize::MAX, PgConfig::default())?;
                Ok((Box::new(store), name))
            }
            None => {
                let (store, name) = DirStore::single(collection, embedder, load_embedder);
                Ok((Box::new(store), name))
            }
        }
    }
}
