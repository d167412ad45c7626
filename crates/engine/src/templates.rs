//! Prompt templates of the decoder rerankers. Each piece of a prompt is tokenized on its own
//! (no special tokens added) and the ids are concatenated, as the reference implementations do;
//! the document (and for mxbai the query) is cut, the template's framing never is.
//!
//! - `qwen3-reranker` (Qwen3-Reranker's model card, sentence-transformers' `restore_suffix`):
//!   `prefix + tok(body)[:max_length - |prefix| - |suffix|] + suffix`, answer tokens `yes` / `no`.
//! - `mxbai-rerank-v2` (the `mxbai-rerank` package): `prefix + Q + (sep + D)[:M - |Q|] + sep +
//!   task + suffix` with `Q` the query piece cut to `3M/4` and `D` the document piece cut to
//!   `min(P - |Q| - fixed, M)`, answer tokens `1` / `0`.

use crate::config::{Architecture, ModelConfig};
use crate::error::{EngineError, Result};
use crate::tokenize::{Encoded, PairTokenizer};
use std::path::Path;

/// A reranking prompt template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Template {
    /// No template: the tokenizer's own pair encoding.
    #[default]
    None,
    /// Qwen3-Reranker.
    Qwen3Reranker,
    /// mxbai-rerank-v2.
    MxbaiRerankV2,
}

const QWEN3_PREFIX: &str = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
const QWEN3_SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
const QWEN3_INSTRUCTION: &str =
    "Given a web search query, retrieve relevant passages that answer the query";
const MXBAI_PREFIX: &str = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n";
const MXBAI_TASK: &str = "You are a search relevance expert who evaluates how well documents match search queries. For each query-document pair, carefully analyze the semantic relationship between them, then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:";
const MXBAI_SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n";

impl Template {
    /// The name used by `--template`.
    pub fn name(self) -> &'static str {
        match self {
            Template::None => "none",
            Template::Qwen3Reranker => "qwen3-reranker",
            Template::MxbaiRerankV2 => "mxbai-rerank-v2",
        }
    }

    /// Parses a `--template` value.
    pub fn parse(s: &str) -> Result<Template> {
        match s {
            "none" => Ok(Template::None),
            "qwen3-reranker" => Ok(Template::Qwen3Reranker),
            "mxbai-rerank-v2" => Ok(Template::MxbaiRerankV2),
            other => Err(EngineError::InvalidOption(format!(
                "template {other:?}: use qwen3-reranker, mxbai-rerank-v2 or none"
            ))),
        }
    }

    /// The (relevant, not relevant) answer tokens a causal LM is scored on.
    pub fn answer_tokens(self) -> Option<(&'static str, &'static str)> {
        match self {
            Template::None => None,
            Template::Qwen3Reranker => Some(("yes", "no")),
            Template::MxbaiRerankV2 => Some(("1", "0")),
        }
    }

    /// The instruction used when a call gives none.
    pub fn default_instruction(self) -> Option<&'static str> {
        match self {
            Template::Qwen3Reranker => Some(QWEN3_INSTRUCTION),
            _ => None,
        }
    }

    /// Finds the template of a decoder checkpoint: from its chat template's text, else from
    /// its directory's name; encoders have none. A decoder with neither is an error naming the
    /// `--template` option.
    pub fn detect(dir: &Path, config: &ModelConfig) -> Result<Template> {
        if !config.architecture.is_decoder() {
            return Ok(Template::None);
        }
        let mut chat = std::fs::read_to_string(dir.join("chat_template.jinja")).unwrap_or_default();
        if let Ok(t) = std::fs::read_to_string(dir.join("tokenizer_config.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                if let Some(c) = v["chat_template"].as_str() {
                    chat.push_str(c);
                }
            }
        }
        if chat.contains("Judge whether the Document meets the requirements") {
            return Ok(Template::Qwen3Reranker);
        }
        if chat.contains("search relevance expert") {
            return Ok(Template::MxbaiRerankV2);
        }
        let name = dir.display().to_string().to_ascii_lowercase();
        if name.contains("qwen3-reranker") {
            return Ok(Template::Qwen3Reranker);
        }
        if name.contains("mxbai-rerank") {
            return Ok(Template::MxbaiRerankV2);
        }
        Err(EngineError::InvalidOption(format!(
            "{} is a {:?} decoder without a known reranking prompt (no Qwen3-Reranker or mxbai-rerank-v2 chat template); pass --template qwen3-reranker or --template mxbai-rerank-v2",
            dir.display(),
            config.architecture
        )))
    }

    /// Whether the template fits the architecture.
    pub fn fits(self, architecture: Architecture) -> bool {
        self == Template::None || architecture.is_decoder()
    }
}

/// Qwen3-Reranker's body piece.
fn qwen3_body(instruction: Option<&str>, query: &str, doc: &str) -> String {
    format!(
        "<Instruct>: {}\n<Query>: {query}\n<Document>: {doc}",
        instruction.unwrap_or_default()
    )
}

/// mxbai-rerank-v2's query piece; an empty instruction adds no line.
fn mxbai_query(instruction: Option<&str>, query: &str) -> String {
    match instruction {
        Some(i) if !i.is_empty() => format!("instruction: {i}\nquery: {query}"),
        _ => format!("query: {query}"),
    }
}

/// A template with its fixed pieces tokenized, ready to encode pairs.
pub struct Prompter {
    template: Template,
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    sep: Vec<u32>,
    task: Vec<u32>,
    max_length: usize,
    positions: usize,
}

impl Prompter {
    /// Tokenizes the fixed pieces of `template` with `tok`; `max_length` is the truncation
    /// length (Qwen3: the whole prompt; mxbai: its content), `positions` the model's.
    pub fn new(
        template: Template,
        tok: &PairTokenizer,
        max_length: usize,
        positions: usize,
    ) -> Result<Self> {
        let ids = |s: &str| tok.plain_ids(s);
        let (prefix, suffix, sep, task) = match template {
            Template::None => (Vec::new(), Vec::new(), Vec::new(), Vec::new()),
            Template::Qwen3Reranker => (
                ids(QWEN3_PREFIX)?,
                ids(QWEN3_SUFFIX)?,
                Vec::new(),
                Vec::new(),
            ),
            Template::MxbaiRerankV2 => (
                ids(MXBAI_PREFIX)?,
                ids(MXBAI_SUFFIX)?,
                ids("\n")?,
                ids(MXBAI_TASK)?,
            ),
        };
        let fixed = prefix.len() + suffix.len() + sep.len() + task.len();
        if template == Template::Qwen3Reranker && fixed + 8 > max_length {
            return Err(EngineError::InvalidOption(format!(
                "max_length {max_length} leaves no room for a pair: the {} template takes {fixed} tokens",
                template.name()
            )));
        }
        Ok(Prompter {
            template,
            prefix,
            suffix,
            sep,
            task,
            max_length,
            positions,
        })
    }

    /// The template.
    pub fn template(&self) -> Template {
        self.template
    }

    /// The ids of the (relevant, not relevant) answer tokens; each must be one token.
    pub fn answer_ids(&self, tok: &PairTokenizer) -> Result<Option<(u32, u32)>> {
        let Some((t, f)) = self.template.answer_tokens() else {
            return Ok(None);
        };
        let one = |s: &str| -> Result<u32> {
            let ids = tok.plain_ids(s)?;
            match ids.as_slice() {
                [id] => Ok(*id),
                _ => Err(EngineError::InvalidOption(format!(
                    "the {} template scores the answer token {s:?}, which this tokenizer encodes as {} tokens {ids:?}, not one",
                    self.template.name(),
                    ids.len()
                ))),
            }
        };
        Ok(Some((one(t)?, one(f)?)))
    }

    /// The ids of one (query, document) pair under the template.
    pub fn encode(
        &self,
        tok: &PairTokenizer,
        query: &str,
        doc: &str,
        instruction: Option<&str>,
    ) -> Result<Encoded> {
        let instruction = instruction.or(self.template.default_instruction());
        let mut ids = self.prefix.clone();
        match self.template {
            Template::None => unreachable!("no prompter without a template"),
            Template::Qwen3Reranker => {
                let mut b = tok.plain_ids(&qwen3_body(instruction, query, doc))?;
                b.truncate(self.max_length - self.prefix.len() - self.suffix.len());
                ids.extend(b);
            }
            Template::MxbaiRerankV2 => {
                let m = self.max_length;
                let mut q = tok.plain_ids(&mxbai_query(instruction, query))?;
                q.truncate(m * 3 / 4);
                let fixed =
                    self.prefix.len() + self.task.len() + self.suffix.len() + self.sep.len();
                let mut d = tok.plain_ids(&format!("document: {doc}"))?;
                d.truncate(self.positions.saturating_sub(q.len() + fixed).min(m));
                let mut sd = self.sep.clone();
                sd.extend(d);
                sd.truncate(m.saturating_sub(q.len()));
                ids.extend(q);
                ids.extend(sd);
                ids.extend(&self.sep);
                ids.extend(&self.task);
            }
        }
        ids.extend(&self.suffix);
        Ok(Encoded {
            type_ids: vec![0; ids.len()],
            ids,
        })
    }

    /// Length of the pair without any truncation, in the units `max_length` bounds: the whole
    /// prompt for Qwen3-Reranker, the content (query and document pieces) for mxbai, whose
    /// `max_length` is the content budget.
    pub fn untruncated_len(
        &self,
        tok: &PairTokenizer,
        query: &str,
        doc: &str,
        instruction: Option<&str>,
    ) -> Result<usize> {
        let instruction = instruction.or(self.template.default_instruction());
        Ok(match self.template {
            Template::None => 0,
            Template::Qwen3Reranker => {
                let body = qwen3_body(instruction, query, doc);
                self.prefix.len() + tok.plain_ids(&body)?.len() + self.suffix.len()
            }
            Template::MxbaiRerankV2 => {
                tok.plain_ids(&mxbai_query(instruction, query))?.len()
                    + self.sep.len()
                    + tok.plain_ids(&format!("document: {doc}"))?.len()
            }
        })
    }
}
