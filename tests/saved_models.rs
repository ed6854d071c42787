//! A trained run is a model: for each domain a small model is trained through
//! the public API and saved, then a fresh process (this test binary run again,
//! with `TAPER_SAVED_RUNS` naming the runs) loads each run through the public
//! API alone and predicts. Both processes' predictions must be identical, bit
//! for bit: the image classifier's top classes and probabilities, the DCGAN
//! generator's samples, the translator's translations, the word vectors'
//! neighbours, and the regression models' predictions.

use candle_core::{Device, Tensor};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use taper::train::data::{DataLoader, LoaderConfig, TensorDataset};
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::{Optimizers, Trainer, TrainerConfig};

const ENV: &str = "TAPER_SAVED_RUNS";

fn quiet(epochs: usize, run: &Path) -> TrainerConfig {
    TrainerConfig {
        epochs,
        run_dir: Some(run.to_path_buf()),
        seed: 5,
        progress: false,
        verbose: false,
        ..Default::default()
    }
}

/// Exact text of an f32 tensor's values (Rust prints the shortest text that
/// reads back as the same f32).
fn values(t: &Tensor) -> Vec<String> {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.iter().map(|x| format!("{x:?}")).collect()
}

const SENTENCES: [&str; 4] = [
    "14 March 2015",
    "2 jan 1999",
    "Sunday, 7 June 2020",
    "12/31/1987",
];

fn digits_test_images() -> Tensor {
    let d = taper::vision::datasets::builtin("digits", Path::new("."), 42).unwrap();
    d.test_x.narrow(0, 0, 12).unwrap()
}

fn regression_rows() -> (taper::regression::Dataset, taper::regression::Dataset) {
    let ds = taper::regression::load_breast_cancer().unwrap();
    taper::regression::train_test_split(&ds, 0.2, 42).unwrap()
}

fn diabetes_rows() -> (taper::regression::Dataset, taper::regression::Dataset) {
    let ds = taper::regression::load_diabetes().unwrap();
    taper::regression::train_test_split(&ds, 0.2, 42).unwrap()
}

/// What each run predicts, computed from the loaded runs (the fresh process)
/// or from the models still in memory (`in_memory`).
fn predictions(dir: &Path, in_memory: Option<&InMemory>) -> Value {
    let dev = Device::Cpu;
    let images = digits_test_images();
    let classify = |m: &taper::vision::ImageClassifier| -> Value {
        (0..images.dim(0).unwrap())
            .map(|i| {
                json!(m
                    .predict_tensor(&images.get(i).unwrap(), 3)
                    .unwrap()
                    .iter()
                    .map(|(n, p)| format!("{n}:{p:?}"))
                    .collect::<Vec<_>>())
            })
            .collect()
    };
    let (classifier, samples, translations, neighbours, logistic, linear) = match in_memory {
        Some(m) => (
            classify(&m.classifier),
            values(&m.generator.sample(6, None, 11).unwrap()),
            m.translations.clone(),
            m.vectors.most_similar("cat", 3).unwrap(),
            m.logistic.predict_proba(&regression_rows().1.x).unwrap(),
            m.linear.predict(&diabetes_rows().1.x).unwrap(),
        ),
        None => {
            let classifier =
                taper::vision::ImageClassifier::load(&dir.join("classifier"), &dev).unwrap();
            let generator =
                taper::vision::models::Generator::load(&dir.join("dcgan"), &dev).unwrap();
            let translator =
                taper::nlp::seq2seq::Translator::load(&dir.join("translate"), &dev).unwrap();
            let beam = taper::nlp::seq2seq::BeamConfig {
                width: 3,
                alpha: 1.0,
                max_len: translator.spec.max_tgt_len,
            };
            let vectors = taper::nlp::WordVectors::load(&dir.join("word2vec")).unwrap();
            (
                classify(&classifier),
                values(&generator.sample(6, None, 11).unwrap()),
                SENTENCES
                    .iter()
                    .map(|s| translator.translate(s, &beam).unwrap())
                    .collect(),
                vectors.most_similar("cat", 3).unwrap(),
                taper::regression::LogisticModel::load_run(dir.join("logistic"))
                    .unwrap()
                    .predict_proba(&regression_rows().1.x)
                    .unwrap(),
                taper::regression::LinearModel::load_run(dir.join("linear"))
                    .unwrap()
                    .predict(&diabetes_rows().1.x)
                    .unwrap(),
            )
        }
    };
    let exact = |v: &[f64]| v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>();
    json!({
        "classifier": classifier,
        "samples": samples,
        "translations": translations,
        "neighbours": neighbours.iter().map(|(w, s)| format!("{w}:{s:?}")).collect::<Vec<_>>(),
        "logistic": exact(logistic.as_slice()),
        "linear": exact(linear.as_slice()),
    })
}

struct InMemory {
    classifier: taper::vision::ImageClassifier,
    generator: taper::vision::models::Generator,
    translations: Vec<String>,
    vectors: taper::nlp::WordVectors,
    logistic: taper::regression::LogisticModel,
    linear: taper::regression::LinearModel,
}

fn train_all(dir: &Path) -> InMemory {
    let dev = Device::Cpu;
    // Vision: a LeNet on the embedded digits, normalised, with its class names.
    let d = taper::vision::datasets::builtin("digits", Path::new("."), 42).unwrap();
    let norm = taper::vision::transforms::Normalize::mnist();
    let pre = taper::vision::Preprocessing::new(1, (8, 8), d.classes.clone()).with_normalize(&norm);
    let cfg = taper::vision::ClassifierConfig::for_images("lenet", 1, (8, 8), 10).unwrap();
    let mut classifier = taper::vision::ImageClassifier::new(cfg, pre, 3, &dev).unwrap();
    let x = norm.apply(&d.train_x).unwrap();
    let train = DataLoader::new(
        TensorDataset::new(vec![x, d.train_y.clone()], &dev).unwrap(),
        LoaderConfig::train(64, 3),
    )
    .unwrap();
    let mut opt = Optimizers::single(Adam::new(
        named_vars(classifier.varmap(), ""),
        AdamConfig::adamw(3e-3),
    ));
    Trainer::new(quiet(2, &dir.join("classifier")))
        .fit(&mut classifier, &mut opt, &train, None)
        .unwrap();

    // Vision: one epoch of the DCGAN on the digits.
    use taper::vision::models::{dcgan::GanOptimConfig, Dcgan, DcganConfig};
    let mut gan = Dcgan::new(DcganConfig::digits(), &candle_nn::VarMap::new(), 4, &dev).unwrap();
    let mut opt = gan.optimizers(GanOptimConfig::default());
    let gan_data = TensorDataset::new(
        vec![d.train_x.affine(2.0, -1.0).unwrap(), d.train_y.clone()],
        &dev,
    )
    .unwrap();
    let loader = DataLoader::new(
        gan_data,
        LoaderConfig {
            drop_last: true,
            ..LoaderConfig::train(64, 4)
        },
    )
    .unwrap();
    Trainer::new(quiet(1, &dir.join("dcgan")))
        .fit(&mut gan, &mut opt, &loader, None)
        .unwrap();

    // NLP: a small LSTM translator of dates, one epoch.
    use taper::nlp::seq2seq::{
        save_run, BeamConfig, ModelSpec, PairSplits, Seq2SeqTrainer, TeacherForcing,
    };
    let pairs = taper::nlp::data::generate_dates(600, 6);
    let splits = PairSplits::new(&pairs, 0.1, 0.1, 6).unwrap();
    let (src, tgt) = splits.codecs(true, 0, 1).unwrap();
    let (ls, lt) = splits.longest(&src, &tgt).unwrap();
    let spec = ModelSpec {
        task: "dates".into(),
        model: "lstm".into(),
        cell: "gru".into(),
        attention: "additive".into(),
        bidirectional: false,
        emb: 12,
        hidden: 24,
        layers: 1,
        heads: 2,
        ffn: 32,
        positions: "sinusoidal".into(),
        dropout: 0.0,
        max_src_len: ls + 8,
        max_tgt_len: lt + 9,
        src_vocab: src.len(),
        tgt_vocab: tgt.len(),
        src_fingerprint: src.fingerprint(),
        tgt_fingerprint: tgt.fingerprint(),
        reversed: false,
    };
    let run = dir.join("translate");
    save_run(&run, &spec, &src, &tgt).unwrap();
    let enc = splits
        .encode(&src, &tgt, spec.max_src_len, spec.max_tgt_len - 1)
        .unwrap();
    let varmap = candle_nn::VarMap::new();
    let mut task = Seq2SeqTrainer {
        model: spec.build(&varmap, 6, &dev).unwrap(),
        varmap: varmap.clone(),
        label_smoothing: 0.0,
        teacher_forcing: TeacherForcing {
            start: 1.0,
            end: 1.0,
            steps: 1,
        },
        seed: 6,
        valid_bleu: false,
    };
    let batches = taper::nlp::data::BucketedPairs::new(enc.train.clone(), 32, 6, &dev);
    let loader = DataLoader::new(batches, LoaderConfig::train(1, 6)).unwrap();
    let mut opt = Optimizers::single(Adam::new(named_vars(&varmap, ""), AdamConfig::adamw(3e-3)));
    Trainer::new(quiet(1, &run))
        .fit(&mut task, &mut opt, &loader, None)
        .unwrap();
    let beam = BeamConfig {
        width: 3,
        alpha: 1.0,
        max_len: spec.max_tgt_len,
    };
    let ids: Vec<Vec<u32>> = SENTENCES.iter().map(|s| src.encode(s).unwrap()).collect();
    let out = taper::nlp::seq2seq::decode_corpus(
        task.model.as_ref(),
        &ids,
        Some(&beam),
        beam.max_len,
        &dev,
    )
    .unwrap();
    let translations = out.iter().map(|o| tgt.decode(o)).collect();

    // NLP: word vectors of a small generated corpus.
    let text: String = (0..400)
        .map(|i| {
            [
                "the cat sat on the mat",
                "a dog ran in the park",
                "the cat and the dog play",
            ][i % 3]
                .to_string()
                + "\n"
        })
        .collect();
    let corpus = taper::nlp::Corpus::from_text("toy", text, &Default::default()).unwrap();
    let w2v = taper::nlp::Word2VecConfig {
        dim: 16,
        min_count: 1,
        epochs: 2,
        threads: 1,
        seed: 7,
        ..Default::default()
    };
    let prep = taper::nlp::word2vec::PreparedCorpus::new(&corpus, &w2v).unwrap();
    let (vectors, _) = taper::nlp::word2vec::train_native(&prep, &w2v).unwrap();
    vectors.save_run(&dir.join("word2vec"), &w2v).unwrap();

    // Regression: logistic (Newton) on breast cancer, OLS on diabetes.
    let logistic = taper::regression::LogisticRegression::new()
        .fit_dataset(&regression_rows().0)
        .unwrap();
    logistic.save_run(dir.join("logistic")).unwrap();
    let linear = taper::regression::LinearRegression::ols()
        .fit_dataset(&diabetes_rows().0)
        .unwrap();
    linear.save_run(dir.join("linear")).unwrap();
    InMemory {
        classifier,
        generator: gan.gen.clone(),
        translations,
        vectors,
        logistic,
        linear,
    }
}

#[test]
fn saved_runs_predict_the_same_in_a_fresh_process() {
    if let Some(dir) = std::env::var_os(ENV) {
        // The fresh process: load every run and write what it predicts.
        let dir = Path::new(&dir);
        let got = predictions(dir, None);
        std::fs::write(dir.join("fresh.json"), got.to_string()).unwrap();
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let models = train_all(tmp.path());
    let want = predictions(tmp.path(), Some(&models));
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "saved_runs_predict_the_same_in_a_fresh_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ENV, tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fresh process failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("fresh.json")).unwrap())
            .unwrap();
    for key in [
        "classifier",
        "samples",
        "translations",
        "neighbours",
        "logistic",
        "linear",
    ] {
        assert_eq!(
            got[key], want[key],
            "{key}: the loaded run predicts otherwise"
        );
        assert!(
            want[key].as_array().is_some_and(|a| !a.is_empty()),
            "{key}: nothing predicted"
        );
    }
    // The classifier predicts by class name, and it learnt something in two epochs.
    let top: Vec<String> = got["classifier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v[0].as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let labels: Vec<u32> = taper::vision::datasets::builtin("digits", Path::new("."), 42)
        .unwrap()
        .test_y
        .narrow(0, 0, 12)
        .unwrap()
        .to_vec1()
        .unwrap();
    let right = top
        .iter()
        .zip(&labels)
        .filter(|(t, l)| **t == l.to_string())
        .count();
    assert!(
        right >= 8,
        "{right} of 12 digits right: {top:?} vs {labels:?}"
    );
}

/// A run of one family loaded as another, or a card of a newer format, is a
/// typed error naming `model.json`.
#[test]
fn a_run_of_another_family_or_a_newer_format_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("logistic");
    let (train, _) = regression_rows();
    taper::regression::LogisticRegression::new()
        .fit_dataset(&train)
        .unwrap()
        .save_run(&run)
        .unwrap();
    let msg = |e: String| {
        assert!(e.contains("model.json"), "{e}");
        e
    };
    let e = msg(taper::regression::LinearModel::load_run(&run)
        .err()
        .unwrap()
        .to_string());
    assert!(
        e.contains("regression.logistic") && e.contains("regression.linear"),
        "{e}"
    );
    let e = msg(taper::vision::ImageClassifier::load(&run, &Device::Cpu)
        .err()
        .unwrap()
        .to_string());
    assert!(e.contains("vision.classifier"), "{e}");
    let e = msg(taper::nlp::WordVectors::load(&run)
        .err()
        .unwrap()
        .to_string());
    assert!(e.contains("nlp.word2vec"), "{e}");
    let card = run.join("model.json");
    let text = std::fs::read_to_string(&card)
        .unwrap()
        .replace("\"format\": 1", "\"format\": 99");
    std::fs::write(&card, text).unwrap();
    let e = msg(taper::regression::LogisticModel::load_run(&run)
        .err()
        .unwrap()
        .to_string());
    assert!(e.contains("99"), "{e}");
    let missing = tmp.path().join("nothing-here");
    let e = taper::vision::models::Generator::load(&missing, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nothing-here"), "{e}");
}
