//! Splitting a long document into window-sized chunks by token offsets (Cohere's way: keep the
//! first `max_tokens` tokens, cut them into windows, score each window, keep the best).
//!
//! Pure functions over the tokenizer's byte offsets, so they can be checked for every input:
//! every span returned lies inside the text on `char` boundaries, whatever offsets the
//! tokenizer produced (normalisers can map offsets inside a multi-byte character).

use std::ops::Range;

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
