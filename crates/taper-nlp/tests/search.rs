//! Search: BM25 equal to `rank_bm25.BM25Okapi` (reference values from
//! `tools/bm25_reference.py`), the exact index equal to brute force with the
//! query left out, an index refused when built by another model, and the
//! paraphrase task's groups and scores on a file the test writes.

use candle_core::{Device, Tensor};
use std::collections::HashSet;
use taper_nlp::search::{fingerprint, Bm25, ExactIndex, ParaphraseTask};

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
