//! Every kind of bad input gives its own typed error naming the file, line or column.

use std::path::Path;
use taper_regression::nalgebra::{DMatrix, DVector};
use taper_regression::*;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn ragged_row_names_its_line() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "ragged.csv", "a,b,y\n1,2,3\n4,5\n6,7,8\n");
    let e = load_csv(&p, &CsvOptions::default()).unwrap_err();
    match &e {
        Error::RaggedRow {
            path,
            line,
            expected,
            found,
        } => {
            assert_eq!(
                (path.as_path(), *line, *expected, *found),
                (p.as_path(), 3, 3, 2)
            );
        }
        other => panic!("wrong error {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("ragged.csv") && msg.contains("line 3"),
        "{msg}"
    );
}

#[test]
fn non_numeric_cell_names_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "text.csv", "a,b,y\n1,2,3\n4,five,6\n");
    let e = load_csv(&p, &CsvOptions::default()).unwrap_err();
    assert!(
        matches!(&e, Error::NonNumeric { line: 3, column, value, .. } if column == "b" && value == "five"),
        "{e:?}"
    );
    assert!(e.to_string().contains("text.csv"));
}

#[test]
fn nan_and_infinity_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    for (name, cell) in [
        ("nan.csv", "NaN"),
        ("inf.csv", "inf"),
        ("neginf.csv", "-Infinity"),
    ] {
        let p = write(d.path(), name, &format!("a,y\n1,2\n{cell},3\n"));
        let e = load_csv(&p, &CsvOptions::default()).unwrap_err();
        assert!(
            matches!(&e, Error::NonFinite { line: 3, column, .. } if column == "a"),
            "{name}: {e:?}"
        );
    }
}

#[test]
fn empty_files_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("empty.csv", ""),
        ("header_only.csv", "a,b,y\n"),
        ("blank.csv", "\n\n"),
    ] {
        let p = write(d.path(), name, text);
        let e = load_csv(&p, &CsvOptions::default()).unwrap_err();
        assert!(
            matches!(&e, Error::EmptyFile { path } if path == &p),
            "{name}: {e:?}"
        );
    }
}

#[test]
fn missing_target_column() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "ok.csv", "a,b,y\n1,2,3\n");
    let e = load_csv(&p, &CsvOptions::target_name("price")).unwrap_err();
    assert!(
        matches!(&e, Error::MissingTargetColumn { column, available, .. }
            if column.contains("price") && available == &["a", "b", "y"]),
        "{e:?}"
    );
    let e = load_csv(&p, &CsvOptions::target_index(3)).unwrap_err();
    assert!(matches!(e, Error::MissingTargetColumn { .. }));
    // The positive cases: by name and by index.
    let ds = load_csv(&p, &CsvOptions::target_name("a")).unwrap();
    assert_eq!(ds.feature_names, ["b", "y"]);
    assert_eq!(ds.y[0], 1.0);
    let ds = load_csv(&p, &CsvOptions::target_index(1)).unwrap();
    assert_eq!(ds.target_name, "b");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let e = load_csv("/nonexistent/taper.csv", &CsvOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/taper.csv"));
    let e = load_iris_from("/nonexistent").unwrap_err();
    assert!(e.to_string().contains("iris.csv"));
}

#[test]
fn embedded_format_errors_name_the_line() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "iris.csv",
        "3,4,a,b,c\n1,2,3,4,0\n1,2,x,4,1\n1,2,3,4,2\n",
    );
    let e = load_iris_from(d.path()).unwrap_err();
    assert!(matches!(e, Error::NonNumeric { line: 3, .. }), "{e:?}");
    write(d.path(), "wine_data.csv", "5,13,a,b,c\n");
    assert!(matches!(
        load_wine_from(d.path()),
        Err(Error::EmptyFile { .. } | Error::BadFormat { .. })
    ));
}

#[test]
fn ols_with_fewer_rows_than_features_is_underdetermined() {
    let x = DMatrix::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 7.0]);
    let y = DVector::from_vec(vec![1.0, 2.0]);
    let e = LinearRegression::ols().fit(&x, &y).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Underdetermined {
                n_samples: 2,
                n_features: 3,
                ..
            }
        ),
        "{e:?}"
    );
    // A penalty makes the same problem well posed.
    assert!(LinearRegression::ridge(1.0).fit(&x, &y).is_ok());
    assert!(LinearRegression::lasso(0.1).fit(&x, &y).is_ok());
}

#[test]
fn collinear_columns_are_singular_and_named() {
    // Column c = a + b.
    let x = DMatrix::from_row_slice(
        5,
        3,
        &[1., 0., 1., 2., 1., 3., 0., 1., 1., 3., 5., 8., 4., 2., 6.],
    );
    let y = DVector::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let e = LinearRegression::ols()
        .fit_named(&x, &y, names)
        .unwrap_err();
    assert!(
        matches!(&e, Error::Singular { feature } if feature == "c"),
        "{e:?}"
    );
}

#[test]
fn single_class_logistic() {
    let x = DMatrix::from_row_slice(3, 1, &[1.0, 2.0, 3.0]);
    let e = LogisticRegression::new().fit(&x, &[1, 1, 1]).unwrap_err();
    assert!(matches!(e, Error::SingleClass { class: 1 }), "{e:?}");
    assert!(e.to_string().contains("two classes"));
}

#[test]
fn predicting_with_wrong_feature_count() {
    let ds = load_iris().unwrap();
    let lin = LinearRegression::ols().fit_dataset(&ds).unwrap();
    let logit = LogisticRegression::new().fit_dataset(&ds).unwrap();
    let wrong = DMatrix::zeros(2, 3);
    assert!(matches!(
        lin.predict(&wrong),
        Err(Error::FeatureMismatch {
            expected: 4,
            found: 3
        })
    ));
    assert!(matches!(
        logit.predict_proba(&wrong),
        Err(Error::FeatureMismatch {
            expected: 4,
            found: 3
        })
    ));
    let scaler = preprocessing::StandardScaler::fit(&ds.x).unwrap();
    assert!(matches!(
        scaler.transform(&wrong),
        Err(Error::FeatureMismatch { .. })
    ));
}

#[test]
fn in_memory_nan_and_bad_parameters() {
    let mut x = DMatrix::from_row_slice(3, 1, &[1.0, 2.0, 3.0]);
    let y = DVector::from_vec(vec![1.0, 2.0, 3.0]);
    assert!(matches!(
        LinearRegression::ridge(-1.0).fit(&x, &y),
        Err(Error::InvalidParameter { name: "alpha", .. })
    ));
    assert!(matches!(
        LinearRegression::elastic_net(1.0, 1.5).fit(&x, &y),
        Err(Error::InvalidParameter {
            name: "l1_ratio",
            ..
        })
    ));
    assert!(matches!(
        LogisticRegression::new().c(0.0).fit(&x, &[0, 1, 0]),
        Err(Error::InvalidParameter { name: "c", .. })
    ));
    assert!(matches!(
        LinearRegression::ols().fit(&x, &DVector::from_vec(vec![1.0, 2.0])),
        Err(Error::LengthMismatch { .. })
    ));
    x[(1, 0)] = f64::NAN;
    assert!(matches!(
        LinearRegression::ols().fit(&x, &y),
        Err(Error::NonFiniteInput {
            row: 1,
            column: 0,
            ..
        })
    ));
    assert!(matches!(
        train_test_split(&load_iris().unwrap(), 1.0, 0),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        KFold::new(1).split(10),
        Err(Error::InvalidParameter { .. })
    ));
}

#[test]
fn damaged_model_files() {
    let d = tempfile::tempdir().unwrap();
    let ds = load_iris().unwrap();
    let model = LinearRegression::ols().fit_dataset(&ds).unwrap();
    let path = d.path().join("m.safetensors");
    model.save(&path).unwrap();
    // Loading as the wrong model kind is refused by the format tag.
    assert!(matches!(
        LogisticModel::load(&path),
        Err(Error::ModelFile { .. })
    ));
    std::fs::write(&path, b"not safetensors").unwrap();
    assert!(matches!(
        LinearModel::load(&path),
        Err(Error::ModelFile { .. })
    ));
    std::fs::write(d.path().join("m.json"), b"{").unwrap();
    assert!(matches!(LinearModel::load(&path), Err(Error::Json { .. })));
}
