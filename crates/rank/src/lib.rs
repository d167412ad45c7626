//! Rerankers: the interface every stage above the engine uses to rank documents for a query,
//! with local cross-encoders and hosted APIs ([`hosted`]) behind it.

pub mod fusion;
pub mod hosted;
pub mod long_docs;

use crossrank_engine::{CrossEncoder, EngineError};

/// Errors of a reranker.
#[derive(Debug, thiserror::Error)]
pub enum RankError {
    /// The local engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A hosted provider failed (after retries, where retrying made sense).
    #[error("{provider}{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Provider {
        /// cohere, voyage, jina, tei, crossrank.
        provider: String,
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
}

/// What a reranker's scores mean, so thresholds and fusion know what they get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreKind {
    /// The model's probability: sigmoid(logit), or softmax[1] for two labels.
    Probability,
    /// A hosted provider's relevance score in [0, 1], in its own (uncalibrated) scale.
    ProviderRelevance,
}

/// One ranked document.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Position of the document in the input.
    pub index: usize,
    /// Relevance probability in [0, 1].
    pub score: f32,
    /// Raw model output (the positive-class logit, or logit difference for two labels); for
    /// hosted rerankers, the logit of their score (same order).
    pub logit: f32,
}

/// Anything that scores documents against a query.
pub trait Reranker: Send + Sync {
    /// A name for reports (model directory or provider spec).
    fn name(&self) -> String;
    /// What the scores mean.
    fn score_kind(&self) -> ScoreKind {
        ScoreKind::Probability
    }
    /// Scores every document, in input order.
    fn score(&self, query: &str, documents: &[&str]) -> Result<Vec<Ranked>, RankError>;

    /// Scores and sorts by score, descending (ties keep input order), keeping `top_n`.
    fn rerank(
        &self,
        query: &str,
        documents: &[&str],
        top_n: Option<usize>,
    ) -> Result<Vec<Ranked>, RankError> {
        let mut ranked = self.score(query, documents)?;
        sort_ranked(&mut ranked);
        if let Some(n) = top_n {
            ranked.truncate(n);
        }
        Ok(ranked)
    }
}

/// Sorts by score descending, then by input index; NaN last.
pub fn sort_ranked(ranked: &mut [Ranked]) {
    ranked.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or_else(|| a.score.is_nan().cmp(&b.score.is_nan()))
            .then(a.index.cmp(&b.index))
    });
}

/// A local cross-encoder run by the engine.
pub struct LocalReranker {
    model: CrossEncoder,
    instruction: Option<String>,
}

impl LocalReranker {
    /// Wraps a loaded model.
    pub fn new(model: CrossEncoder) -> Self {
        LocalReranker {
            model,
            instruction: None,
        }
    }
    /// Scores with this instruction (for models whose template takes one).
    pub fn with_instruction(mut self, instruction: Option<String>) -> Self {
        self.instruction = instruction;
        self
    }
    /// The engine model.
    pub fn model(&self) -> &CrossEncoder {
        &self.model
    }
}

impl Reranker for LocalReranker {
    fn name(&self) -> String {
        self.model.dir().display().to_string()
    }

    fn score(&self, query: &str, documents: &[&str]) -> Result<Vec<Ranked>, RankError> {
        let pairs: Vec<(&str, &str)> = documents.iter().map(|d| (query, *d)).collect();
        let preds = self
            .model
            .predict_with(&pairs, self.instruction.as_deref())?;
        Ok(preds
            .into_iter()
            .enumerate()
            .map(|(index, p)| {
                let logit = match p.logits.as_slice() {
                    [a, b] => b - a,
                    l => l.last().copied().unwrap_or(f32::NAN),
                };
                Ranked {
                    index,
                    score: p.score,
                    logit,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_is_descending_stable_and_nan_last() {
        let mk = |index, score| Ranked {
            index,
            score,
            logit: 0.0,
        };
        let mut v = vec![mk(0, 0.2), mk(1, f32::NAN), mk(2, 0.9), mk(3, 0.2)];
        sort_ranked(&mut v);
        let order: Vec<usize> = v.iter().map(|r| r.index).collect();
        assert_eq!(order, vec![2, 0, 3, 1]);
    }
}
