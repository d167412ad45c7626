//! The long-document policy every caller shares (the CLI, the server's dialects, the search
//! pipeline): [`LongDocs`] says whether a document longer than the model's window is truncated,
//! refused or split into chunks; [`prepare`] turns a query and documents into the model's pairs
//! under that policy and [`fold`] turns the pairs' predictions back into one [`Ranked`] per
//! document (a chunked document keeps its best chunk).
//!
//! Chunking is Cohere's way: keep the first `max_tokens` tokens, cut them into windows, score
//! each window, keep the best. [`chunk_spans`] is a pure function over the tokenizer's byte
//! offsets, so it can be checked for every input: every span returned lies inside the text on
//! `char` boundaries, whatever offsets the tokenizer produced (normalisers can map offsets
//! inside a multi-byte character).

use crate::{RankError, Ranked};
use crossrank_engine::{CrossEncoder, Direction, Encoded, Prediction, Template};
use std::ops::Range;

/// How documents longer than the model's window are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LongDocs {
    /// Truncate each pair to the window (the CLI's default; TEI `truncate: true`). A prompt
    /// template truncates its own way (the document's end), whatever the direction.
    Truncate(Direction),
    /// Refuse a pair that does not fit (TEI `truncate: false`, Voyage `truncation: false`).
    Reject,
    /// Cut each document to `max_tokens` tokens, split it into window-sized chunks (at most
    /// `max_chunks`), score each chunk, keep the best (Cohere's way).
    Chunk {
        /// Tokens kept of a document.
        max_tokens: usize,
        /// Chunks scored per document.
        max_chunks: usize,
    },
}

impl Default for LongDocs {
    fn default() -> Self {
        LongDocs::Truncate(Direction::Right)
    }
}

/// A request's pairs, ready for the model, and the document each pair belongs to.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The tokenised pairs.
    pub pairs: Vec<Encoded>,
    /// Which document each pair belongs to.
    pub owners: Owners,
}

/// Which document each pair of a [`Prepared`] request belongs to; folds the pairs'
/// predictions back into one score per document.
#[derive(Debug, Clone)]
pub struct Owners {
    of_pair: Vec<usize>,
    documents: usize,
}

impl Owners {
    fn one_each(documents: usize) -> Owners {
        Owners {
            of_pair: (0..documents).collect(),
            documents,
        }
    }

    /// One [`Ranked`] per document, in input order, from the predictions of its pairs (in
    /// pair order); a document with several chunks keeps its best-scoring chunk.
    pub fn fold(&self, predictions: &[Prediction]) -> Result<Vec<Ranked>, RankError> {
        if predictions.len() != self.of_pair.len() {
            return Err(RankError::Internal(format!(
                "{} predictions for {} pairs",
                predictions.len(),
                self.of_pair.len()
            )));
        }
        let mut best: Vec<Option<Ranked>> = vec![None; self.documents];
        for (p, &index) in predictions.iter().zip(&self.of_pair) {
            let r = Ranked {
                index,
                score: p.score,
                logit: logit(p),
            };
            match &best[index] {
                Some(b) if b.score >= r.score => {}
                _ => best[index] = Some(r),
            }
        }
        best.into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.ok_or_else(|| RankError::Internal(format!("document {i} was not scored")))
            })
            .collect()
    }
}

impl Prepared {
    /// Tokens put through the model (all pairs, special tokens included).
    pub fn tokens(&self) -> usize {
        self.pairs.iter().map(|p| p.ids.len()).sum()
    }
}

/// Tokenises `query` against each of `documents` under `policy`.
///
/// Errors: [`RankError::TooLong`] when `policy` is [`LongDocs::Reject`] and a pair does not fit,
/// [`RankError::Engine`] when tokenisation fails.
pub fn prepare<D: AsRef<str>>(
    model: &CrossEncoder,
    query: &str,
    documents: &[D],
    instruction: Option<&str>,
    policy: LongDocs,
) -> Result<Prepared, RankError> {
    let max_len = model.max_length();
    // One pair per document, for every policy but chunking.
    let whole = |direction: Direction| -> Result<Prepared, RankError> {
        let pairs: Vec<(&str, &str)> = documents.iter().map(|d| (query, d.as_ref())).collect();
        // A prompt template truncates its own way (the document's end), whatever the direction.
        let pairs = if direction == Direction::Left && model.template() == Template::None {
            model
                .tokenizer()
                .encode_pairs_from(&pairs, Direction::Left)?
        } else {
            model.tokenize_with(&pairs, instruction)?
        };
        Ok(Prepared {
            pairs,
            owners: Owners::one_each(documents.len()),
        })
    };
    match policy {
        LongDocs::Truncate(direction) => whole(direction),
        LongDocs::Reject => {
            for (index, d) in documents.iter().enumerate() {
                let tokens = model.untruncated_len(query, d.as_ref(), instruction)?;
                if tokens > max_len {
                    return Err(RankError::TooLong {
                        index,
                        tokens,
                        max: max_len,
                    });
                }
            }
            whole(Direction::Right)
        }
        LongDocs::Chunk {
            max_tokens,
            max_chunks,
        } => {
            let tok = model.tokenizer();
            // What a pair costs besides the document: special tokens and the query, or a
            // prompt template's whole frame (instruction and query included).
            let overhead = if model.template() == Template::None {
                tok.token_offsets(query)?.len() + tok.pair_special_tokens()
            } else {
                model.untruncated_len(query, "", instruction)?
            };
            // Room for the document; a very long query leaves half the window.
            let window = max_len.saturating_sub(overhead).max(max_len / 2).max(1);
            let mut texts: Vec<&str> = Vec::new();
            let mut owners = Vec::new();
            for (i, d) in documents.iter().enumerate() {
                let d = d.as_ref();
                let offsets = tok.token_offsets(d)?;
                for span in chunk_spans(d, &offsets, window, max_tokens, max_chunks) {
                    texts.push(d.get(span).unwrap_or(d));
                    owners.push(i);
                }
            }
            let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (query, *t)).collect();
            Ok(Prepared {
                pairs: model.tokenize_with(&pairs, instruction)?,
                owners: Owners {
                    of_pair: owners,
                    documents: documents.len(),
                },
            })
        }
    }
}

/// The raw score of a prediction: the logit for one label, `logit[1] - logit[0]` for two (the
/// first logit for more).
pub fn logit(p: &Prediction) -> f32 {
    match p.logits.as_slice() {
        [a, b] => b - a,
        l => l.first().copied().unwrap_or(f32::NAN),
    }
}

/// The largest index `<= i` that is a char boundary of `s` (and `<= s.len()`).
pub fn floor_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest index `>= i` that is a char boundary of `s` (and `<= s.len()`).
pub fn ceil_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The byte ranges of `text` to score as separate chunks.
///
/// `offsets` are the tokenizer's (start, end) byte offsets of the text's tokens (no special
/// tokens), `window` the tokens one chunk may hold next to the query, `max_tokens` the tokens
/// of the document kept at all and `max_chunks` the most chunks returned (each at least 1).
/// A document that fits in one window gives one range (the whole text when nothing is cut);
/// a document without tokens gives the whole text, so every document is scored once.
pub fn chunk_spans(
    text: &str,
    offsets: &[(usize, usize)],
    window: usize,
    max_tokens: usize,
    max_chunks: usize,
) -> Vec<Range<usize>> {
    let window = window.max(1);
    let kept = offsets.len().min(max_tokens.max(1));
    if kept == 0 {
        return std::iter::once(0..text.len()).collect();
    }
    if kept <= window {
        let end = if kept < offsets.len() {
            ceil_boundary(text, offsets[kept - 1].1)
        } else {
            text.len()
        };
        return std::iter::once(0..end).collect();
    }
    let chunks = kept.div_ceil(window).min(max_chunks.max(1));
    (0..chunks)
        .map(|c| {
            let first = c * window;
            let last = ((c + 1) * window).min(kept) - 1;
            let start = if c == 0 {
                0
            } else {
                floor_boundary(text, offsets[first].0)
            };
            let end = ceil_boundary(text, offsets[last].1).max(start);
            start..end
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pred(logits: &[f32], score: f32) -> Prediction {
        Prediction {
            logits: logits.to_vec(),
            score,
        }
    }

    #[test]
    fn fold_keeps_each_documents_best_chunk_and_checks_counts() {
        let owners = Owners {
            of_pair: vec![0, 0, 1, 0, 2],
            documents: 3,
        };
        let p = [
            pred(&[0.1], 0.52),
            pred(&[2.0], 0.88),
            pred(&[-1.0, 1.0], 0.88),
            pred(&[0.5], 0.62),
            pred(&[-3.0], 0.05),
        ];
        let r = owners.fold(&p).unwrap();
        let got: Vec<(usize, f32, f32)> = r.iter().map(|r| (r.index, r.score, r.logit)).collect();
        assert_eq!(got, vec![(0, 0.88, 2.0), (1, 0.88, 2.0), (2, 0.05, -3.0)]);
        assert!(matches!(owners.fold(&p[..4]), Err(RankError::Internal(_))));
        let gap = Owners {
            of_pair: vec![0, 0],
            documents: 2,
        };
        let e = gap.fold(&p[..2]).unwrap_err().to_string();
        assert!(e.contains("document 1 was not scored"), "{e}");
    }

    #[test]
    fn offsets_inside_a_character_are_moved_to_its_boundaries() {
        // "é" is two bytes; a tokenizer offset of 1 or 3 falls inside a character.
        let text = "aé bé cé";
        let offsets = [(0, 2), (1, 3), (4, 6), (5, 7), (8, 9), (9, 10)];
        let spans = chunk_spans(text, &offsets, 2, 100, 10);
        assert_eq!(spans.len(), 3);
        for s in &spans {
            assert!(text.get(s.clone()).is_some(), "{s:?}");
        }
        assert_eq!(spans[0], 0..ceil_boundary(text, 3));
    }

    #[test]
    fn short_and_empty_documents_are_one_chunk() {
        assert_eq!(chunk_spans("", &[], 8, 100, 10), vec![0..0]);
        assert_eq!(
            chunk_spans("ab cd", &[(0, 2), (3, 5)], 8, 100, 10),
            vec![0..5]
        );
        // Cut to max_tokens inside one window.
        assert_eq!(
            chunk_spans("ab cd", &[(0, 2), (3, 5)], 8, 1, 10),
            vec![0..2]
        );
    }

    /// Text made of words from a small alphabet with multi-byte characters, and offsets that
    /// are arbitrary (sorted, possibly off-boundary, possibly past the end).
    fn text_and_offsets() -> impl Strategy<Value = (String, Vec<(usize, usize)>)> {
        let text = proptest::collection::vec(
            prop_oneof![Just("a"), Just("é"), Just("日本"), Just(" "), Just("👩‍👩‍👧")],
            0..60,
        )
        .prop_map(|v| v.concat());
        text.prop_flat_map(|t| {
            let n = t.len() + 4;
            let offs = proptest::collection::vec((0..n, 0..n), 0..80).prop_map(|mut v| {
                v.iter_mut().for_each(|(a, b)| {
                    if a > b {
                        std::mem::swap(a, b)
                    }
                });
                v.sort();
                v
            });
            (Just(t), offs)
        })
    }

    proptest! {
        #[test]
        fn spans_are_valid_bounded_and_ordered(
            (text, offsets) in text_and_offsets(),
            window in 0usize..20,
            max_tokens in 0usize..200,
            max_chunks in 0usize..12,
        ) {
            let spans = chunk_spans(&text, &offsets, window, max_tokens, max_chunks);
            prop_assert!(!spans.is_empty());
            prop_assert!(spans.len() <= max_chunks.max(1));
            for s in &spans {
                prop_assert!(s.start <= s.end && s.end <= text.len());
                prop_assert!(text.get(s.clone()).is_some(), "{:?} not on char boundaries", s);
            }
            prop_assert_eq!(spans[0].start, 0);
            for w in spans.windows(2) {
                prop_assert!(w[0].start <= w[1].start);
            }
            // Enough chunks to hold the kept tokens, up to max_chunks.
            let kept = offsets.len().min(max_tokens.max(1));
            if kept > 0 {
                let want = kept.div_ceil(window.max(1)).min(max_chunks.max(1));
                prop_assert_eq!(spans.len(), want);
            }
        }
    }
}
