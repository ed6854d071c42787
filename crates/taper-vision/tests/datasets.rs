//! IDX and digits readers: real files when present, and every malformed case.

use std::io::Write;
use std::path::{Path, PathBuf};
use taper_vision::datasets::{digits, idx::parse_idx, load_digits, load_mnist, read_idx, Split};

fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    p.is_dir().then_some(p)
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

#[test]
fn idx_round_trip_raw_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let raw = dir.path().join("a-idx2-ubyte");
    std::fs::write(&raw, &bytes).unwrap();
    let gz = dir.path().join("a-idx2-ubyte.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&bytes).unwrap();
    enc.finish().unwrap();
    for p in [&raw, &gz] {
        let idx = read_idx(p).unwrap();
        assert_eq!(idx.dims, vec![2, 3]);
        assert_eq!(idx.data, vec![1, 2, 3, 4, 5, 6]);
    }
}

#[test]
fn malformed_idx_is_refused_with_reason() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0, 0], "too short"),
        (vec![1, 0, 8, 1, 0, 0, 0, 1, 0], "bad magic"),
        (
            vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0],
            "unsupported IDX element type",
        ),
        (vec![0, 0, 8, 3, 0, 0, 0, 1], "truncated header"),
        (
            idx_bytes(&[2, 3], &[1, 2, 3]),
            "need 6 data bytes, file has 3",
        ),
        // A header claiming 4 billion items must not allocate them.
        (
            idx_bytes(&[u32::MAX, 16], &[0]),
            "need 68719476720 data bytes",
        ),
        (
            idx_bytes(&[u32::MAX, u32::MAX, 16], &[0]),
            "dimensions overflow",
        ),
        (vec![0, 0, 8, 0], "0 dimensions"),
    ];
    for (bytes, needle) in cases {
        let e = parse_idx(&bytes).unwrap_err();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.gz");
    std::fs::write(&p, [0x1f, 0x8b, 0, 1, 2]).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(e.contains("bad.gz") && e.contains("gzip"), "{e}");
    let e = read_idx(&dir.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn mnist_folder_checks_labels_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_mnist(dir.path(), Split::Test).unwrap_err().to_string();
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("make data"),
        "{e}"
    );
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        idx_bytes(&[2, 2, 2], &[0, 255, 0, 0, 9, 9, 9, 9]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        idx_bytes(&[2], &[3, 12]),
    )
    .unwrap();
    let e = load_mnist(dir.path(), Split::Test).unwrap_err().to_string();
    assert!(e.contains("label 12 at index 1"), "{e}");
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        idx_bytes(&[2], &[3, 7]),
    )
    .unwrap();
    let (x, y) = load_mnist(dir.path(), Split::Test).unwrap();
    assert_eq!(x.dims(), &[2, 1, 2, 2]);
    assert_eq!(x.flatten_all().unwrap().to_vec1::<f32>().unwrap()[1], 1.0);
    assert_eq!(y.to_vec1::<u32>().unwrap(), vec![3, 7]);
}

#[test]
fn real_mnist_when_present() {
    let Some(root) = shared_data() else {
        eprintln!("skipped: ../shared/data not found beside the project (MNIST test needs it)");
        return;
    };
    for set in ["mnist", "fashion-mnist"] {
        let (x, y) = load_mnist(&root.join(set), Split::Test).unwrap();
        assert_eq!(x.dims(), &[10000, 1, 28, 28]);
        let counts = y
            .to_vec1::<u32>()
            .unwrap()
            .iter()
            .fold([0usize; 10], |mut c, &l| {
                c[l as usize] += 1;
                c
            });
        assert!(counts.iter().all(|&c| c > 800), "{set}: {counts:?}");
    }
}

#[test]
fn embedded_digits() {
    let (x, y) = load_digits(&digits::default_digits_path()).unwrap();
    assert_eq!(x.dims(), &[1797, 1, 8, 8]);
    assert_eq!(y.dims(), &[1797]);
    let mx = x.max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(mx <= 1.0 && mx > 0.9);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.csv");
    std::fs::write(&p, "1,2,3\n").unwrap();
    let e = load_digits(&p).unwrap_err().to_string();
    assert!(
        e.contains("d.csv line 1") && e.contains("expected 65 values"),
        "{e}"
    );
    let row: Vec<String> = (0..64)
        .map(|_| "0".to_string())
        .chain(["x".to_string()])
        .collect();
    std::fs::write(&p, row.join(",")).unwrap();
    let e = load_digits(&p).unwrap_err().to_string();
    assert!(
        e.contains("column 65") && e.contains("'x' is not a number"),
        "{e}"
    );
}

#[test]
fn cifar_binary_written_here() {
    use taper_vision::datasets::{load_cifar10, read_cifar_file};
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for label in [3u8, 9] {
        bytes.push(label);
        bytes.extend((0..3072).map(|i| (i % 251) as u8));
    }
    let p = dir.path().join("test_batch.bin");
    std::fs::write(&p, &bytes).unwrap();
    let (x, y) = read_cifar_file(&p).unwrap();
    assert_eq!(x.dims(), &[2, 3, 32, 32]);
    assert_eq!(y.to_vec1::<u32>().unwrap(), vec![3, 9]);
    // Red plane first, then green: pixel (c=1, 0, 0) is byte 1024.
    let v = x
        .get(0)
        .unwrap()
        .get(1)
        .unwrap()
        .get(0)
        .unwrap()
        .get(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((v - (1024 % 251) as f32 / 255.0).abs() < 1e-6);
    let (x2, _) = load_cifar10(dir.path(), false).unwrap();
    assert_eq!(x2.dims(), x.dims());
    let e = load_cifar10(dir.path(), true).unwrap_err().to_string();
    assert!(e.contains("data_batch_1.bin"), "{e}");
    std::fs::write(&p, &bytes[..5000]).unwrap();
    let e = read_cifar_file(&p).unwrap_err().to_string();
    assert!(e.contains("not a whole number of 3073-byte"), "{e}");
    bytes[0] = 10;
    std::fs::write(&p, &bytes).unwrap();
    let e = read_cifar_file(&p).unwrap_err().to_string();
    assert!(e.contains("record 0 has label 10"), "{e}");
}

#[test]
fn image_folder_with_a_bad_file() {
    use taper_train::data::{DataLoader, Dataset, LoaderConfig, StackBatcher};
    use taper_vision::datasets::{ImageFolder, OnBadFile};
    use taper_vision::transforms::{Compose, RandomCrop, Resize};
    let dir = tempfile::tempdir().unwrap();
    let e = ImageFolder::open(dir.path(), 3, OnBadFile::Fail)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no class folders"), "{e}");
    for (class, n) in [("cat", 3), ("dog", 2)] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(20 + i, 16, |x, y| {
                image::Rgb([x as u8 * 10, y as u8 * 10, 100])
            });
            img.save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    std::fs::write(dir.path().join("dog/broken.jpg"), b"").unwrap();
    std::fs::write(dir.path().join("dog/notes.txt"), b"not an image").unwrap();
    let e = ImageFolder::open(dir.path(), 3, OnBadFile::Fail)
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.jpg") && e.contains("empty file"), "{e}");
    let folder = ImageFolder::open(dir.path(), 3, OnBadFile::Skip).unwrap();
    assert_eq!(folder.classes(), &["cat".to_string(), "dog".to_string()]);
    assert_eq!(folder.len(), 5);
    assert_eq!(folder.skipped().len(), 1);
    let folder = folder.with_transform(
        Compose::new().then(Resize::new(16, 16)).then(RandomCrop {
            width: 12,
            height: 12,
            padding: 0,
        }),
        3,
    );
    let item = folder.get(4).unwrap();
    assert_eq!(item[0].dims(), &[3, 12, 12]);
    assert_eq!(item[1].to_scalar::<u32>().unwrap(), 1);
    // Augmentation differs between epochs and repeats within one.
    let e0 = folder.get_in_epoch(0, 0).unwrap()[0]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let e0b = folder.get_in_epoch(0, 0).unwrap()[0]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let e1 = folder.get_in_epoch(0, 1).unwrap()[0]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(e0, e0b);
    assert_ne!(e0, e1);
    let loader = DataLoader::from_dataset(
        folder,
        StackBatcher::new(&candle_core::Device::Cpu),
        LoaderConfig::train(2, 0),
    )
    .unwrap();
    let batches: Vec<_> = loader.epoch(0, 0).map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].inputs().dims(), &[2, 3, 12, 12]);
}
