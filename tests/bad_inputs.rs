//! The bad-input matrix: malformed files handed to every loader of every crate.
//!
//! Each row writes one damaged input, calls the public loader a user would call,
//! and requires an error (never a panic, never success) whose message names the
//! file and says what is wrong. The table is mirrored in `docs/RELIABILITY.md`;
//! `cargo test --release --test bad_inputs -- --nocapture` prints it.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use taper::regression::{CsvOptions, LinearModel, LinearRegression};
use taper::train::checkpoint;

/// One malformed input: what it is, the file the error must name, the words
/// that must appear in the message, and the call that must fail.
struct Case {
    crate_name: &'static str,
    input: &'static str,
    file: PathBuf,
    expect: &'static [&'static str],
    run: Box<dyn FnOnce() -> Result<(), String>>,
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_header(dims: &[u32]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b
}

fn idx(dims: &[u32], fill: u8) -> Vec<u8> {
    let mut b = idx_header(dims);
    let n: u32 = dims.iter().product();
    b.extend(std::iter::repeat_n(fill, n as usize));
    b
}

/// An MNIST folder with the given image and label files (raw, not gzipped).
fn mnist_dir(dir: &Path, name: &str, images: &[u8], labels: &[u8]) -> PathBuf {
    let d = dir.join(name);
    write(&d, "t10k-images-idx3-ubyte", images);
    write(&d, "t10k-labels-idx1-ubyte", labels);
    d
}

fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A PNG whose header claims `w` x `h` pixels, with a valid header CRC and
/// almost no pixel data: the decoder must refuse before allocating.
fn huge_png(w: u32, h: u32) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    b.extend_from_slice(&13u32.to_be_bytes());
    b.extend_from_slice(&ihdr);
    b.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(b"IEND");
    b.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    b
}

/// [`huge_png`] with an RGBA colour type (4 bytes a pixel) and an empty IDAT
/// chunk, so that the header reads whole and only the size is wrong.
fn huge_png_rgba(w: u32, h: u32) -> Vec<u8> {
    let mut b = huge_png(w, h);
    // IHDR data starts at byte 16: width, height, depth, then the colour type.
    b[25] = 6;
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b.truncate(33);
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(b"IDAT");
    b.extend_from_slice(&crc32(b"IDAT").to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(b"IEND");
    b.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    b
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A small model's varmap (two named tensors) for checkpoint cases.
fn small_model(out: usize) -> VarMap {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    candle_nn::linear(4, out, vb.pp("fc")).unwrap();
    vm
}

fn err_string<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<(), String> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn cases(dir: &Path) -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    macro_rules! case {
        ($krate:expr, $input:expr, $file:expr, [$($w:expr),*], $run:expr) => {
            v.push(Case {
                crate_name: $krate,
                input: $input,
                file: $file.clone(),
                expect: &[$($w),*],
                run: Box::new($run),
            })
        };
    }
    use taper::vision::datasets as vds;

    // --- taper-vision: IDX / MNIST ---
    let p = write(dir, "trunc.idx", &idx(&[10, 28, 28], 0)[..500]);
    case!(
        "vision",
        "IDX truncated data",
        p,
        ["need", "truncated"],
        move || { err_string(vds::read_idx(&p)) }
    );
    let mut bytes = idx(&[2, 2], 0);
    bytes[0] = 0x1f;
    bytes[1] = 0x00;
    let p = write(dir, "magic.idx", &bytes);
    case!("vision", "IDX wrong magic", p, ["magic"], move || {
        err_string(vds::read_idx(&p))
    });
    let p = write(dir, "huge.idx", &idx_header(&[60_000, 60_000, 60_000]));
    case!(
        "vision",
        "IDX header counts far larger than the file",
        p,
        ["need", "file has 0"],
        move || err_string(vds::read_idx(&p))
    );
    let p = write(dir, "empty.idx", b"");
    case!("vision", "IDX empty file", p, ["too short"], move || {
        err_string(vds::read_idx(&p))
    });
    let mut bytes = gz(&idx(&[100, 28, 28], 7));
    let n = bytes.len();
    bytes.truncate(n / 2);
    let p = write(dir, "cut.idx.gz", &bytes);
    case!("vision", "IDX gzip cut in half", p, ["gzip"], move || {
        err_string(vds::read_idx(&p))
    });
    let mut bytes = vec![0x1f, 0x8b];
    bytes.extend_from_slice(b"this is not deflate data at all");
    let p = write(dir, "garbage.idx.gz", &bytes);
    case!(
        "vision",
        "IDX gzip magic then garbage",
        p,
        ["gzip"],
        move || { err_string(vds::read_idx(&p)) }
    );
    let d = mnist_dir(dir, "mnist_labels", &idx(&[3, 28, 28], 0), &{
        let mut l = idx(&[3], 1);
        *l.last_mut().unwrap() = 12;
        l
    });
    let lp = d.join("t10k-labels-idx1-ubyte");
    case!(
        "vision",
        "MNIST label out of range (12)",
        lp,
        ["label 12"],
        move || { err_string(vds::load_mnist(&d, vds::Split::Test)) }
    );
    let d = mnist_dir(dir, "mnist_count", &idx(&[3, 28, 28], 0), &idx(&[5], 1));
    let lp = d.join("t10k-labels-idx1-ubyte");
    case!(
        "vision",
        "MNIST more labels than images",
        lp,
        ["labels for 3 images"],
        move || err_string(vds::load_mnist(&d, vds::Split::Test))
    );
    let d = mnist_dir(dir, "mnist_dims", &idx(&[3, 784], 0), &idx(&[3], 1));
    let ip = d.join("t10k-images-idx3-ubyte");
    case!(
        "vision",
        "MNIST images with wrong dimensions (N, 784)",
        ip,
        ["expected 3 dimensions"],
        move || err_string(vds::load_mnist(&d, vds::Split::Test))
    );
    let d = dir.join("mnist_missing");
    std::fs::create_dir_all(&d).unwrap();
    case!(
        "vision",
        "MNIST folder without its files",
        d,
        ["missing", "make data"],
        move || err_string(vds::load_mnist(&d, vds::Split::Test))
    );

    // --- taper-vision: CIFAR, digits CSV ---
    let p = write(dir, "short.bin", &vec![3u8; 3073 * 2 - 5]);
    case!(
        "vision",
        "CIFAR-10 file not a whole number of records",
        p,
        ["whole number", "records"],
        move || err_string(vds::read_cifar_file(&p))
    );
    let mut rec = vec![0u8; 3073];
    rec[0] = 11;
    let p = write(dir, "label.bin", &rec);
    case!(
        "vision",
        "CIFAR-10 label out of range (11)",
        p,
        ["label 11"],
        move || err_string(vds::read_cifar_file(&p))
    );
    let row: String = (0..65).map(|_| "1").collect::<Vec<_>>().join(",");
    let p = write(
        dir,
        "ragged_digits.csv",
        format!("{row}\n1,2,3\n").as_bytes(),
    );
    case!(
        "vision",
        "digits CSV ragged row",
        p,
        ["line 2", "expected 65"],
        move || err_string(vds::load_digits(&p))
    );
    let bad_row = format!("{},x\n", (0..64).map(|_| "0").collect::<Vec<_>>().join(","));
    let p = write(dir, "nan_digits.csv", bad_row.as_bytes());
    case!(
        "vision",
        "digits CSV non-numeric cell",
        p,
        ["line 1", "not a number"],
        move || err_string(vds::load_digits(&p))
    );
    let bad_row = format!(
        "{},3\n",
        (0..64).map(|_| "99").collect::<Vec<_>>().join(",")
    );
    let p = write(dir, "range_digits.csv", bad_row.as_bytes());
    case!(
        "vision",
        "digits CSV pixel out of range",
        p,
        ["out of range"],
        move || err_string(vds::load_digits(&p))
    );

    // --- taper-vision: images ---
    use taper::vision::transforms::open_image;
    let p = write(dir, "zero.png", b"");
    case!("vision", "zero-byte image", p, ["empty"], move || {
        err_string(open_image(&p))
    });
    let mut bytes = png_bytes(16, 16);
    let n = bytes.len();
    bytes.truncate(n - 30);
    let p = write(dir, "cut.png", &bytes);
    case!("vision", "truncated PNG", p, ["cannot decode"], move || {
        err_string(open_image(&p))
    });
    let p = write(dir, "huge.png", &huge_png_rgba(1_000_000, 1_000_000));
    case!(
        "vision",
        "PNG header claiming 1,000,000 x 1,000,000 pixels",
        p,
        ["exceeds limit"],
        move || err_string(open_image(&p))
    );
    let p = write(dir, "text.jpg", b"hello, I am not an image\n");
    case!(
        "vision",
        "text file named .jpg",
        p,
        ["unreadable image header"],
        move || err_string(open_image(&p))
    );
    let root = dir.join("folder_bad");
    write(&root, "cat/ok.png", &png_bytes(8, 8));
    let bad = write(&root, "dog/broken.png", b"\x89PNG\r\n\x1a\nbroken");
    case!(
        "vision",
        "image folder with a corrupt file",
        bad,
        ["broken.png"],
        move || err_string(vds::ImageFolder::open(&root, 3, vds::OnBadFile::Fail))
    );
    // Issue 21: a folder holding an image whose decoding needs over 512 MiB
    // (12000 x 12000 RGBA, header only) is refused when opened, not mid-epoch.
    let root = dir.join("folder_huge");
    write(&root, "cat/ok.png", &png_bytes(8, 8));
    let huge = write(&root, "dog/huge.png", &huge_png_rgba(12000, 12000));
    case!(
        "vision",
        "image folder with an image too large to decode (Fail)",
        huge,
        ["549 MiB to decode", "512 MiB limit"],
        move || err_string(vds::ImageFolder::open(&root, 3, vds::OnBadFile::Fail))
    );
    let root = dir.join("folder_empty");
    std::fs::create_dir_all(&root).unwrap();
    case!(
        "vision",
        "image folder without class folders",
        root,
        ["no class folders"],
        move || err_string(vds::ImageFolder::open(&root, 3, vds::OnBadFile::Fail))
    );

    let gan = dir.join("gan.safetensors");
    {
        let t = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
        let tensors = std::collections::HashMap::from([("gen.fc.weight".to_string(), t)]);
        candle_core::safetensors::save(&tensors, &gan).unwrap();
    }
    let g = gan.clone();
    case!(
        "vision",
        "GAN checkpoint with the discriminator missing",
        gan,
        ["discriminator"],
        move || err_string(taper::vision::models::dcgan::check_gan_weights(&g))
    );

    // --- taper-regression: CSV and saved models ---
    let opts = CsvOptions::default();
    let o = opts.clone();
    let p = write(dir, "empty.csv", b"");
    case!(
        "regression",
        "CSV empty file",
        p,
        ["no data rows"],
        move || { err_string(taper::regression::load_csv(&p, &o)) }
    );
    let o = opts.clone();
    let p = write(dir, "header_only.csv", b"a,b,y\n");
    case!(
        "regression",
        "CSV header only",
        p,
        ["no data rows"],
        move || { err_string(taper::regression::load_csv(&p, &o)) }
    );
    let o = opts.clone();
    let p = write(dir, "ragged.csv", b"a,b,y\n1,2,3\n4,5\n");
    case!(
        "regression",
        "CSV ragged row",
        p,
        ["line 3", "expected 3 fields, found 2"],
        move || err_string(taper::regression::load_csv(&p, &o))
    );
    let o = opts.clone();
    let p = write(dir, "nan.csv", b"a,b,y\n1,2,3\n4,NaN,6\n");
    case!(
        "regression",
        "CSV NaN cell",
        p,
        ["line 3", "NaN"],
        move || { err_string(taper::regression::load_csv(&p, &o)) }
    );
    let o = opts.clone();
    let p = write(dir, "inf.csv", b"a,b,y\n1,2,3\n4,5,inf\n");
    case!(
        "regression",
        "CSV inf cell",
        p,
        ["line 3", "inf"],
        move || { err_string(taper::regression::load_csv(&p, &o)) }
    );
    let o = opts.clone();
    let p = write(dir, "word.csv", b"a,b,y\n1,two,3\n");
    case!(
        "regression",
        "CSV non-numeric cell",
        p,
        ["line 2", "two"],
        move || err_string(taper::regression::load_csv(&p, &o))
    );
    let o = opts.clone();
    let p = write(dir, "latin1.csv", b"a,b,y\n1,2,3\n4,\xe9\xff,6\n");
    case!(
        "regression",
        "CSV not UTF-8",
        p,
        ["line 3", "not valid UTF-8"],
        move || { err_string(taper::regression::load_csv(&p, &o)) }
    );
    let p = write(dir, "notarget.csv", b"a,b,y\n1,2,3\n");
    case!(
        "regression",
        "CSV target column that does not exist",
        p,
        ["price"],
        move || err_string(taper::regression::load_csv(
            &p,
            &CsvOptions::target_name("price")
        ))
    );
    let mp = dir.join("model.safetensors");
    let ds = taper::regression::load_diabetes().unwrap();
    LinearRegression::ols()
        .fit_dataset(&ds)
        .unwrap()
        .save(&mp)
        .unwrap();
    write(
        dir,
        "model.safetensors",
        b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}",
    );
    case!(
        "regression",
        "saved model: corrupt safetensors",
        mp,
        ["model.safetensors"],
        move || err_string(LinearModel::load(&mp))
    );
    let mp = dir.join("model2.safetensors");
    LinearRegression::ols()
        .fit_dataset(&ds)
        .unwrap()
        .save(&mp)
        .unwrap();
    let sp = write(dir, "model2.json", b"{\"format\": ");
    case!(
        "regression",
        "saved model: truncated settings JSON",
        sp,
        ["model2.json"],
        move || err_string(LinearModel::load(&mp))
    );

    // --- taper-nlp ---
    use taper::nlp::{corpus, eval, Tokenizer, WordVectors};
    let p = write(dir, "latin1.txt", b"the cat\nsat on the \xe9 mat\n");
    case!(
        "nlp",
        "corpus not UTF-8",
        p,
        ["not valid UTF-8", "line 2"],
        move || err_string(corpus::Corpus::from_file(&p, &Default::default()))
    );
    let p = write(dir, "vec_empty.txt", b"");
    case!(
        "nlp",
        "word vectors: empty file",
        p,
        ["empty file"],
        move || { err_string(WordVectors::load_text(&p)) }
    );
    let p = write(dir, "vec_dim.txt", b"2 3\ncat 0.1 0.2 0.3\ndog 0.1 0.2\n");
    case!(
        "nlp",
        "word vectors: row shorter than the header's dimension",
        p,
        ["line 3"],
        move || err_string(WordVectors::load_text(&p))
    );
    let p = write(dir, "vec_count.txt", b"1000000000 3\ncat 0.1 0.2 0.3\n");
    case!(
        "nlp",
        "word vectors: header count larger than the file",
        p,
        ["line 3", "announces 1000000000 words"],
        move || err_string(WordVectors::load_text(&p))
    );
    let p = write(dir, "vec_nan.txt", b"1 3\ncat 0.1 NaN 0.3\n");
    case!(
        "nlp",
        "word vectors: NaN value",
        p,
        ["line 2", "not finite"],
        move || err_string(WordVectors::load_text(&p))
    );
    let p = write(dir, "pairs.csv", b"cat,dog,7.5\ncat,tiger\n");
    case!(
        "nlp",
        "word-similarity pairs: missing score",
        p,
        ["line 2"],
        move || err_string(eval::load_word_pairs(&p))
    );
    let p = write(dir, "tokenizer.json", b"{\"version\": \"1.0\", \"model\": ");
    case!(
        "nlp",
        "tokenizer.json truncated",
        p,
        ["tokenizer.json"],
        move || { err_string(Tokenizer::load(&p)) }
    );
    let p = write(dir, "tok_latin1.json", b"{\"version\": \"\xe9\"}");
    case!(
        "nlp",
        "tokenizer.json not UTF-8",
        p,
        ["not valid UTF-8"],
        move || err_string(Tokenizer::load(&p))
    );

    let run = dir.join("run_translate");
    let p = write(&run, "model.json", b"{\"task\": \"dates\", \"model\": ");
    case!(
        "nlp",
        "translation run: model.json truncated",
        p,
        ["EOF"],
        move || err_string(taper::nlp::seq2seq::Translator::load(&run, &Device::Cpu).map(|_| ()))
    );
    let run = dir.join("run_translate_novocab");
    write(
        &run,
        "model.json",
        br#"{"task":"dates","model":"lstm","cell":"lstm","attention":"additive","emb":4,"hidden":4,"layers":1,"heads":1,"ffn":4,"positions":"sinusoidal","dropout":0.0,"max_src_len":8,"max_tgt_len":8,"src_vocab":10,"tgt_vocab":10,"src_fingerprint":"x","tgt_fingerprint":"y"}"#,
    );
    let vocab = run.join("src_vocab.json");
    case!(
        "nlp",
        "translation run without its vocabulary",
        vocab,
        ["src_vocab.json"],
        move || err_string(taper::nlp::seq2seq::Translator::load(&run, &Device::Cpu).map(|_| ()))
    );

    use taper::nlp::data::{PairFilter, ParallelCorpus};
    let p = write(dir, "notab.tsv", b"Go.\tVa !\nI am cold. J'ai froid.\n");
    case!(
        "nlp",
        "parallel corpus: line without a tab",
        p,
        ["line 2"],
        move || err_string(ParallelCorpus::read(&p, &PairFilter::default()))
    );
    let p = write(dir, "emptyside.tsv", b"Go.\tVa !\n\tJ'ai froid.\n");
    case!(
        "nlp",
        "parallel corpus: empty source side",
        p,
        ["line 2"],
        move || err_string(ParallelCorpus::read(&p, &PairFilter::default()))
    );
    let p = write(dir, "filtered.tsv", b"Go.\tVa !\nRun!\tCours !\n");
    case!(
        "nlp",
        "parallel corpus that filters to nothing",
        p,
        ["filtered.tsv"],
        move || err_string(ParallelCorpus::read(
            &p,
            &PairFilter {
                prefixes: vec!["i am ".into()],
                ..Default::default()
            }
        ))
    );

    // --- taper-train: checkpoints and data root ---
    let good = dir.join("good.safetensors");
    checkpoint::save_weights(&small_model(3), &good).unwrap();
    let full = std::fs::read(&good).unwrap();
    let p = write(dir, "cut.safetensors", &full[..full.len() / 2]);
    case!(
        "train",
        "checkpoint weights truncated",
        p,
        ["unreadable"],
        move || err_string(checkpoint::load_weights(&small_model(3), &p))
    );
    let p = write(dir, "empty.safetensors", b"");
    case!(
        "train",
        "checkpoint weights empty",
        p,
        ["unreadable"],
        move || { err_string(checkpoint::load_weights(&small_model(3), &p)) }
    );
    let g = good.clone();
    case!(
        "train",
        "checkpoint of another model (shape mismatch)",
        good,
        ["shape [3, 4]", "expects [5, 4]"],
        move || err_string(checkpoint::load_weights(&small_model(5), &g))
    );
    let other = dir.join("other.safetensors");
    {
        let t = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
        let tensors = std::collections::HashMap::from([("conv.weight".to_string(), t)]);
        candle_core::safetensors::save(&tensors, &other).unwrap();
    }
    let o = other.clone();
    case!(
        "train",
        "checkpoint with other tensor names",
        other,
        ["missing tensor 'fc.weight'"],
        move || err_string(checkpoint::load_weights(&small_model(3), &o))
    );
    let run = dir.join("run_ptr");
    let ptr = write(&run, "checkpoints/latest.json", b"{\"dir\": ");
    case!(
        "train",
        "checkpoint pointer (latest.json) corrupt",
        ptr,
        ["unreadable pointer"],
        move || err_string(checkpoint::read(&run, "latest"))
    );
    let run = dir.join("run_escape");
    let ptr = write(&run, "checkpoints/latest.json", b"{\"dir\": \"../../etc\"}");
    case!(
        "train",
        "checkpoint pointer naming a folder outside the run",
        ptr,
        ["outside the run"],
        move || err_string(checkpoint::read(&run, "latest"))
    );
    let run = dir.join("run_state");
    write(&run, "checkpoints/latest.json", b"{\"dir\": \"epoch-1\"}");
    let st = write(&run, "checkpoints/epoch-1/state.json", b"[1, 2");
    case!(
        "train",
        "checkpoint state.json corrupt",
        st,
        ["corrupt state"],
        move || err_string(checkpoint::read(&run, "latest"))
    );
    // Issue 21: a tokenizer.json whose truncation is shorter than the special
    // tokens its post-processor adds (tokenizers would underflow).
    let tok = dir.join("tok_trunc/tokenizer.json");
    {
        use taper::nlp::{Tokenizer, TokenizerConfig, TokenizerKind};
        let cfg = TokenizerConfig {
            kind: TokenizerKind::WordLevel,
            vocab_size: 50,
            min_frequency: 1,
            wrap: Some(("<s>".into(), "</s>".into())),
            ..Default::default()
        };
        let mut t = Tokenizer::train_from_texts(&cfg, ["a b c d"].into_iter()).unwrap();
        t.set_truncation(Some(4)).unwrap();
        std::fs::create_dir_all(tok.parent().unwrap()).unwrap();
        t.save(&tok).unwrap();
        let json = std::fs::read_to_string(&tok).unwrap();
        std::fs::write(&tok, json.replace("\"max_length\": 4", "\"max_length\": 1")).unwrap();
    }
    let t2 = tok.clone();
    case!(
        "nlp",
        "tokenizer.json truncating below its special tokens",
        tok,
        ["special tokens"],
        move || err_string(taper::nlp::Tokenizer::load(&t2))
    );
    let root = dir.join("no_data_here");
    let expected = root.join("mnist");
    case!(
        "train",
        "data root without the data set",
        expected,
        ["not found", "make data"],
        move || err_string(taper::train::data::root::require_dir(&root, "mnist"))
    );
    v
}

#[test]
fn every_bad_input_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let table = cases(dir.path());
    assert!(table.len() >= 30, "the matrix has {} rows", table.len());
    let mut failures = Vec::new();
    println!("| crate | input | error |\n|---|---|---|");
    for c in table {
        let name = c.file.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = catch_unwind(AssertUnwindSafe(c.run));
        let msg = match outcome {
            Err(_) => {
                failures.push(format!("{}: panicked", c.input));
                continue;
            }
            Ok(Ok(())) => {
                failures.push(format!("{}: was accepted", c.input));
                continue;
            }
            Ok(Err(m)) => m,
        };
        println!(
            "| {} | {} | {} |",
            c.crate_name,
            c.input,
            msg.replace(&dir.path().display().to_string(), "…")
        );
        if !msg.contains(&name) {
            failures.push(format!("{}: message does not name {name}: {msg}", c.input));
        }
        for w in c.expect {
            if !msg.contains(w) {
                failures.push(format!("{}: message lacks '{w}': {msg}", c.input));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
