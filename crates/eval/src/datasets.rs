//! Rerank evaluation sets: queries, their first-stage candidates (with text) and judgments.

use crate::qrels::{self, Qrels};
use crate::{read_text, EvalError, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// One first-stage candidate.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Document id.
    pub docid: String,
    /// Text the reranker reads.
    pub text: String,
    /// First-stage score (higher is better).
    pub score: f64,
}

/// A query and its candidates in first-stage order.
#[derive(Debug, Clone)]
pub struct Query {
    /// Query id.
    pub qid: String,
    /// Query text.
    pub text: String,
    /// Candidates, best first.
    pub candidates: Vec<Candidate>,
}

/// A rerank evaluation set.
#[derive(Debug, Clone)]
pub struct RerankSet {
    /// A name for reports.
    pub name: String,
    /// Queries.
    pub queries: Vec<Query>,
    /// Judgments.
    pub qrels: Qrels,
}

fn parse_err(path: &Path, line: usize, message: impl Into<String>) -> EvalError {
    EvalError::Parse {
        path: path.display().to_string(),
        line,
        message: message.into(),
    }
}

fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The TREC DL JSON of castorini/rank_llm: `[{query, hits: [{content, qid, docid, rank, score}]}]`.
pub fn trec_dl_json(path: &Path, qrels_path: &Path) -> Result<RerankSet> {
    let text = read_text(path)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| parse_err(path, e.line(), e.to_string()))?;
    let items = json
        .as_array()
        .ok_or_else(|| parse_err(path, 0, "expected a JSON array of {query, hits}"))?;
    let mut queries = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let qtext = match &item["query"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => o
                .get("text")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            _ => return Err(parse_err(path, 0, format!("item {i}: no query text"))),
        };
        let hits = item["hits"]
            .as_array()
            .ok_or_else(|| parse_err(path, 0, format!("item {i}: no hits array")))?;
        let mut qid = String::new();
        let mut candidates = Vec::with_capacity(hits.len());
        for (j, h) in hits.iter().enumerate() {
            let bad = |f: &str| {
                parse_err(
                    path,
                    0,
                    format!("item {i} hit {j}: missing or invalid {f:?}"),
                )
            };
            qid = id_string(&h["qid"]).ok_or_else(|| bad("qid"))?;
            candidates.push(Candidate {
                docid: id_string(&h["docid"]).ok_or_else(|| bad("docid"))?,
                text: h["content"]
                    .as_str()
                    .ok_or_else(|| bad("content"))?
                    .to_string(),
                score: h["score"].as_f64().ok_or_else(|| bad("score"))?,
            });
        }
        queries.push(Query {
            qid,
            text: qtext,
            candidates,
        });
    }
    Ok(RerankSet {
        name: file_name(path),
        queries,
        qrels: qrels::parse_trec(qrels_path)?,
    })
}

/// A TREC run plus the texts: `docs` is JSONL (`id`/`docid`/`_id` and `text`/`contents`,
/// optional `title`) or TSV (`id<TAB>text`); `topics` is TSV (`qid<TAB>query`).
pub fn trec_run_with_docs(
    run_path: &Path,
    docs_path: &Path,
    topics_path: &Path,
    qrels_path: &Path,
) -> Result<RerankSet> {
    let run = crate::run::parse_trec(run_path)?;
    let docs = load_docs(docs_path)?;
    let topics = read_text(topics_path)?;
    let mut texts = HashMap::new();
    for (i, line) in topics.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (q, t) = line
            .split_once('\t')
            .ok_or_else(|| parse_err(topics_path, i + 1, "expected qid<TAB>query"))?;
        texts.insert(q.to_string(), t.to_string());
    }
    let mut queries = Vec::new();
    for (qid, mut hits) in run {
        crate::run::trec_order(&mut hits);
        let text = texts
            .get(&qid)
            .cloned()
            .ok_or_else(|| parse_err(topics_path, 0, format!("no topic for query {qid}")))?;
        let candidates = hits
            .into_iter()
            .map(|(docid, score)| {
                let text = docs.get(&docid).cloned().ok_or_else(|| {
                    parse_err(docs_path, 0, format!("no text for document {docid}"))
                })?;
                Ok(Candidate { docid, text, score })
            })
            .collect::<Result<Vec<_>>>()?;
        queries.push(Query {
            qid,
            text,
            candidates,
        });
    }
    Ok(RerankSet {
        name: file_name(run_path),
        queries,
        qrels: qrels::parse_trec(qrels_path)?,
    })
}

/// id -> text from JSONL or TSV.
pub fn load_docs(path: &Path) -> Result<HashMap<String, String>> {
    let text = read_text(path)?;
    let mut docs = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if line.trim_start().starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| parse_err(path, i + 1, e.to_string()))?;
            let id = ["id", "docid", "_id"]
                .iter()
                .find_map(|k| id_string(&v[*k]))
                .ok_or_else(|| parse_err(path, i + 1, "no id/docid/_id"))?;
            let body = ["text", "contents"]
                .iter()
                .find_map(|k| v[*k].as_str())
                .ok_or_else(|| parse_err(path, i + 1, "no text/contents"))?;
            let t = match v["title"].as_str() {
                Some(title) if !title.is_empty() => format!("{title} {body}"),
                _ => body.to_string(),
            };
            docs.insert(id, t);
        } else {
            let (id, t) = line
                .split_once('\t')
                .ok_or_else(|| parse_err(path, i + 1, "expected id<TAB>text"))?;
            docs.insert(id.to_string(), t.to_string());
        }
    }
    Ok(docs)
}

/// WikiQA (`WikiQA-{dev,test}.tsv[.gz]`): each question's candidate sentences in the given
/// order as the first stage, `Label` 1 as relevant. Questions without a correct sentence are
/// left out, as is usual for WikiQA ranking metrics.
pub fn wikiqa(path: &Path) -> Result<RerankSet> {
    wikiqa_with(path, false)
}

/// WikiQA, keeping the questions without a correct sentence when `keep_unanswerable` (what
/// abstention is calibrated on: a system should decline those).
pub fn wikiqa_with(path: &Path, keep_unanswerable: bool) -> Result<RerankSet> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .map_err(|source| EvalError::Io {
                path: path.display().to_string(),
                source,
            })?;
        s
    } else {
        String::from_utf8(bytes).map_err(|e| parse_err(path, 0, e.to_string()))?
    };
    let mut order: Vec<String> = Vec::new();
    let mut by_q: HashMap<String, Query> = HashMap::new();
    let mut qrels = Qrels::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 && line.starts_with("QuestionID") || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 7 {
            return Err(parse_err(
                path,
                i + 1,
                format!("expected 7 tab-separated fields, found {}", f.len()),
            ));
        }
        let label: i32 = f[6]
            .trim()
            .parse()
            .map_err(|_| parse_err(path, i + 1, "Label is not 0/1"))?;
        let q = by_q.entry(f[0].to_string()).or_insert_with(|| {
            order.push(f[0].to_string());
            Query {
                qid: f[0].to_string(),
                text: f[1].to_string(),
                candidates: Vec::new(),
            }
        });
        let pos = q.candidates.len();
        q.candidates.push(Candidate {
            docid: f[4].to_string(),
            text: f[5].to_string(),
            score: -(pos as f64),
        });
        qrels
            .entry(f[0].to_string())
            .or_default()
            .insert(f[4].to_string(), label);
    }
    let queries: Vec<Query> = order
        .into_iter()
        .filter_map(|q| by_q.remove(&q))
        .filter(|q| {
            keep_unanswerable
                || qrels
                    .get(&q.qid)
                    .is_some_and(|j| j.values().any(|&g| g > 0))
        })
        .collect();
    qrels.retain(|q, _| queries.iter().any(|x| &x.qid == q));
    Ok(RerankSet {
        name: file_name(path),
        queries,
        qrels,
    })
}

/// Labelled JSONL, one query per line: `{"query": "...", "documents": ["...", ...],
/// "relevant": [indices of the relevant documents], "id"?: "..."}`. A query may have no
/// relevant document (it should be declined).
pub fn labelled_jsonl(path: &Path) -> Result<RerankSet> {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(default)]
        id: Option<serde_json::Value>,
        query: String,
        documents: Vec<String>,
        #[serde(default)]
        relevant: Vec<usize>,
    }
    let text = read_text(path)?;
    let mut queries = Vec::new();
    let mut qrels = Qrels::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line =
            serde_json::from_str(line).map_err(|e| parse_err(path, i + 1, e.to_string()))?;
        if let Some(&bad) = l.relevant.iter().find(|&&r| r >= l.documents.len()) {
            return Err(parse_err(
                path,
                i + 1,
                format!(
                    "relevant index {bad} is out of range for {} documents",
                    l.documents.len()
                ),
            ));
        }
        let qid =
            l.id.as_ref()
                .and_then(id_string)
                .unwrap_or_else(|| (i + 1).to_string());
        let judged = qrels.entry(qid.clone()).or_default();
        for d in 0..l.documents.len() {
            judged.insert(d.to_string(), i32::from(l.relevant.contains(&d)));
        }
        queries.push(Query {
            qid,
            text: l.query,
            candidates: l
                .documents
                .into_iter()
                .enumerate()
                .map(|(d, text)| Candidate {
                    docid: d.to_string(),
                    text,
                    score: -(d as f64),
                })
                .collect(),
        });
    }
    Ok(RerankSet {
        name: file_name(path),
        queries,
        qrels,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// A BEIR folder: `corpus.jsonl` ({_id, title, text}), `queries.jsonl` ({_id, text}),
/// `qrels/<split>.tsv`.
pub struct Beir {
    /// (id, "title text").
    pub corpus: Vec<(String, String)>,
    /// Queries of the split (those with judgments), in file order.
    pub queries: Vec<(String, String)>,
    /// Judgments of the split.
    pub qrels: Qrels,
    /// Folder name.
    pub name: String,
}

/// Loads a BEIR folder for one split.
pub fn beir(dir: &Path, split: &str) -> Result<Beir> {
    let qrels = qrels::parse_beir(&dir.join("qrels").join(format!("{split}.tsv")))?;
    let mut corpus = Vec::new();
    let cpath = dir.join("corpus.jsonl");
    for (i, line) in read_text(&cpath)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| parse_err(&cpath, i + 1, e.to_string()))?;
        let id = id_string(&v["_id"]).ok_or_else(|| parse_err(&cpath, i + 1, "no _id"))?;
        let text = v["text"].as_str().unwrap_or_default();
        let t = match v["title"].as_str() {
            Some(title) if !title.is_empty() => format!("{title} {text}"),
            _ => text.to_string(),
        };
        corpus.push((id, t));
    }
    let qpath = dir.join("queries.jsonl");
    let mut queries = Vec::new();
    for (i, line) in read_text(&qpath)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| parse_err(&qpath, i + 1, e.to_string()))?;
        let id = id_string(&v["_id"]).ok_or_else(|| parse_err(&qpath, i + 1, "no _id"))?;
        if qrels.contains_key(&id) {
            queries.push((id, v["text"].as_str().unwrap_or_default().to_string()));
        }
    }
    Ok(Beir {
        corpus,
        queries,
        qrels,
        name: file_name(dir),
    })
}
