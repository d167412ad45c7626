//! BM25 over a tantivy index (k1 = 1.2, b = 0.75), English stemming analyzer.
//!
//! Queries are analysed with the same analyzer and searched as an OR of term queries, so no
//! query syntax can break a search.

use crate::Result;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::TokenStream;
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

const ANALYZER: &str = "en_stem";

/// A BM25 index of (id, text) documents.
pub struct Bm25Index {
    index: Index,
    reader: IndexReader,
    id: Field,
    text: Field,
}

impl Bm25Index {
    fn schema() -> (Schema, Field, Field) {
        let mut b = Schema::builder();
        let id = b.add_text_field("id", STRING | STORED);
        let indexing = TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions);
        let text = b.add_text_field(
            "text",
            TextOptions::default().set_indexing_options(indexing),
        );
        (b.build(), id, text)
    }

    /// Builds an in-memory index.
    pub fn build_in_ram<I, S, T>(docs: I) -> Result<Self>
    where
        I: IntoIterator<Item = (S, T)>,
        S: AsRef<str>,
        T: AsRef<str>,
    {
        let (schema, id, text) = Self::schema();
        let index = Index::create_in_ram(schema);
        let mut writer = index.writer_with_num_threads(1, 64_000_000)?;
        for (i, t) in docs {
            let mut doc = TantivyDocument::default();
            doc.add_text(id, i.as_ref());
            doc.add_text(text, t.as_ref());
            writer.add_document(doc)?;
        }
        writer.commit()?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Bm25Index {
            index,
            reader,
            id,
            text,
        })
    }

    /// The `k` best documents for `query`: (id, BM25 score), best first.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<(String, f32)>> {
        search_field(&self.index, &self.reader, self.id, self.text, query, k)
    }
}

/// BM25 search of `text` in `index`, returning the stored `id` of the `k` best documents.
pub(crate) fn search_field(
    index: &Index,
    reader: &IndexReader,
    id: Field,
    text: Field,
    query: &str,
    k: usize,
) -> Result<Vec<(String, f32)>> {
    Ok(search_docs(index, reader, text, query, k)?
        .into_iter()
        .map(|(doc, score)| {
            let idv = doc
                .get_first(id)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            (idv, score)
        })
        .collect())
}

/// BM25 search of `text` in `index`: the stored documents of the `k` best, with their scores.
pub(crate) fn search_docs(
    index: &Index,
    reader: &IndexReader,
    text: Field,
    query: &str,
    k: usize,
) -> Result<Vec<(TantivyDocument, f32)>> {
    let mut analyzer = index.tokenizer_for_field(text)?;
    let mut stream = analyzer.token_stream(query);
    let mut terms: Vec<Term> = Vec::new();
    while stream.advance() {
        let t = Term::from_field_text(text, &stream.token().text);
        if !terms.contains(&t) {
            terms.push(t);
        }
    }
    if terms.is_empty() || k == 0 {
        return Ok(Vec::new());
    }
    let clauses: Vec<(Occur, Box<dyn Query>)> = terms
        .into_iter()
        .map(|t| {
            (
                Occur::Should,
                Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs)) as Box<dyn Query>,
            )
        })
        .collect();
    let searcher = reader.searcher();
    let top = searcher.search(&BooleanQuery::new(clauses), &TopDocs::with_limit(k))?;
    let mut out = Vec::with_capacity(top.len());
    for (score, addr) in top {
        out.push((searcher.doc(addr)?, score));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_bm25_with_stemming() {
        let idx = Bm25Index::build_in_ram([
            ("a", "The cat sat on the mat."),
            ("b", "Dogs are running in the park; a dog runs fast."),
            ("c", "Nothing relevant here."),
        ])
        .unwrap();
        let hits = idx.search("running dog", 10).unwrap();
        assert_eq!(hits[0].0, "b");
        assert_eq!(hits.len(), 1);
        assert!(idx.search("(unbalanced \"quote AND", 5).is_ok());
        assert!(idx.search("", 5).unwrap().is_empty());
    }
}
