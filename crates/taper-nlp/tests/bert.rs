//! The BERT encoder and sentence embeddings: a tiny random BERT written as a
//! Hugging Face folder loads back exactly (on a fresh clone), bad model files
//! are typed errors naming the file and tensor, every parameter's gradient
//! matches central differences, and, where `../shared/models/all-MiniLM-L6-v2`
//! exists, the embeddings equal sentence-transformers' (reference values from
//! `tools/sentence_reference.py`).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use taper_nlp::bert::{l2_normalize, load_hf_weights, BertConfig, BertEncoder, Pooling};
use taper_nlp::SentenceEncoder;
use taper_nn::init::seeded_var_builder;
use taper_nn::Mode;

fn tiny(varmap: &VarMap, dtype: DType) -> (BertConfig, BertEncoder) {
    let cfg = BertConfig::tiny(40);
    let enc = BertEncoder::new(&cfg, seeded_var_builder(varmap, 3, dtype, &Device::Cpu)).unwrap();
    (cfg, enc)
}

/// The varmap's tensors under Hugging Face names, with the extras real files
/// carry (`position_ids`, the pooler), optionally with a `bert.` prefix and
/// the old `gamma`/`beta` spelling.
fn hf_tensors(varmap: &VarMap, old_style: bool) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let mut n = name.clone();
        if old_style {
            n = format!("bert.{n}");
            if n.contains("LayerNorm") {
                n = n
                    .replace("LayerNorm.weight", "LayerNorm.gamma")
                    .replace("LayerNorm.bias", "LayerNorm.beta");
            }
        }
        out.insert(n, var.as_tensor().clone());
    }
    let pos: Vec<i64> = (0..64).collect();
    out.insert(
        "embeddings.position_ids".into(),
        Tensor::from_vec(pos, (1, 64), &Device::Cpu).unwrap(),
    );
    out.insert(
        "pooler.dense.weight".into(),
        Tensor::zeros((16, 16), DType::F32, &Device::Cpu).unwrap(),
    );
    out
}

fn write_folder(dir: &Path, cfg: &BertConfig, tensors: &HashMap<String, Tensor>) {
    std::fs::write(dir.join("config.json"), serde_json::to_string(cfg).unwrap()).unwrap();
    candle_core::safetensors::save(tensors, dir.join("model.safetensors")).unwrap();
}

fn input() -> (Tensor, Tensor) {
    let ids = Tensor::new(&[[2u32, 7, 9, 11, 3], [2, 5, 3, 0, 0]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1u32, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &Device::Cpu).unwrap();
    (ids, mask)
}

/// The encoder's hidden states as one flat list.
fn hidden(enc: &BertEncoder, ids: &Tensor, mask: &Tensor) -> Vec<f32> {
    let h = enc.forward_t(ids, None, mask, &Mode::eval()).unwrap();
    h.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn a_saved_tiny_bert_loads_back_exactly_in_either_spelling() {
    let varmap = VarMap::new();
    let (cfg, enc) = tiny(&varmap, DType::F32);
    let (ids, mask) = input();
    let want = hidden(&enc, &ids, &mask);
    for old_style in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), &cfg, &hf_tensors(&varmap, old_style));
        let vm = VarMap::new();
        let loaded = BertEncoder::load(dir.path(), &vm, &Device::Cpu).unwrap();
        let got = hidden(&loaded, &ids, &mask);
        assert_eq!(got, want, "old_style {old_style}");
    }
    // Padding changes nothing for the real tokens: the second row alone, unpadded.
    let ids1 = Tensor::new(&[[2u32, 5, 3]], &Device::Cpu).unwrap();
    let alone = hidden(&enc, &ids1, &ids1.ones_like().unwrap());
    let padded = hidden(&enc, &ids, &mask);
    // Row 1's first three positions in the padded batch of 2 x 5 tokens x 16.
    let row1 = &padded[5 * 16..5 * 16 + 3 * 16];
    let diff = alone
        .iter()
        .zip(row1)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "padding leaked into real tokens: {diff}");
}

fn load_err(dir: &Path) -> String {
    match BertEncoder::load(dir, &VarMap::new(), &Device::Cpu) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_model_folders_are_typed_errors_naming_the_file() {
    let varmap = VarMap::new();
    let (cfg, _) = tiny(&varmap, DType::F32);
    let good = hf_tensors(&varmap, false);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let e = load_err(d);
    assert!(e.contains("config.json"), "{e}");
    let e = match SentenceEncoder::load(d, &Device::Cpu) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("config.json") && e.contains("make models"),
        "{e}"
    );

    std::fs::write(
        d.join("config.json"),
        r#"{"model_type": "gpt2", "n_embd": 768}"#,
    )
    .unwrap();
    let e = load_err(d);
    assert!(e.contains("config.json") && e.contains("gpt2"), "{e}");

    let mut odd = cfg.clone();
    odd.num_attention_heads = 3;
    std::fs::write(d.join("config.json"), serde_json::to_string(&odd).unwrap()).unwrap();
    let e = load_err(d);
    assert!(e.contains("heads"), "{e}");

    write_folder(d, &cfg, &good);
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(d);
    assert!(e.contains("model.safetensors"), "{e}");

    let mut missing = good.clone();
    missing.remove("encoder.layer.1.output.dense.weight");
    write_folder(d, &cfg, &missing);
    let e = load_err(d);
    assert!(
        e.contains("encoder.layer.1.output.dense.weight") && e.contains("missing"),
        "{e}"
    );

    let mut extra = good.clone();
    extra.insert(
        "encoder.layer.7.output.dense.weight".into(),
        Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
    );
    write_folder(d, &cfg, &extra);
    let e = load_err(d);
    assert!(e.contains("encoder.layer.7.output.dense.weight"), "{e}");

    let mut shaped = good.clone();
    shaped.insert(
        "embeddings.word_embeddings.weight".into(),
        Tensor::zeros((41, 16), DType::F32, &Device::Cpu).unwrap(),
    );
    write_folder(d, &cfg, &shaped);
    let e = load_err(d);
    assert!(
        e.contains("embeddings.word_embeddings.weight") && e.contains("41"),
        "{e}"
    );
    // Nothing was changed by the failed loads.
    let vm = VarMap::new();
    let (_, _) = tiny(&vm, DType::F32);
    let before = vm.data().lock().unwrap()["embeddings.word_embeddings.weight"]
        .as_tensor()
        .to_vec2::<f32>()
        .unwrap();
    assert!(load_hf_weights(&vm, &d.join("model.safetensors"), &Device::Cpu).is_err());
    let after = vm.data().lock().unwrap()["embeddings.word_embeddings.weight"]
        .as_tensor()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(before, after);

    let long = Tensor::zeros((1, 65), DType::U32, &Device::Cpu).unwrap();
    let (_, enc) = tiny(&VarMap::new(), DType::F32);
    let e = enc
        .forward_t(&long, None, &long.ones_like().unwrap(), &Mode::eval())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("65") && e.contains("64"), "{e}");
}

/// Every parameter of a two-layer encoder (embeddings, attention, GELU
/// feed-forward, layer norms) and the three poolings against central
/// differences, in f64.
#[test]
fn encoder_and_pooling_have_exact_gradients() {
    use taper_nn::gradcheck::{check_gradients, check_param_gradients};
    let varmap = VarMap::new();
    let (_, enc) = tiny(&varmap, DType::F64);
    let (ids, mask) = input();
    let w = Tensor::randn(0f64, 1.0, (2, 5, 16), &Device::Cpu).unwrap();
    let r = check_param_gradients(
        || {
            let h = enc
                .forward_t(&ids, None, &mask, &Mode::eval())
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            (h * &w)?.sum_all()
        },
        &varmap.all_vars(),
        1e-6,
        4,
    )
    .unwrap();
    assert!(r.max_numeric > 1e-4 && r.passed(1e-6), "{r:?}");
    let x = Tensor::randn(0f64, 1.0, (2, 5, 3), &Device::Cpu).unwrap();
    let wp = Tensor::randn(0f64, 1.0, (2, 3), &Device::Cpu).unwrap();
    for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Max] {
        let r = check_gradients(
            |v| {
                let p = pooling
                    .apply(&v[0], &mask)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                let p = l2_normalize(&p).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                (p * &wp)?.sum_all()
            },
            std::slice::from_ref(&x),
            1e-6,
            30,
        )
        .unwrap();
        assert!(r.passed(1e-6), "{pooling:?}: {r:?}");
    }
    let g = check_gradients(
        |v| taper_nn::gelu(&v[0])?.sum_all(),
        &[Tensor::new(&[-3f64, -0.5, 0.0, 0.7, 2.5], &Device::Cpu).unwrap()],
        1e-6,
        5,
    )
    .unwrap();
    // candle's erf is accurate to about 1e-7, hence the tolerance.
    assert!(g.passed(1e-6), "{g:?}");
}

fn model_dir() -> Option<PathBuf> {
    let root = std::env::var_os("TAPER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
        });
    let dir = root.join("all-MiniLM-L6-v2");
    dir.join("model.safetensors").is_file().then_some(dir)
}

#[test]
fn minilm_embeddings_equal_sentence_transformers() {
    let Some(dir) = model_dir() else {
        eprintln!(
            "skipped: all-MiniLM-L6-v2 not found (TAPER_MODELS or ../shared/models; `make models`)"
        );
        return;
    };
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/minilm_reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let sentences: Vec<&str> = reference["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let model = SentenceEncoder::load(&dir, &Device::Cpu).unwrap();
    assert_eq!(
        model.max_seq_length(),
        reference["max_seq_length"].as_u64().unwrap() as usize
    );
    for batch in [1, 3, 8] {
        let got: Vec<Vec<f32>> = model.embed(&sentences, batch).unwrap().to_vec2().unwrap();
        for (i, (g, r)) in got
            .iter()
            .zip(reference["embeddings"].as_array().unwrap())
            .enumerate()
        {
            let r: Vec<f64> = r
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let max_diff = g
                .iter()
                .zip(&r)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            let dot: f64 = g.iter().zip(&r).map(|(a, b)| *a as f64 * b).sum();
            let norms = g.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt()
                * r.iter().map(|b| b * b).sum::<f64>().sqrt();
            let cos = dot / norms.max(1e-30);
            assert!(
                max_diff <= 1e-4 && (cos >= 0.99999 || norms == 0.0),
                "batch {batch}, sentence {i} ({:?}): max diff {max_diff:e}, cosine {cos}",
                sentences[i].chars().take(30).collect::<String>()
            );
        }
    }
}

/// The fused f32 GELU against the exact f64 one (candle's libm erf), forward
/// and backward.
#[test]
fn fused_f32_gelu_matches_the_exact_one() {
    let xs: Vec<f64> = (0..2001).map(|i| -8.0 + i as f64 * 0.008).collect();
    let x64 = candle_core::Var::new(xs.as_slice(), &Device::Cpu).unwrap();
    let x32 = candle_core::Var::new(
        xs.iter().map(|&v| v as f32).collect::<Vec<_>>().as_slice(),
        &Device::Cpu,
    )
    .unwrap();
    let (y64, y32) = (taper_nn::gelu(&x64).unwrap(), taper_nn::gelu(&x32).unwrap());
    let g64 = y64.sum_all().unwrap().backward().unwrap();
    let g32 = y32.sum_all().unwrap().backward().unwrap();
    let (a, b): (Vec<f64>, Vec<f32>) = (y64.to_vec1().unwrap(), y32.to_vec1().unwrap());
    let (ga, gb): (Vec<f64>, Vec<f32>) = (
        g64.get(&x64).unwrap().to_vec1().unwrap(),
        g32.get(&x32).unwrap().to_vec1().unwrap(),
    );
    for i in 0..xs.len() {
        assert!(
            (a[i] - b[i] as f64).abs() < 1e-6,
            "gelu({}) {} vs {}",
            xs[i],
            a[i],
            b[i]
        );
        assert!(
            (ga[i] - gb[i] as f64).abs() < 1e-6,
            "gelu'({}) {} vs {}",
            xs[i],
            ga[i],
            gb[i]
        );
    }
}

/// Weights that record no graph take the fused attention kernel in evaluation;
/// trainable ones the separate ops (whose backward passes exist). Both give the
/// same hidden states, padding included, and training mode keeps the graph.
#[test]
fn fused_attention_encoder_equals_the_trainable_one() {
    let varmap = VarMap::new();
    let (cfg, enc) = tiny(&varmap, DType::F32);
    let detached: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    let frozen = BertEncoder::new(
        &cfg,
        candle_nn::VarBuilder::from_tensors(detached, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let (ids, mask) = input();
    let (want, got) = (hidden(&enc, &ids, &mask), hidden(&frozen, &ids, &mask));
    let diff = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "fused and separate attention differ by {diff}");
    // The trainable encoder's output still has gradients.
    let h = enc.forward_t(&ids, None, &mask, &Mode::eval()).unwrap();
    let grads = h.sum_all().unwrap().backward().unwrap();
    let any = varmap.all_vars();
    assert!(any.iter().all(|v| grads.get(v).is_some()));
}
