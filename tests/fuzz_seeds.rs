//! Seeds for the fuzz targets in `fuzz/`: valid inputs made by the library's own
//! writers where it has one (checkpoints, vectors, tokenizers, images). Each seed
//! must load through the loader its target fuzzes. With `TAPER_FUZZ_CORPUS=DIR`
//! (as `make fuzz` sets) they are written to `DIR/<target>/` for the fuzzer.

use std::io::Write;
use std::path::{Path, PathBuf};
use taper::nlp::{Tokenizer, TokenizerConfig, TokenizerKind, Vocab, WordVectors};
use taper::vision::datasets as vision;

/// Checks the seed loads, then writes it under `corpus/<target>/`.
fn put(corpus: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let loaded = match target {
        "idx" => vision::read_idx(&p).map(drop).map_err(|e| e.to_string()),
        "cifar" => vision::read_cifar_file(&p)
            .map(drop)
            .map_err(|e| e.to_string()),
        "digits_csv" => vision::load_digits(&p).map(drop).map_err(|e| e.to_string()),
        "regression_csv" => taper::regression::load_csv(&p, &Default::default())
            .map(drop)
            .map_err(|e| e.to_string()),
        "word_vectors" => WordVectors::load_text(&p)
            .map(drop)
            .map_err(|e| e.to_string()),
        "word_pairs" => taper::nlp::eval::load_word_pairs(&p)
            .map(|v| assert_eq!(v.len(), 2))
            .map_err(|e| e.to_string()),
        "tokenizer_json" => Tokenizer::load(&p).map(drop).map_err(|e| e.to_string()),
        "parallel_corpus" => taper::nlp::data::ParallelCorpus::read(&p, &Default::default())
            .map(drop)
            .map_err(|e| e.to_string()),
        "checkpoint_weights" => {
            taper::train::checkpoint::load_weights(&small_varmap(), &p).map_err(|e| e.to_string())
        }
        "checkpoint_state" => Ok(()), // checked where it is made
        "image" => taper::vision::transforms::open_image(&p)
            .map(drop)
            .map_err(|e| e.to_string()),
        other => panic!("no loader for target {other}"),
    };
    if let Err(e) = loaded {
        panic!("seed {target}/{name} does not load: {e}");
    }
}

fn small_varmap() -> candle_nn::VarMap {
    let vm = candle_nn::VarMap::new();
    let vb =
        candle_nn::VarBuilder::from_varmap(&vm, candle_core::DType::F32, &candle_core::Device::Cpu);
    candle_nn::linear(4, 3, vb.pp("fc")).unwrap();
    vm
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn encoded(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn seeds_load_and_are_written() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let scratch = tempfile::tempdir().unwrap();
    let tmp = scratch.path().to_path_buf();
    let corpus: PathBuf = std::env::var_os("TAPER_FUZZ_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.join("corpus"));
    let put = |target: &str, name: &str, bytes: &[u8]| put(&corpus, target, name, bytes);

    // IDX: a 3 x 4 x 4 image array and a label vector, raw and gzipped.
    let mut idx = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 4];
    idx.extend((0..48).map(|i| i as u8 * 5));
    put("idx", "images.idx", &idx);
    put("idx", "images.idx.gz", &gz(&idx));
    put("idx", "labels.idx", &[0, 0, 8, 1, 0, 0, 0, 3, 1, 7, 9]);

    // CIFAR-10: two records.
    let mut rec = Vec::new();
    for label in [3u8, 9] {
        rec.push(label);
        rec.extend((0..3072).map(|i| (i % 251) as u8));
    }
    put("cifar", "two.bin", &rec);

    // Digits: the first rows of the embedded set.
    let digits = std::fs::read(assets.join("digits.csv.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&digits[..]), &mut text)
        .unwrap();
    let head: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    put("digits_csv", "head.csv", head.as_bytes());
    put("digits_csv", "head.csv.gz", &gz(head.as_bytes()));

    // Regression CSV: iris rows under a header, and a small table with a named target.
    let t = std::fs::read_to_string(assets.join("iris.csv")).unwrap();
    let rows: String = t
        .lines()
        .skip(1)
        .take(5)
        .map(|l| format!("{l}\n"))
        .collect();
    put(
        "regression_csv",
        "iris.csv",
        format!("sl,sw,pl,pw,y\n{rows}").as_bytes(),
    );
    put(
        "regression_csv",
        "named_y.csv",
        b"a,b,y\n1,2.5,3\n-4e3,5,6\n",
    );

    // Word vectors through WordVectors::save_text.
    let vocab = Vocab::from_words(["the", "cat", "sat"].map(String::from)).unwrap();
    let v = WordVectors::new(vocab, 3, (0..9).map(|i| i as f32 * 0.25 - 1.0).collect()).unwrap();
    let p = tmp.join("vectors.txt");
    v.save_text(&p).unwrap();
    put("word_vectors", "three.txt", &std::fs::read(&p).unwrap());

    put(
        "word_pairs",
        "pairs.csv",
        b"Word 1,Word 2,Human (mean)\ncat,tiger,7.35\ntiger\tcat\t7.35\n# comment\n",
    );

    put(
        "parallel_corpus",
        "pairs.tsv",
        "Go.\tVa !\tCC-BY 2.0 (France)\nI am cold.\tJ'ai froid.\n\nHe is tall.\tIl est grand.\n"
            .as_bytes(),
    );

    // Tokenizers through Tokenizer::save, one per kind.
    let lines = [
        "the cat sat on the mat",
        "the dog sat on the log",
        "a cat and a dog",
    ];
    for (kind, name) in [
        (TokenizerKind::WordLevel, "word.json"),
        (TokenizerKind::Bpe, "bpe.json"),
        (TokenizerKind::WordPiece, "wordpiece.json"),
    ] {
        let cfg = TokenizerConfig {
            kind,
            vocab_size: 300,
            min_frequency: 1,
            ..Default::default()
        };
        let t = Tokenizer::train_from_texts(&cfg, lines.iter().copied()).unwrap();
        let p = tmp.join(name);
        t.save(&p).unwrap();
        put("tokenizer_json", name, &std::fs::read(&p).unwrap());
    }

    // Checkpoints through the trainer's own writer.
    let vm = small_varmap();
    let p = tmp.join("model.safetensors");
    taper::train::checkpoint::save_weights(&vm, &p).unwrap();
    put(
        "checkpoint_weights",
        "model.safetensors",
        &std::fs::read(&p).unwrap(),
    );
    let run = tmp.join("seed-run");
    let state = taper::train::checkpoint::TrainerState::default();
    let dir = taper::train::checkpoint::save(&run, "epoch-1", &vm, &[], &state, false).unwrap();
    assert!(taper::train::checkpoint::read(&run, "latest")
        .unwrap()
        .is_some());
    let mut both = std::fs::read(run.join("checkpoints/latest.json")).unwrap();
    both.push(b'\n');
    both.extend(std::fs::read(dir.join("state.json")).unwrap());
    put("checkpoint_state", "state.txt", &both);

    // Images: PNG, JPEG and GIF of a small gradient, and the embedded photo's header.
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(12, 9, |x, y| {
        image::Rgb([(x * 20) as u8, (y * 25) as u8, 128])
    }));
    put(
        "image",
        "small.png",
        &encoded(&img, image::ImageFormat::Png),
    );
    put(
        "image",
        "small.jpg",
        &encoded(&img, image::ImageFormat::Jpeg),
    );
    put(
        "image",
        "small.gif",
        &encoded(&img, image::ImageFormat::Gif),
    );
    let grey = image::DynamicImage::ImageLuma8(img.to_luma8());
    put(
        "image",
        "grey.png",
        &encoded(&grey, image::ImageFormat::Png),
    );
    let targets = std::fs::read_dir(&corpus).unwrap().count();
    assert_eq!(targets, 11, "one seed folder per fuzz target");
    println!("seeds written under {}", corpus.display());
}
