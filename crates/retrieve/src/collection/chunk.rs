//! Splitting documents into chunks of words or model tokens.

use super::DocInput;
use crate::Result;
use crossrank_engine::PairTokenizer;

/// What `chunk` counts.
#[derive(Clone, Copy)]
pub enum ChunkUnit<'a> {
    /// Whitespace-separated words.
    Words,
    /// Tokens of a model's tokenizer (without special tokens).
    Tokens(&'a PairTokenizer),
}

/// Every document of an upload split as [`chunk`] does, in order.
pub fn chunk_all(
    docs: &[DocInput],
    size: usize,
    overlap: usize,
    unit: ChunkUnit,
) -> Result<Vec<DocInput>> {
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        out.extend(chunk(d, size, overlap, unit)?);
    }
    Ok(out)
}

/// Splits a text into chunks of at most `size` units (words, or model tokens) with about
/// `overlap` units shared by neighbours, never splitting a word (a single word longer than
/// `size` tokens becomes a chunk of its own). Chunks are slices of the original text and keep
/// the parent id: chunk ids are `ID#0`, `ID#1`, ...; a text that fits stays one document.
pub fn chunk(
    doc: &DocInput,
    size: usize,
    overlap: usize,
    unit: ChunkUnit,
) -> Result<Vec<DocInput>> {
    let parent = doc.doc_id.clone().unwrap_or_else(|| doc.id.clone());
    // Byte spans of the words.
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, ch) in doc.text.char_indices() {
        match (ch.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, doc.text.len()));
    }
    let cost: Vec<usize> = match unit {
        ChunkUnit::Words => vec![1; words.len()],
        ChunkUnit::Tokens(t) => {
            let mut cost = vec![0usize; words.len()];
            let mut w = 0;
            for (s, _) in t.token_offsets(&doc.text)? {
                while w + 1 < words.len() && s >= words[w].1 {
                    w += 1;
                }
                if let Some(c) = cost.get_mut(w) {
                    *c += 1;
                }
            }
            cost
        }
    };
    if size == 0 || cost.iter().sum::<usize>() <= size {
        return Ok(vec![DocInput {
            doc_id: Some(parent),
            ..doc.clone()
        }]);
    }
    let mut out = Vec::new();
    let mut first = 0;
    loop {
        let mut end = first;
        let mut used = 0;
        while end < words.len() && (end == first || used + cost[end] <= size) {
            used += cost[end];
            end += 1;
        }
        out.push(DocInput {
            id: format!("{}#{}", doc.id, out.len()),
            text: doc.text[words[first].0..words[end - 1].1].to_string(),
            doc_id: Some(parent.clone()),
            ..doc.clone()
        });
        if end == words.len() {
            break;
        }
        // Step back over at most `overlap` units, always moving forward.
        let mut next = end;
        let mut shared = 0;
        while next > first + 1 && shared + cost[next - 1] <= overlap {
            shared += cost[next - 1];
            next -= 1;
        }
        first = next;
    }
    Ok(out)
}
