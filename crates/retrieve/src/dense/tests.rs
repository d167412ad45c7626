use super::*;

fn cfg(min_vectors: usize) -> AnnConfig {
    AnnConfig {
        min_vectors,
        ..AnnConfig::default()
    }
}

#[test]
fn exact_top_k_replace_and_delete() {
    let mut d = DenseIndex::new(2, cfg(1000));
    d.upsert([
        ("a", &[1.0f32, 0.0][..]),
        ("b", &[0.6, 0.8]),
        ("c", &[0.0, 1.0]),
    ])
    .unwrap();
    let ids = |h: Vec<(String, f32)>| h.into_iter().map(|h| h.0).collect::<Vec<_>>();
    assert_eq!(ids(d.search(&[0.0, 1.0], 2).unwrap()), ["c", "b"]);
    assert_eq!(d.search(&[1.0, 0.0], 10).unwrap().len(), 3);
    // Replacing "a" moves it; deleting "c" removes it.
    d.upsert([("a", &[0.0f32, 1.0][..])]).unwrap();
    assert!(d.remove("c").unwrap());
    assert!(!d.remove("c").unwrap());
    assert_eq!(d.len(), 2);
    assert_eq!(ids(d.search(&[0.0, 1.0], 5).unwrap()), ["a", "b"]);
    let err = d.upsert([("x", &[1.0f32][..])]).unwrap_err();
    assert!(err.to_string().contains("has 1 values"), "{err}");
    assert!(d.search(&[1.0], 1).is_err());
}

/// Clustered unit vectors, like real embeddings: (data, 20 queries).
fn clustered(n: usize, dim: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut all = crate::testing::vectors(n + 20, dim, 20, seed);
    let queries = all.split_off(n);
    (all, queries)
}

fn recall(d: &DenseIndex, queries: &[Vec<f32>], want: &[Vec<String>], k: usize) -> f64 {
    let mut found = 0;
    for (q, want) in queries.iter().zip(want) {
        let got: Vec<String> = d.search(q, k).unwrap().into_iter().map(|h| h.0).collect();
        found += want.iter().filter(|w| got.contains(w)).count();
    }
    found as f64 / (k * queries.len()) as f64
}

#[test]
fn int8_scan_finds_the_exact_top_k_on_unstructured_vectors() {
    // Uniform random vectors (no clusters): the scan is near-exact regardless.
    let dim = 64;
    let n = 10_000 + crate::scan::SHARD + 100;
    let mut data = crate::testing::vectors(n + 10, dim, 0, 3);
    let queries = data.split_off(n);
    let names: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let mut d = DenseIndex::new(
        dim,
        AnnConfig {
            min_vectors: 10_000,
            kind: AnnKind::Int8Scan,
            ..AnnConfig::default()
        },
    );
    // At the threshold the first 10,000 are quantized; of the rest, one whole shard is
    // quantized and the last 100 stay an exact tail.
    let pairs = || {
        names
            .iter()
            .map(|s| s.as_str())
            .zip(data.iter().map(|v| &v[..]))
    };
    d.upsert(pairs().take(10_000)).unwrap();
    assert_eq!(d.mode(), DenseMode::Int8Scan);
    d.upsert(pairs().skip(10_000)).unwrap();
    d.remove("u7").unwrap();
    let want: Vec<Vec<(String, f32)>> = queries.iter().map(|q| d.exact(q, 20).unwrap()).collect();
    let mut found = 0;
    for (q, want) in queries.iter().zip(&want) {
        let got = d.search(q, 20).unwrap();
        assert!(got.iter().all(|g| g.0 != "u7"));
        found += want.iter().filter(|w| got.contains(w)).count();
    }
    assert!(found >= 198, "recall {found}/200 with exact rescoring");
    // Saved in exact form, quantized again on load.
    let dir = std::env::temp_dir().join(format!("crossrank-scan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    d.save(&dir, 1).unwrap();
    let back = DenseIndex::load(&dir, dim, d.cfg.clone(), 1)
        .unwrap()
        .unwrap();
    assert_eq!(back.mode(), DenseMode::Int8Scan);
    assert_eq!(
        back.search(&queries[0], 20).unwrap(),
        d.search(&queries[0], 20).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn graph_is_built_at_the_threshold_agrees_with_exact_and_persists() {
    let (data, queries) = clustered(3000, 16, 7);
    let names: Vec<String> = (0..data.len()).map(|i| format!("d{i}")).collect();
    let mut d = DenseIndex::new(16, cfg(2000));
    d.upsert(
        names[..1999]
            .iter()
            .map(|n| n.as_str())
            .zip(data.iter().map(|v| &v[..])),
    )
    .unwrap();
    assert!(!d.has_ann());
    let exact: Vec<Vec<String>> = queries
        .iter()
        .map(|q| d.exact(q, 10).unwrap().into_iter().map(|h| h.0).collect())
        .collect();
    d.upsert([(names[1999].as_str(), &data[1999][..])]).unwrap();
    assert!(d.has_ann(), "graph built at 2000 vectors");
    // Later upserts, replacements and deletes apply to the graph.
    d.upsert(
        names[2000..]
            .iter()
            .map(|n| n.as_str())
            .zip(data[2000..].iter().map(|v| &v[..])),
    )
    .unwrap();
    let want: Vec<Vec<String>> = queries
        .iter()
        .map(|q| d.exact(q, 10).unwrap().into_iter().map(|h| h.0).collect())
        .collect();
    assert_ne!(want, exact, "the new vectors are found by exact search");
    let r = recall(&d, &queries, &want, 10);
    assert!(r >= 0.95, "HNSW recall@10 {r}");
    let top = want[0][0].clone();
    assert!(d.remove(&top).unwrap());
    assert!(d
        .search(&queries[0], 10)
        .unwrap()
        .iter()
        .all(|h| h.0 != top));
    assert_eq!(d.len(), 2999);

    let dir = std::env::temp_dir().join(format!("crossrank-dense-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    d.save(&dir, 41).unwrap();
    assert!(
        DenseIndex::load(&dir, 16, cfg(2000), 40).unwrap().is_none(),
        "stale stamp"
    );
    assert!(
        DenseIndex::load(&dir, 8, cfg(2000), 41).unwrap().is_none(),
        "other width"
    );
    let back = DenseIndex::load(&dir, 16, cfg(2000), 41).unwrap().unwrap();
    assert!(back.has_ann());
    assert_eq!(back.len(), 2999);
    for q in &queries {
        assert_eq!(back.search(q, 10).unwrap(), d.search(q, 10).unwrap());
    }
    // A torn save (no meta.json) reads as absent.
    std::fs::remove_file(dir.join("meta.json")).unwrap();
    assert!(DenseIndex::load(&dir, 16, cfg(2000), 41).unwrap().is_none());
    // The exact mode persists too.
    let mut small = DenseIndex::new(16, cfg(2000));
    small
        .upsert([("a", &data[0][..]), ("b", &data[1][..])])
        .unwrap();
    small.remove("a").unwrap();
    small.save(&dir, 3).unwrap();
    let back = DenseIndex::load(&dir, 16, cfg(2000), 3).unwrap().unwrap();
    assert!(!back.has_ann());
    assert_eq!(
        back.search(&data[0], 5).unwrap(),
        small.search(&data[0], 5).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
