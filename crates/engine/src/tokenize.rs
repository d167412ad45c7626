//! Pair tokenisation with the model's own `tokenizer.json`, matching the reference exactly:
//! baked-in padding and truncation are replaced by longest-first truncation to `max_length`,
//! and the pair template is applied even when a text is empty.

use crate::error::{EngineError, Result};
use std::path::{Path, PathBuf};
use tokenizers::{
    EncodeInput, PostProcessor, Tokenizer, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

/// One tokenised (query, passage) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment ids (0 for the query part, 1 for the passage part, where the template says so).
    pub type_ids: Vec<u32>,
}

/// A tokenizer configured for cross-encoder pairs.
pub struct PairTokenizer {
    inner: Tokenizer,
    /// The same tokenizer truncating from the left (TEI's `truncation_direction: "Left"`).
    left: Tokenizer,
    /// The same tokenizer without truncation or special tokens, for measuring and chunking.
    plain: Tokenizer,
    path: PathBuf,
    max_length: usize,
}

/// Which end of a text truncation removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Direction {
    /// Keep the beginning (the reference's behaviour).
    #[default]
    Right,
    /// Keep the end.
    Left,
}

impl PairTokenizer {
    /// Loads `tokenizer.json` and sets truncation to `max_length` tokens per pair.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let err = |message: String| EngineError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let mut inner = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        inner.with_padding(None);
        let mut plain = inner.clone();
        plain
            .with_truncation(None)
            .map_err(|e| err(e.to_string()))?;
        let params = |direction| TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction,
        };
        let mut left = inner.clone();
        left.with_truncation(Some(params(TruncationDirection::Left)))
            .map_err(|e| err(e.to_string()))?;
        inner
            .with_truncation(Some(params(TruncationDirection::Right)))
            .map_err(|e| err(e.to_string()))?;
        Ok(PairTokenizer {
            inner,
            left,
            plain,
            path: path.to_path_buf(),
            max_length,
        })
    }

    /// Special tokens the pair template adds (3 for BERT, 4 for XLM-R).
    pub fn pair_special_tokens(&self) -> usize {
        self.inner
            .get_post_processor()
            .map(|p| p.added_tokens(true))
            .unwrap_or(0)
    }

    /// `text` alone through the tokenizer: no special tokens, no truncation.
    fn plain(&self, text: &str) -> Result<tokenizers::Encoding> {
        self.plain
            .encode(text, false)
            .map_err(|e| EngineError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    /// Tokens of `text` alone (no special tokens, no truncation) with their byte offsets.
    pub fn token_offsets(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        Ok(self.plain(text)?.get_offsets().to_vec())
    }

    /// Token ids of `text` alone: no special tokens, no truncation (prompt pieces).
    pub fn plain_ids(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.plain(text)?.get_ids().to_vec())
    }

    /// Length of the pair before truncation (special tokens included).
    pub fn untruncated_pair_len(&self, query: &str, passage: &str) -> Result<usize> {
        let enc = self
            .plain
            .encode(EncodeInput::Dual(query.into(), passage.into()), true)
            .map_err(|e| EngineError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().len())
    }

    /// Tokenises pairs truncating from the given end.
    pub fn encode_pairs_from<Q: AsRef<str>, P: AsRef<str>>(
        &self,
        pairs: &[(Q, P)],
        direction: Direction,
    ) -> Result<Vec<Encoded>> {
        let tok = match direction {
            Direction::Right => &self.inner,
            Direction::Left => &self.left,
        };
        let inputs: Vec<EncodeInput> = pairs
            .iter()
            .map(|(q, p)| EncodeInput::Dual(q.as_ref().into(), p.as_ref().into()))
            .collect();
        self.batch(tok, inputs)
    }

    /// Runs `tok` over `inputs` (special tokens added), keeping ids and type ids.
    fn batch(&self, tok: &Tokenizer, inputs: Vec<EncodeInput>) -> Result<Vec<Encoded>> {
        let encs = tok
            .encode_batch(inputs, true)
            .map_err(|e| EngineError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(encs
            .into_iter()
            .map(|e| Encoded {
                ids: e.get_ids().to_vec(),
                type_ids: e.get_type_ids().to_vec(),
            })
            .collect())
    }

    /// The truncation length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Size of the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenises pairs (in parallel on the current rayon pool).
    pub fn encode_pairs<Q: AsRef<str>, P: AsRef<str>>(
        &self,
        pairs: &[(Q, P)],
    ) -> Result<Vec<Encoded>> {
        self.encode_pairs_from(pairs, Direction::Right)
    }

    /// Tokenises single texts (no pair template), truncated to `max_length`.
    pub fn encode_texts<T: AsRef<str>>(&self, texts: &[T]) -> Result<Vec<Encoded>> {
        let inputs: Vec<EncodeInput> = texts
            .iter()
            .map(|t| EncodeInput::Single(t.as_ref().into()))
            .collect();
        self.batch(&self.inner, inputs)
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}
