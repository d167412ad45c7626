use super::*;
use crossrank_engine::PairTokenizer;

fn d(id: &str, text: &str) -> DocInput {
    DocInput::new(id, text)
}

#[test]
fn upsert_replace_delete_and_reopen() {
    let dir = std::env::temp_dir().join(format!("crossrank-coll-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let mut c = Collection::open(&dir, None, false).unwrap();
        c.upsert(&[
            d("a", "rust borrow checker"),
            d("b", "python garbage collector"),
        ])
        .unwrap();
        c.upsert(&[DocInput {
            source: Some("blog".into()),
            updated_at: Some("2026-11-01T00:00:00Z".into()),
            ..d("a", "rust ownership and lifetimes")
        }])
        .unwrap();
        assert_eq!(c.len(), 2);
        let bad = c
            .upsert(&[DocInput {
                updated_at: Some("yesterday".into()),
                ..d("c", "x")
            }])
            .unwrap_err();
        assert!(bad.to_string().contains("RFC 3339"));
    }
    let mut c = Collection::open(&dir, None, false).unwrap();
    assert_eq!(c.len(), 2);
    let a = c.get("a").unwrap().unwrap();
    assert_eq!(a.text, "rust ownership and lifetimes");
    assert_eq!(a.source.as_deref(), Some("blog"));
    assert!(
        (a.age_days(parse_date("2026-11-11T00:00:00Z").unwrap())
            .unwrap()
            - 10.0)
            .abs()
            < 1e-9
    );
    assert_eq!(
        c.retrieve("lifetimes", Retriever::Bm25, 5).unwrap()[0].0,
        "a"
    );
    assert_eq!(c.delete(&["b".into(), "zzz".into()]).unwrap(), 1);
    assert_eq!(c.len(), 1);
    assert!(c.retrieve("x", Retriever::Dense, 5).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    crate::testing::vectors(n, dim, 10, seed)
}

#[test]
fn dense_graph_is_saved_reloaded_and_rebuilt_after_a_crash() {
    let dir = std::env::temp_dir().join(format!("crossrank-coll-ann-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A collection.json may set the threshold; the other fields keep their defaults.
    std::fs::write(
        dir.join("collection.json"),
        r#"{"ann": {"min_vectors": 500}}"#,
    )
    .unwrap();
    let vs = vectors(1300, 16, 11);
    let docs: Vec<DocInput> = (0..1200)
        .map(|i| d(&format!("v{i}"), &format!("text {i}")))
        .collect();
    let queries = vectors(10, 16, 99);
    let before: Vec<Vec<(String, f32)>>;
    {
        let mut c = Collection::open(&dir, None, false).unwrap();
        assert_eq!(c.manifest().ann.min_vectors, 500);
        assert_eq!(c.manifest().ann.connectivity, 16);
        for (docs, vs) in docs.chunks(300).zip(vs.chunks(300)) {
            c.upsert_embedded(docs, vs.to_vec()).unwrap();
        }
        let bad = c
            .upsert_embedded(&[d("w", "x")], vec![vec![0.5; 8]])
            .unwrap_err();
        assert!(bad.to_string().contains("holds 16-d vectors"), "{bad}");
        let info = c.dense_info().unwrap();
        assert_eq!(
            (info.vectors, info.index, info.saved),
            (1200, DenseMode::Hnsw, false)
        );
        let mut found = 0;
        for q in &queries {
            let got = c.search_vector(q, 10).unwrap();
            let want = c.search_vector_exact(q, 10).unwrap();
            found += want
                .iter()
                .filter(|w| got.iter().any(|g| g.0 == w.0))
                .count();
        }
        assert!(found >= 95, "recall@10 {found}/100");
        before = queries
            .iter()
            .map(|q| c.search_vector(q, 10).unwrap())
            .collect();
    } // dropped: the graph is saved
    assert!(dir.join("dense/graph.usearch").exists());
    {
        let mut c = Collection::open(&dir, None, false).unwrap();
        let info = c.dense_info().unwrap();
        assert_eq!(
            (info.vectors, info.index, info.saved),
            (1200, DenseMode::Hnsw, true)
        );
        let again: Vec<Vec<(String, f32)>> = queries
            .iter()
            .map(|q| c.search_vector(q, 10).unwrap())
            .collect();
        assert_eq!(again, before);
        // A write, then a crash before the dense index is saved.
        c.upsert_embedded(&[d("new", "n")], vec![queries[0].clone()])
            .unwrap();
        c.delete(&[before[1][0].0.clone()]).unwrap();
        std::mem::forget(c);
    }
    let mut c = Collection::open(&dir, None, false).unwrap();
    let info = c.dense_info().unwrap();
    assert_eq!(
        (info.vectors, info.index, info.saved),
        (1200, DenseMode::Hnsw, false),
        "rebuilt"
    );
    assert_eq!(c.search_vector(&queries[0], 1).unwrap()[0].0, "new");
    assert!(c
        .search_vector(&queries[1], 10)
        .unwrap()
        .iter()
        .all(|h| h.0 != before[1][0].0));
    c.flush().unwrap();
    assert!(c.dense_info().unwrap().saved);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chunks_count_model_tokens_without_splitting_words() {
    let tok = PairTokenizer::from_file(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/minilm-l6-rerank/tokenizer.json"
        )),
        512,
    )
    .unwrap();
    let text = "Tokenization of unbelievably hyphenated-words, e.g. electroencephalography, \
                needs care; short words are cheap.";
    let doc = d("t", text);
    let total = tok.token_offsets(text).unwrap().len();
    let words = text.split_whitespace().count();
    assert!(total > words + 5, "{total} tokens for {words} words");
    let chunks = chunk(&doc, 8, 2, ChunkUnit::Tokens(&tok)).unwrap();
    let mut prev_end = 0;
    for (i, c) in chunks.iter().enumerate() {
        let n = tok.token_offsets(&c.text).unwrap().len();
        let single_word = !c.text.contains(char::is_whitespace);
        assert!(n <= 8 || single_word, "{:?} has {n} tokens", c.text);
        // A slice of the text at word boundaries, overlapping or touching the previous one.
        let start = text.find(&c.text).unwrap();
        let end = start + c.text.len();
        let boundary = |at: usize| {
            at == 0 || at == text.len() || text[at..].starts_with(' ') || text[..at].ends_with(' ')
        };
        assert!(
            boundary(start) && boundary(end),
            "{:?} splits a word",
            c.text
        );
        assert!(i == 0 || start <= prev_end + 1, "gap before {:?}", c.text);
        prev_end = end;
    }
    assert!(chunks[0].text.starts_with("Tokenization"));
    assert_eq!(prev_end, text.len());
    // Counting words instead gives fewer, longer chunks.
    assert!(chunk(&doc, 8, 2, ChunkUnit::Words).unwrap().len() < chunks.len());
}

#[test]
fn chunks_overlap_and_keep_the_parent() {
    let doc = d("p", "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9");
    let c = chunk(&doc, 4, 1, ChunkUnit::Words).unwrap();
    assert_eq!(
        c.iter().map(|x| x.text.as_str()).collect::<Vec<_>>(),
        ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    );
    assert!(c.iter().all(|x| x.doc_id.as_deref() == Some("p")));
    assert_eq!(c[2].id, "p#2");
    assert_eq!(chunk(&doc, 20, 0, ChunkUnit::Words).unwrap()[0].id, "p");
    // Original spacing is kept inside a chunk.
    let spaced = d("s", "a  b\nc d");
    let c = chunk(&spaced, 3, 0, ChunkUnit::Words).unwrap();
    assert_eq!(c[0].text, "a  b\nc");
    assert_eq!(c[1].text, "d");
}
