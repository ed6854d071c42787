//! Search: BM25 equal to `rank_bm25.BM25Okapi` (reference values from
//! `tools/bm25_reference.py`), the exact index equal to brute force with the
//! query left out, an index refused when built by another model, and the
//! paraphrase task's groups and scores on a file the test writes; the
//! approximate (HNSW) index's recall against the exact one on clustered
//! vectors, its save/load round trip, and its refusal of another model's or a
//! damaged file.

use candle_core::{DType, Device, Tensor};
use std::collections::HashSet;
use taper_nlp::search::{
    fingerprint, ApproxIndex, Bm25, ExactIndex, HnswParams, ParaphraseTask, SearchIndex,
};
use taper_nlp::Error;

#[test]
fn bm25_equals_rank_bm25() {
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/bm25_reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let docs: Vec<&str> = r["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let bm25 = Bm25::new(&docs);
    for (q, want) in r["queries"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["scores"].as_array().unwrap())
    {
        let got = bm25.scores(q.as_str().unwrap());
        for (g, w) in got.iter().zip(want.as_array().unwrap()) {
            let w = w.as_f64().unwrap();
            assert!(
                (*g as f64 - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{q}: {got:?} vs {want}"
            );
        }
    }
    let hits = bm25.search(&["green park"], 2, Some(&[3]));
    assert_eq!(
        hits[0].iter().map(|h| h.0).collect::<Vec<_>>(),
        vec![4, 1],
        "doc 3 excluded"
    );
}

#[test]
fn exact_index_equals_brute_force_and_refuses_another_model() {
    let dev = Device::Cpu;
    let (n, d) = (40_000, 24); // more than one block of rows
    let v = Tensor::randn(0f32, 1.0, (n, d), &dev).unwrap();
    let index = ExactIndex::new(&v, "model-a").unwrap();
    let q = v.narrow(0, 17, 3).unwrap();
    let hits = index.search(&q, 5, Some(&[17, 18, 19])).unwrap();
    let unit: Vec<Vec<f32>> = taper_nlp::bert::l2_normalize(&v)
        .unwrap()
        .to_vec2()
        .unwrap();
    for (qi, h) in hits.iter().enumerate() {
        let me = 17 + qi;
        let mut brute: Vec<(u32, f32)> = (0..n)
            .filter(|&j| j != me)
            .map(|j| {
                (
                    j as u32,
                    unit[me].iter().zip(&unit[j]).map(|(a, b)| a * b).sum(),
                )
            })
            .collect();
        brute.sort_by(|a, b| b.1.total_cmp(&a.1));
        let want: Vec<u32> = brute.iter().take(5).map(|h| h.0).collect();
        assert_eq!(
            h.iter().map(|x| x.0).collect::<Vec<_>>(),
            want,
            "query {qi}"
        );
        assert!((h[0].1 - brute[0].1).abs() < 1e-5);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.safetensors");
    index.save(&path).unwrap();
    let back = ExactIndex::load(&path, "model-a", &dev).unwrap();
    assert_eq!(back.search(&q, 5, Some(&[17, 18, 19])).unwrap(), hits);
    let e = ExactIndex::load(&path, "model-b", &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("index.safetensors") && e.contains("another model"),
        "{e}"
    );
    std::fs::write(&path, b"garbage").unwrap();
    let e = ExactIndex::load(&path, "model-a", &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not an index file"), "{e}");
    let f1 = dir.path().join("a");
    std::fs::write(&f1, b"weights").unwrap();
    let fp = fingerprint(&[&f1]).unwrap();
    assert_eq!(fp.len(), 32);
    std::fs::write(&f1, b"weightz").unwrap();
    assert_ne!(fingerprint(&[&f1]).unwrap(), fp);
}

#[test]
fn paraphrase_task_groups_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.txt");
    std::fs::write(
        &path,
        "Hi.\tSalut.\nHello.\tSalut.\nHey.\tSalut.\nRun!\tCours !\nGo.\tVa !\nGo on.\tVa !\nHi.\tBonjour.\n",
    )
    .unwrap();
    let t = ParaphraseTask::from_pairs(&path).unwrap();
    assert_eq!(t.corpus, ["Hi.", "Hello.", "Hey.", "Run!", "Go.", "Go on."]);
    assert_eq!(t.queries, [0, 1, 2, 4, 5]);
    assert_eq!(t.groups(), 2);
    assert_eq!(t.relevant[0], HashSet::from([1, 2]));
    // A ranking that puts one paraphrase first and the other third.
    let ranked = vec![
        vec![(1, 0.9), (3, 0.5), (2, 0.4)],
        vec![(3, 0.9), (0, 0.5)],
        vec![(4, 0.9), (5, 0.8)],
        vec![(5, 0.9)],
        vec![(3, 0.9), (0, 0.8)],
    ];
    let s = t.score(&ranked, None);
    assert!(
        (s.recall_at_1 - (0.5 + 0.0 + 0.0 + 1.0 + 0.0) / 5.0).abs() < 1e-12,
        "{s:?}"
    );
    assert!(
        (s.recall_at_10 - (1.0 + 0.5 + 0.0 + 1.0 + 0.0) / 5.0).abs() < 1e-12,
        "{s:?}"
    );
    assert!(
        (s.mrr_at_10 - (1.0 + 0.5 + 0.0 + 1.0 + 0.0) / 5.0).abs() < 1e-12,
        "{s:?}"
    );
    std::fs::write(&path, "no tab here\n").unwrap();
    let e = ParaphraseTask::from_pairs(&path).err().unwrap().to_string();
    assert!(e.contains("pairs.txt") && e.contains("line 1"), "{e}");
}

/// `n` seeded vectors of width `d` scattered around `centres` random centres.
fn clustered(n: usize, d: usize, centres: usize, seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let c: Vec<f32> = (0..centres * d)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let v: Vec<f32> = (0..n)
        .flat_map(|i| {
            let at = (i % centres) * d;
            c[at..at + d].to_vec()
        })
        .map(|x| x + 0.3 * rng.random_range(-1.0f32..1.0))
        .collect();
    Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
}

fn recall(approx: &[Vec<(u32, f32)>], exact: &[Vec<(u32, f32)>]) -> f64 {
    let found: usize = approx
        .iter()
        .zip(exact)
        .map(|(a, e)| a.iter().filter(|h| e.iter().any(|x| x.0 == h.0)).count())
        .sum();
    found as f64 / exact.iter().map(Vec::len).sum::<usize>() as f64
}

#[test]
fn approximate_index_finds_what_the_exact_one_finds() {
    // 5,000 indexed, 300 more around the same centres as new queries.
    let all = clustered(5_300, 32, 50, 7);
    let (v, outside) = (
        all.narrow(0, 0, 5_000).unwrap(),
        all.narrow(0, 5_000, 300).unwrap(),
    );
    let exact = ExactIndex::new(&v, "m").unwrap();
    let approx = ApproxIndex::new(&v, "m", HnswParams::default()).unwrap();
    assert_eq!(
        (approx.len(), approx.dim(), approx.fingerprint()),
        (5_000, 32, "m")
    );
    // Rows of the index as queries, each left out of its own results, and
    // vectors that are not in it.
    let rows: Vec<u32> = (0..500).map(|i| i * 10).collect();
    let idx = Tensor::new(rows.as_slice(), &Device::Cpu).unwrap();
    let inside = v.index_select(&idx, 0).unwrap();
    let (want, got) = (
        exact.search(&inside, 10, Some(&rows)).unwrap(),
        approx.search(&inside, 10, Some(&rows)).unwrap(),
    );
    let r = recall(&got, &want);
    assert!(r >= 0.98, "recall@10 {r}");
    for (q, hits) in got.iter().enumerate() {
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| h.0 != rows[q]), "query {q} left out");
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
        // Scores are ExactIndex's cosines.
        for h in hits {
            if let Some(e) = want[q].iter().find(|e| e.0 == h.0) {
                assert!((e.1 - h.1).abs() < 1e-5, "{e:?} vs {h:?}");
            }
        }
    }
    let r = recall(
        &approx.search(&outside, 10, None).unwrap(),
        &exact.search(&outside, 10, None).unwrap(),
    );
    assert!(r >= 0.98, "recall@10 of new vectors {r}");
    let e = approx
        .search(
            &Tensor::zeros((1, 31), DType::F32, &Device::Cpu).unwrap(),
            3,
            None,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("width 31"), "{e}");
    assert!(approx.search(&outside, 0, None).unwrap()[0].is_empty());
    let bad = HnswParams {
        connectivity: 1,
        ..Default::default()
    };
    assert!(ApproxIndex::new(&v, "m", bad).is_err());
}

#[test]
fn approximate_index_saves_loads_and_refuses_another_model_or_a_damaged_file() {
    let v = clustered(2_000, 16, 20, 3);
    let mut index = ApproxIndex::new(&v, "model-a", HnswParams::default()).unwrap();
    let q = clustered(50, 16, 20, 4);
    let hits = index.search(&q, 10, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs.hnsw");
    index.save(&path).unwrap();
    let back = ApproxIndex::load(&path, "model-a").unwrap();
    assert_eq!(
        (back.len(), back.dim(), back.params()),
        (index.len(), index.dim(), index.params())
    );
    assert_eq!(back.search(&q, 10, None).unwrap(), hits);
    index.set_ef_search(16).unwrap();
    assert_eq!(index.params().ef_search, 16);
    assert!(index.set_ef_search(0).is_err());

    let e = ApproxIndex::load(&path, "model-b").err().unwrap();
    assert!(matches!(e, Error::ModelFile { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("docs.hnsw") && e.contains("another model"),
        "{e}"
    );

    let bytes = std::fs::read(&path).unwrap();
    let header = 16 + u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let damaged = |b: &[u8]| {
        std::fs::write(&path, b).unwrap();
        let e = ApproxIndex::load(&path, "model-a").err().unwrap();
        assert!(matches!(e, Error::ModelFile { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("docs.hnsw"), "{e}");
        e
    };
    for cut in [0, 5, 12, header - 3, header + 100, bytes.len() - 1] {
        let e = damaged(&bytes[..cut]);
        assert!(
            e.contains("truncated") || e.contains("not an approximate index"),
            "cut at {cut}: {e}"
        );
    }
    let mut flipped = bytes.clone();
    flipped[header + 200] ^= 1;
    assert!(damaged(&flipped).contains("corrupt"));
    // The exact index's file is not an approximate one.
    ExactIndex::new(&v, "model-a").unwrap().save(&path).unwrap();
    let e = ApproxIndex::load(&path, "model-a")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not an approximate index"), "{e}");
}

#[test]
fn search_index_is_built_once_then_reused() {
    let v = clustered(500, 8, 5, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/docs.hnsw");
    let mut built = 0;
    for _ in 0..2 {
        let index = SearchIndex::load_or_build(
            &path,
            "m",
            Some(HnswParams::default()),
            &Device::Cpu,
            |_why| {
                built += 1;
                Ok(v.clone())
            },
        )
        .unwrap();
        assert!(matches!(index, SearchIndex::Approximate(_)));
        assert_eq!(index.len(), 500);
        let hits = index.search(&v.narrow(0, 3, 1).unwrap(), 1, None).unwrap();
        assert_eq!(hits[0][0].0, 3, "a vector is its own nearest");
    }
    assert_eq!(built, 1);
    let mut why = String::new();
    SearchIndex::load_or_build(&path, "other", None, &Device::Cpu, |e| {
        why = e.to_string();
        Ok(v.clone())
    })
    .unwrap();
    assert!(why.contains("docs.hnsw"), "{why}");
}

/// k = 0 asks for no hits: every index answers with empty lists (the exact one
/// used to index its best list at k - 1 and panic).
#[test]
fn zero_hits_asked_gives_empty_lists() {
    let v = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [0.6, 0.8]], &Device::Cpu).unwrap();
    let exact = ExactIndex::new(&v, "fp").unwrap();
    let hits = exact.search(&v, 0, None).unwrap();
    assert_eq!(hits, vec![Vec::<(u32, f32)>::new(); 3]);
    let bm25 = Bm25::new(&["a b", "b c"]);
    assert_eq!(bm25.search(&["b"], 0, None), vec![Vec::<(u32, f32)>::new()]);
}

/// An index path that names a file Taper did not write (a corpus, say) is never
/// replaced by a rebuild; a damaged exact index is detected by its checksum and
/// rebuilt.
#[test]
fn an_index_path_holding_another_file_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let v = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [0.6, 0.8]], &Device::Cpu).unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, "one sentence\nanother\n").unwrap();
    for hnsw in [None, Some(HnswParams::default())] {
        let e = SearchIndex::load_or_build(&corpus, "m", hnsw, &Device::Cpu, |_| Ok(v.clone()));
        let msg = e.err().expect("refused").to_string();
        assert!(
            msg.contains("corpus.txt") && msg.contains("not a search index"),
            "{msg}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&corpus).unwrap(),
        "one sentence\nanother\n"
    );

    let path = dir.path().join("docs.index");
    ExactIndex::new(&v, "m").unwrap().save(&path).unwrap();
    assert!(ExactIndex::load(&path, "m", &Device::Cpu).is_ok());
    // An infinity written over the last value.
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::INFINITY.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = ExactIndex::load(&path, "m", &Device::Cpu)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("SHA-256"), "{e}");
    let mut rebuilt = false;
    SearchIndex::load_or_build(&path, "m", None, &Device::Cpu, |_| {
        rebuilt = true;
        Ok(v.clone())
    })
    .unwrap();
    assert!(rebuilt);
    assert!(ExactIndex::load(&path, "m", &Device::Cpu).is_ok());
}
