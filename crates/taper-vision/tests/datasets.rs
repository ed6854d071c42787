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
