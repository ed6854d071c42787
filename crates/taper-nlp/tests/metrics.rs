//! BLEU and chrF against sacreBLEU 2.x (golden values from tools/bleu_reference.py).

use taper_nlp::metrics::{corpus_bleu, corpus_chrf};

#[test]
fn bleu_and_chrf_equal_sacrebleu() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("data/bleu_reference.json")).unwrap();
    let cases = golden["cases"].as_object().unwrap();
    assert!(cases.len() >= 8);
    for (name, case) in cases {
        let strs = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let hyps = strs(&case["hypotheses"]);
        let refs: Vec<Vec<String>> = case["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(strs)
            .collect();
        let bleu = corpus_bleu(&hyps, &refs).unwrap().score;
        let chrf = corpus_chrf(&hyps, &refs).unwrap().score;
        let (gb, gc) = (
            case["bleu"].as_f64().unwrap(),
            case["chrf"].as_f64().unwrap(),
        );
        assert!(
            (bleu - gb).abs() < 0.01,
            "{name}: BLEU {bleu} vs sacreBLEU {gb}"
        );
        assert!(
            (chrf - gc).abs() < 0.01,
            "{name}: chrF {chrf} vs sacreBLEU {gc}"
        );
    }
}

#[test]
fn metric_input_errors() {
    let hyps = vec!["a b".to_string()];
    assert!(corpus_bleu(&hyps, &Vec::<Vec<String>>::new()).is_err());
    assert!(corpus_bleu(&hyps, &[vec!["a".to_string(), "b".to_string()]]).is_err());
    assert!(corpus_chrf(&hyps, &[Vec::<String>::new()]).is_err());
    let perfect = corpus_bleu(&hyps, std::slice::from_ref(&hyps)).unwrap();
    assert!(perfect.score < 100.0, "two tokens have no 3-grams: BLEU 0");
    let same = vec!["the cat sat on the mat".to_string()];
    assert!(
        (corpus_bleu(&same, std::slice::from_ref(&same))
            .unwrap()
            .score
            - 100.0)
            .abs()
            < 1e-9
    );
    assert!(
        (corpus_chrf(&same, std::slice::from_ref(&same))
            .unwrap()
            .score
            - 100.0)
            .abs()
            < 1e-9
    );
}
