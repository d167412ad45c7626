//! Dense retrieval over normalised embeddings (cosine = inner product).
//!
//! Below [`AnnConfig::min_vectors`] live vectors the index searches exactly (a scan of every
//! vector); from there on it uses [`AnnConfig::kind`]: by default an HNSW graph from `usearch`
//! (built on all cores, fixed parameters, vectors kept in f32 inside the graph), or an int8
//! scan of every vector with exact f32 rescoring ([`crate::scan`]). Upserts and deletes apply
//! in place in every mode. [`DenseIndex::save`] / [`DenseIndex::load`] persist the index
//! (ids, vectors or graph) so that a large collection does not rebuild its graph on open.

use crate::scan::{top, Int8Scan};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// The index used from [`AnnConfig::min_vectors`] vectors on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AnnKind {
    /// HNSW graph (usearch): sub-millisecond on embeddings with neighbourhood structure.
    #[default]
    Hnsw,
    /// Int8 scan of every vector, best `rescore` candidates rescored in f32: time linear in
    /// the collection, near-exact on any data.
    Int8Scan,
}

/// When and how the approximate index is built (a collection's `collection.json` may set it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnnConfig {
    /// Live vectors from which searches use the approximate index; below, search is exact.
    pub min_vectors: usize,
    /// Which index.
    pub kind: AnnKind,
    /// Int8 scan: candidates rescored exactly, per result wanted.
    pub rescore: usize,
    /// HNSW edges per node (M).
    pub connectivity: usize,
    /// Candidate list size while inserting (ef_construction).
    pub expansion_add: usize,
    /// Candidate list size while searching (ef_search; at least k is used).
    pub expansion_search: usize,
}

impl Default for AnnConfig {
    fn default() -> Self {
        AnnConfig {
            min_vectors: 20_000,
            kind: AnnKind::Hnsw,
            rescore: 4,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 128,
        }
    }
}

/// Errors of the dense index.
#[derive(Debug, thiserror::Error)]
pub enum DenseError {
    /// A vector of the wrong width.
    #[error("embedding of {id:?} has {got} values, the index holds {want}-d vectors")]
    Width {
        /// The document.
        id: String,
        /// Its width.
        got: usize,
        /// The index's width.
        want: usize,
    },
    /// The HNSW library failed.
    #[error("HNSW index: {0}")]
    Ann(String),
    /// A file of a saved index could not be read or written, or is damaged.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

type Result<T> = std::result::Result<T, DenseError>;

fn ann_err(e: impl std::fmt::Display) -> DenseError {
    DenseError::Ann(e.to_string())
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> DenseError {
    DenseError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Search contexts reserved in the graph: concurrent searches beyond this many would fail.
const ANN_THREADS: usize = 256;

/// How searches run: the index's state, as [`DenseIndex::mode`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenseMode {
    /// A scan of every f32 vector.
    Exact,
    /// An int8 scan of every vector, the best rescored in f32.
    Int8Scan,
    /// The HNSW graph.
    Hnsw,
}

impl DenseMode {
    /// The name in JSON and reports.
    pub fn name(self) -> &'static str {
        match self {
            DenseMode::Exact => "exact",
            DenseMode::Int8Scan => "int8-scan",
            DenseMode::Hnsw => "hnsw",
        }
    }
}

/// Where the vectors live; exactly one state at a time. Exact goes to Scan or Hnsw when the
/// live count reaches the threshold; nothing goes back.
enum State {
    /// Row-major f32 vectors, searched exactly.
    Exact { data: Vec<f32> },
    /// Row-major f32 vectors and their int8 copy: scanned, then rescored in f32.
    Scan { data: Vec<f32>, scan: Int8Scan },
    /// The graph holds the vectors.
    Hnsw(Index),
}

/// Embeddings of a collection: exact below the threshold, HNSW (or an int8 scan) above.
pub struct DenseIndex {
    dim: usize,
    cfg: AnnConfig,
    /// Row -> id (None: deleted). Rows are the graph's keys.
    ids: Vec<Option<String>>,
    rows: HashMap<String, usize>,
    state: State,
}

#[derive(Serialize, Deserialize)]
struct SavedMeta {
    format: u32,
    dim: usize,
    rows: usize,
    ann: bool,
    /// Caller's version stamp (a collection stores its index opstamp).
    stamp: u64,
}

impl DenseIndex {
    /// An empty index of `dim`-wide vectors.
    pub fn new(dim: usize, cfg: AnnConfig) -> Self {
        DenseIndex {
            dim,
            cfg,
            ids: Vec::new(),
            rows: HashMap::new(),
            state: State::Exact { data: Vec::new() },
        }
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no vector is live.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether searches use the HNSW graph.
    pub fn has_ann(&self) -> bool {
        matches!(self.state, State::Hnsw(_))
    }

    /// How searches run now.
    pub fn mode(&self) -> DenseMode {
        match self.state {
            State::Exact { .. } => DenseMode::Exact,
            State::Scan { .. } => DenseMode::Int8Scan,
            State::Hnsw(_) => DenseMode::Hnsw,
        }
    }

    /// Adds or replaces vectors (by id). Many new vectors go into an existing graph on all
    /// cores; the graph is built when the live count reaches the threshold.
    pub fn upsert<'a>(
        &mut self,
        items: impl IntoIterator<Item = (&'a str, &'a [f32])>,
    ) -> Result<()> {
        let mut added: Vec<(usize, &[f32])> = Vec::new();
        for (id, v) in items {
            if v.len() != self.dim {
                return Err(DenseError::Width {
                    id: id.to_string(),
                    got: v.len(),
                    want: self.dim,
                });
            }
            self.remove(id)?;
            let row = self.ids.len();
            self.ids.push(Some(id.to_string()));
            self.rows.insert(id.to_string(), row);
            match &mut self.state {
                State::Hnsw(_) => added.push((row, v)),
                State::Exact { data } | State::Scan { data, .. } => data.extend_from_slice(v),
            }
        }
        let grown = self.len() >= self.cfg.min_vectors;
        match &mut self.state {
            State::Hnsw(ann) => {
                let need = ann.size() + added.len();
                if need > ann.capacity() {
                    ann.reserve_capacity_and_threads(need.max(ann.capacity() * 3 / 2), ANN_THREADS)
                        .map_err(ann_err)?;
                }
                add_parallel(ann, added.into_iter())?;
            }
            State::Scan { data, scan } => scan.catch_up(data, self.dim, false),
            State::Exact { .. } if grown => match self.cfg.kind {
                AnnKind::Hnsw => self.build_ann()?,
                AnnKind::Int8Scan => self.build_scan(),
            },
            State::Exact { .. } => {}
        }
        Ok(())
    }

    /// Deletes a vector; returns whether it existed.
    pub fn remove(&mut self, id: &str) -> Result<bool> {
        let Some(row) = self.rows.remove(id) else {
            return Ok(false);
        };
        self.ids[row] = None;
        if let State::Hnsw(ann) = &self.state {
            ann.remove(row as u64).map_err(ann_err)?;
        } else if self.ids.len() > 2 * self.rows.len() + 1024 {
            // Replaced and deleted rows stay until they outnumber the live ones.
            self.compact();
        }
        Ok(true)
    }

    /// Quantizes every vector for the int8 scan (whatever their count; not once the graph
    /// holds them).
    pub fn build_scan(&mut self) {
        let data = match std::mem::replace(&mut self.state, State::Exact { data: Vec::new() }) {
            State::Exact { data } | State::Scan { data, .. } => data,
            graph @ State::Hnsw(_) => {
                self.state = graph;
                return;
            }
        };
        let mut scan = Int8Scan::default();
        scan.catch_up(&data, self.dim, true);
        self.state = State::Scan { data, scan };
    }

    /// Drops the rows of replaced and deleted vectors (exact and scan states).
    fn compact(&mut self) {
        let (State::Exact { data: old } | State::Scan { data: old, .. }) = &self.state else {
            return;
        };
        let dim = self.dim;
        let mut data = Vec::with_capacity(self.rows.len() * dim);
        let mut ids = Vec::with_capacity(self.rows.len());
        for (row, id) in self.ids.iter().enumerate() {
            if let Some(id) = id {
                self.rows.insert(id.clone(), ids.len());
                ids.push(Some(id.clone()));
                data.extend_from_slice(&old[row * dim..][..dim]);
            }
        }
        let scanned = matches!(self.state, State::Scan { .. });
        self.ids = ids;
        self.state = State::Exact { data };
        if scanned {
            self.build_scan();
        }
    }

    /// Builds the HNSW graph now over the live vectors (whatever their count); on failure
    /// the index stays as it was.
    pub fn build_ann(&mut self) -> Result<()> {
        let data = match &self.state {
            State::Hnsw(_) => return Ok(()),
            State::Exact { data } | State::Scan { data, .. } => data,
        };
        let ann = new_graph(self.dim, &self.cfg)?;
        ann.reserve_capacity_and_threads(self.len().max(1024), ANN_THREADS)
            .map_err(ann_err)?;
        let dim = self.dim;
        add_parallel(
            &ann,
            self.ids
                .iter()
                .enumerate()
                .filter(|(_, id)| id.is_some())
                .map(|(row, _)| (row, &data[row * dim..][..dim])),
        )?;
        self.state = State::Hnsw(ann);
        Ok(())
    }

    /// The `k` best (id, inner product), best first: the graph when built, else exact.
    pub fn search(&self, q: &[f32], k: usize) -> Result<Vec<(String, f32)>> {
        match &self.state {
            State::Hnsw(ann) => {
                self.check_query(q)?;
                let m = ann.search(q, k).map_err(ann_err)?;
                Ok(self.graph_hits(&m))
            }
            State::Scan { data, scan } => self.scanned(data, scan, q, k),
            State::Exact { .. } => self.exact(q, k),
        }
    }

    fn scanned(
        &self,
        data: &[f32],
        scan: &Int8Scan,
        q: &[f32],
        k: usize,
    ) -> Result<Vec<(String, f32)>> {
        self.check_query(q)?;
        let live = |row: usize| self.ids[row].is_some();
        let depth = k.saturating_mul(self.cfg.rescore.max(1)).max(k);
        let mut rows: Vec<(usize, f32)> = scan
            .candidates(q, depth, live)
            .into_iter()
            .chain(
                (scan.covered()..self.ids.len())
                    .filter(|&r| live(r))
                    .map(|r| (r, 0.0)),
            )
            .map(|(row, _)| (row, dot(&data[row * self.dim..][..self.dim], q)))
            .collect();
        top(&mut rows, k);
        Ok(self.named(rows))
    }

    /// Exact top `k` by inner product (a full scan, also when the graph exists).
    pub fn exact(&self, q: &[f32], k: usize) -> Result<Vec<(String, f32)>> {
        self.check_query(q)?;
        let data = match &self.state {
            State::Hnsw(ann) => {
                let m = ann.exact_search(q, k).map_err(ann_err)?;
                return Ok(self.graph_hits(&m));
            }
            State::Exact { data } | State::Scan { data, .. } => data,
        };
        let mut scored: Vec<(usize, f32)> = data
            .chunks_exact(self.dim.max(1))
            .enumerate()
            .filter(|(row, _)| self.ids[*row].is_some())
            .map(|(row, v)| (row, dot(v, q)))
            .collect();
        top(&mut scored, k);
        Ok(self.named(scored))
    }

    fn check_query(&self, q: &[f32]) -> Result<()> {
        if q.len() != self.dim {
            return Err(DenseError::Width {
                id: "query".into(),
                got: q.len(),
                want: self.dim,
            });
        }
        Ok(())
    }

    /// (row, score) -> (id, score), dropping deleted rows.
    fn named(&self, rows: impl IntoIterator<Item = (usize, f32)>) -> Vec<(String, f32)> {
        rows.into_iter()
            .filter_map(|(row, s)| Some((self.ids.get(row)?.clone()?, s)))
            .collect()
    }

    /// The graph's (key, distance) matches as (id, inner product).
    fn graph_hits(&self, m: &usearch::ffi::Matches) -> Vec<(String, f32)> {
        self.named(
            m.keys
                .iter()
                .zip(&m.distances)
                .map(|(&key, &d)| (key as usize, 1.0 - d)),
        )
    }

    /// Writes the index into `dir` (created if needed) with a caller's version `stamp`.
    /// `meta.json` goes last, after the data files are synced, so a torn save reads as absent.
    pub fn save(&self, dir: &Path, stamp: u64) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        let meta_path = dir.join("meta.json");
        match std::fs::remove_file(&meta_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(file_err(&meta_path, e))
            }
            _ => {}
        }
        let ids_path = dir.join("ids.json");
        let ids = serde_json::to_vec(&self.ids).map_err(|e| file_err(&ids_path, e))?;
        write_synced(&ids_path, &[&ids])?;
        let vec_path = dir.join("vectors.f32");
        let graph_path = dir.join("graph.usearch");
        match &self.state {
            State::Hnsw(ann) => {
                let tmp = dir.join("graph.usearch.tmp");
                let tmp_s = tmp.to_str().ok_or_else(|| file_err(&tmp, "not UTF-8"))?;
                ann.save(tmp_s).map_err(|e| file_err(&tmp, e))?;
                File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| file_err(&tmp, e))?;
                std::fs::rename(&tmp, &graph_path).map_err(|e| file_err(&graph_path, e))?;
                let _ = std::fs::remove_file(&vec_path);
            }
            State::Exact { data } | State::Scan { data, .. } => {
                let bytes = crossrank_engine::vectors::f32s_to_le(data);
                write_synced(&vec_path, &[&bytes])?;
                let _ = std::fs::remove_file(&graph_path);
            }
        }
        let meta = SavedMeta {
            format: 1,
            dim: self.dim,
            rows: self.ids.len(),
            ann: self.has_ann(),
            stamp,
        };
        let m = serde_json::to_vec(&meta).map_err(|e| file_err(&meta_path, e))?;
        write_synced(&meta_path, &[&m])
    }

    /// Reads an index saved with `stamp`; `Ok(None)` when there is none, it has another
    /// stamp or width, or its files are incomplete (the caller rebuilds it).
    pub fn load(dir: &Path, dim: usize, cfg: AnnConfig, stamp: u64) -> Result<Option<Self>> {
        let meta_path = dir.join("meta.json");
        let meta: SavedMeta = match std::fs::read(&meta_path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(m) => m,
                Err(_) => return Ok(None),
            },
            Err(_) => return Ok(None),
        };
        if meta.format != 1 || meta.stamp != stamp || meta.dim != dim {
            return Ok(None);
        }
        let ids_path = dir.join("ids.json");
        let ids: Vec<Option<String>> = match std::fs::read(&ids_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(ids) => ids,
            None => return Ok(None),
        };
        if ids.len() != meta.rows {
            return Ok(None);
        }
        let rows = ids
            .iter()
            .enumerate()
            .filter_map(|(row, id)| Some((id.clone()?, row)))
            .collect();
        let mut index = DenseIndex {
            dim,
            cfg,
            ids,
            rows,
            state: State::Exact { data: Vec::new() },
        };
        if meta.ann {
            let path = dir.join("graph.usearch");
            let path_s = path.to_str().ok_or_else(|| file_err(&path, "not UTF-8"))?;
            let ann = new_graph(dim, &index.cfg)?;
            if ann.load(path_s).is_err() {
                return Ok(None);
            }
            ann.change_expansion_search(index.cfg.expansion_search);
            ann.reserve_capacity_and_threads(ann.capacity().max(ann.size()), ANN_THREADS)
                .map_err(ann_err)?;
            if ann.size() != index.len() {
                return Ok(None);
            }
            index.state = State::Hnsw(ann);
        } else {
            let path = dir.join("vectors.f32");
            let mut bytes = Vec::new();
            if File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .is_err()
                || bytes.len() != meta.rows * dim * 4
            {
                return Ok(None);
            }
            index.state = State::Exact {
                data: crossrank_engine::vectors::f32s_from_le(&bytes),
            };
            if index.cfg.kind == AnnKind::Int8Scan && index.len() >= index.cfg.min_vectors {
                index.build_scan();
            }
        }
        Ok(Some(index))
    }
}

/// An empty graph for inner-product search with `cfg`'s parameters.
fn new_graph(dim: usize, cfg: &AnnConfig) -> Result<Index> {
    Index::new(&IndexOptions {
        dimensions: dim,
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: cfg.connectivity,
        expansion_add: cfg.expansion_add,
        expansion_search: cfg.expansion_search,
        multi: false,
    })
    .map_err(ann_err)
}

/// Adds `(row, vector)` pairs to the graph on every core (sequentially for a few).
fn add_parallel<'a>(ann: &Index, items: impl Iterator<Item = (usize, &'a [f32])>) -> Result<()> {
    let items: Vec<(usize, &[f32])> = items.collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().div_ceil(256))
        .max(1);
    let failure = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (items, failure) = (&items, &failure);
            s.spawn(move || {
                for (row, v) in items.iter().skip(t).step_by(threads) {
                    if let Err(e) = ann.add(*row as u64, v) {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(ann_err(e));
                        return;
                    }
                }
            });
        }
    });
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_synced(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::new(File::create(&tmp)?);
        for p in parts {
            w.write_all(p)?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| file_err(path, e))
}

/// Inner product with 16 independent lanes (vectorises without fast-math).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests;
