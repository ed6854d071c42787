//! Real outcomes on the embedded data sets, plus save/load and tensor round trips.

use candle_core::{DType, Device};
use taper_regression::metrics::{self, Average};
use taper_regression::nalgebra::{DMatrix, DVector};
use taper_regression::preprocessing::{cross_val_score, KFold};
use taper_regression::*;

#[test]
fn breast_cancer_logistic_accuracy() {
    let ds = load_breast_cancer().unwrap();
    let (train, test) = train_test_split(&ds, 0.2, 42).unwrap();
    assert_eq!((train.n_samples(), test.n_samples()), (455, 114));
    let model = LogisticRegression::new()
        .standardize(true)
        .fit_dataset(&train)
        .unwrap();
    let y = test.labels().unwrap();
    let pred = model.predict(&test.x).unwrap();
    let acc = metrics::accuracy(&y, &pred).unwrap();
    let proba = model.predict_proba(&test.x).unwrap();
    let auc = metrics::roc_auc(&y, proba.column(1).as_slice()).unwrap();
    let f1 = metrics::f1(&y, &pred, Average::Binary { positive: 1 }).unwrap();
    eprintln!("breast cancer held out: accuracy {acc:.4}, F1 {f1:.4}, ROC-AUC {auc:.4}");
    assert!(acc >= 0.95, "accuracy {acc}");
    assert!(auc >= 0.98, "auc {auc}");
    assert_eq!(model.class_names(), ["malignant", "benign"]);
    assert!(model.coef_of("worst radius").is_some());
}

#[test]
fn digits_multinomial_accuracy() {
    let ds = load_digits().unwrap();
    assert_eq!((ds.n_samples(), ds.n_features()), (1797, 64));
    let (train, test) = train_test_split(&ds, 0.2, 42).unwrap();
    let model = LogisticRegression::new()
        .standardize(true)
        .fit_dataset(&train)
        .unwrap();
    let acc = model.score(&test.x, &test.labels().unwrap()).unwrap();
    eprintln!(
        "digits held out: accuracy {acc:.4} after {} L-BFGS steps (converged: {})",
        model.n_iter(),
        model.converged()
    );
    assert_eq!(model.coef().shape(), (10, 64));
    assert!(acc >= 0.95, "accuracy {acc}");
}

#[test]
fn iris_and_wine_are_learnable() {
    for (name, ds) in [
        ("iris", load_iris().unwrap()),
        ("wine", load_wine().unwrap()),
    ] {
        let (train, test) = train_test_split(&ds, 0.2, 7).unwrap();
        let model = LogisticRegression::new()
            .standardize(true)
            .fit_dataset(&train)
            .unwrap();
        let acc = model.score(&test.x, &test.labels().unwrap()).unwrap();
        eprintln!("{name} held out: accuracy {acc:.4}");
        assert!(acc >= 0.9, "{name}: {acc}");
        let p = model.predict_proba(&test.x).unwrap();
        for row in p.row_iter() {
            assert!((row.sum() - 1.0).abs() < 1e-12);
        }
    }
}

#[test]
fn diabetes_ols_held_out_r2() {
    let ds = load_diabetes().unwrap();
    let (train, test) = train_test_split(&ds, 0.2, 42).unwrap();
    let model = LinearRegression::ols().fit_dataset(&train).unwrap();
    let r2 = model.score(&test.x, &test.y).unwrap();
    eprintln!("diabetes OLS held out R² {r2:.4}");
    // Published figures on random splits run ~0.35-0.55.
    assert!(r2 > 0.3 && r2 < 0.7, "r2 {r2}");
}

#[test]
fn cross_validation_scores_every_fold() {
    let ds = load_diabetes().unwrap();
    let scores = cross_val_score(&ds, KFold::shuffled(5, 0), |train, test| {
        LinearRegression::ridge(1.0)
            .fit_dataset(train)?
            .score(&test.x, &test.y)
    })
    .unwrap();
    let mean = scores.iter().sum::<f64>() / 5.0;
    eprintln!("diabetes ridge 5-fold R²: {scores:.3?}, mean {mean:.3}");
    assert_eq!(scores.len(), 5);
    assert!(mean > 0.4);
}

#[test]
fn splits_are_deterministic_and_disjoint() {
    let (a_train, a_test) = preprocessing::train_test_indices(100, 0.25, 3).unwrap();
    let (b_train, b_test) = preprocessing::train_test_indices(100, 0.25, 3).unwrap();
    assert_eq!((&a_train, &a_test), (&b_train, &b_test));
    let (_, c_test) = preprocessing::train_test_indices(100, 0.25, 4).unwrap();
    assert_ne!(a_test, c_test);
    assert_eq!(a_test.len(), 25);
    let mut all: Vec<usize> = a_train.iter().chain(&a_test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());

    let folds = KFold::new(3).split(10).unwrap();
    let sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
    assert_eq!(sizes, [4, 3, 3]);
    assert_eq!(folds[1].test, [4, 5, 6]);
    assert_eq!(folds[1].train, [0, 1, 2, 3, 7, 8, 9]);
}

#[test]
fn scalers_fit_on_train_apply_to_test() {
    let train = DMatrix::from_row_slice(3, 2, &[1.0, 10.0, 2.0, 10.0, 3.0, 10.0]);
    let s = StandardScaler::fit(&train).unwrap();
    assert_eq!(s.mean(), [2.0, 10.0]);
    // Population std of 1,2,3 is sqrt(2/3); the constant column keeps scale 1.
    assert!((s.scale()[0] - (2.0f64 / 3.0).sqrt()).abs() < 1e-15);
    assert_eq!(s.scale()[1], 1.0);
    let test = DMatrix::from_row_slice(1, 2, &[4.0, 12.0]);
    let t = s.transform(&test).unwrap();
    assert!((t[(0, 0)] - 2.0 / (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
    assert_eq!(t[(0, 1)], 2.0);
    let back = s.inverse_transform(&t).unwrap();
    assert!((back - test).amax() < 1e-12);

    let m = MinMaxScaler::fit(&train).unwrap();
    let t = m
        .transform(&DMatrix::from_row_slice(1, 2, &[2.5, 10.0]))
        .unwrap();
    assert_eq!((t[(0, 0)], t[(0, 1)]), (0.75, 0.0));
    let m = MinMaxScaler::fit_range(&train, (-1.0, 1.0)).unwrap();
    assert_eq!(m.transform(&train).unwrap()[(2, 0)], 1.0);

    let oh = preprocessing::one_hot(&[2, 0, 1], 3).unwrap();
    assert_eq!(
        oh,
        DMatrix::from_row_slice(3, 3, &[0., 0., 1., 1., 0., 0., 0., 1., 0.])
    );
}

#[test]
fn intercept_off_goes_through_origin() {
    // y = 2x exactly: with no intercept the slope must be 2 and the intercept 0.
    let x = DMatrix::from_column_slice(4, 1, &[1.0, 2.0, 3.0, 4.0]);
    let y = DVector::from_vec(vec![2.0, 4.0, 6.0, 8.0]);
    let m = LinearRegression::ols()
        .intercept(false)
        .fit(&x, &y)
        .unwrap();
    assert!((m.coef()[0] - 2.0).abs() < 1e-14);
    assert_eq!(m.intercept(), 0.0);
    // y = 1 + 3x recovered with the intercept on.
    let y = DVector::from_vec(vec![4.0, 7.0, 10.0, 13.0]);
    let m = LinearRegression::ols().fit(&x, &y).unwrap();
    assert!((m.coef()[0] - 3.0).abs() < 1e-13 && (m.intercept() - 1.0).abs() < 1e-13);
    let l = LinearRegression::lasso(0.01)
        .intercept(false)
        .fit(&x, &y)
        .unwrap();
    assert_eq!(l.intercept(), 0.0);
}

#[test]
fn lasso_zeroes_weak_features() {
    let ds = load_diabetes().unwrap();
    let m = LinearRegression::lasso(1.0)
        .standardize(true)
        .fit_dataset(&ds)
        .unwrap();
    let zeros = m.coef().iter().filter(|c| **c == 0.0).count();
    eprintln!("lasso(1.0) on standardised diabetes: {:?}", m.named_coef());
    assert!(zeros >= 3, "expected a sparse fit, got {:?}", m.coef());
}

#[test]
fn decision_threshold_moves_predictions() {
    let ds = load_breast_cancer().unwrap();
    let model = LogisticRegression::new()
        .standardize(true)
        .fit_dataset(&ds)
        .unwrap();
    let strict = model.clone().with_threshold(0.99).unwrap();
    let n_pos = |m: &LogisticModel| {
        m.predict(&ds.x)
            .unwrap()
            .iter()
            .filter(|&&c| c == 1)
            .count()
    };
    assert!(n_pos(&strict) < n_pos(&model));
    let all = model.predict_with_threshold(&ds.x, 0.0).unwrap();
    assert!(all.iter().all(|&c| c == 1));
    let iris = load_iris().unwrap();
    let multi = LogisticRegression::new().fit_dataset(&iris).unwrap();
    assert!(matches!(
        multi.with_threshold(0.3),
        Err(Error::NotBinary { n_classes: 3 })
    ));
}

#[test]
fn linear_save_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ds = load_diabetes().unwrap();
    let model = LinearRegression::ridge(0.5)
        .standardize(true)
        .fit_dataset(&ds)
        .unwrap();
    let path = dir.path().join("ridge.safetensors");
    model.save(&path).unwrap();
    assert!(dir.path().join("ridge.json").exists());
    // Only the two target files remain: temp files were renamed, not left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    let back = LinearModel::load(&path).unwrap();
    assert_eq!(back, model);
    assert_eq!(back.predict(&ds.x).unwrap(), model.predict(&ds.x).unwrap());

    let tensors = model.to_tensors(&Device::Cpu, DType::F32).unwrap();
    assert_eq!(tensors["coef"].dims(), [10]);
    assert_eq!(tensors["intercept"].dims(), [1]);
    let again = LinearModel::from_tensors(
        model.settings().clone(),
        model.feature_names().to_vec(),
        model.scaler().cloned(),
        &tensors,
    )
    .unwrap();
    // f32 round trip: equal to f32 precision.
    for (a, b) in again.coef().iter().zip(model.coef()) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0));
    }
}

#[test]
fn logistic_save_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ds = load_wine().unwrap();
    let model = LogisticRegression::new()
        .standardize(true)
        .fit_dataset(&ds)
        .unwrap();
    let path = dir.path().join("wine");
    model.save(&path).unwrap();
    let back = LogisticModel::load(&path).unwrap();
    assert_eq!(back, model);
    assert_eq!(
        back.coef_tensor(&Device::Cpu, DType::F64).unwrap().dims(),
        [3, 13]
    );

    let bc = load_breast_cancer().unwrap();
    let binary = LogisticRegression::new()
        .standardize(true)
        .fit_dataset(&bc)
        .unwrap()
        .with_threshold(0.3)
        .unwrap();
    let path = dir.path().join("bc.safetensors");
    binary.save(&path).unwrap();
    let back = LogisticModel::load(&path).unwrap();
    assert_eq!(back.threshold(), 0.3);
    assert_eq!(back.predict(&bc.x).unwrap(), binary.predict(&bc.x).unwrap());
}

#[test]
fn ols_summary_on_exact_fit_small_case() {
    // Hand check: x = [0, 1, 2, 3], y = [1, 3, 2, 4] gives slope 0.8, intercept 1.3,
    // residuals [-0.3, 0.9, -0.9, 0.3], RSS 1.8, σ² = 0.9, Sxx = 5, se(slope) = sqrt(0.18).
    let x = DMatrix::from_column_slice(4, 1, &[0.0, 1.0, 2.0, 3.0]);
    let y = DVector::from_vec(vec![1.0, 3.0, 2.0, 4.0]);
    let m = LinearRegression::ols().fit(&x, &y).unwrap();
    assert!((m.coef()[0] - 0.8).abs() < 1e-14 && (m.intercept() - 1.3).abs() < 1e-14);
    let s = m.summary().unwrap();
    assert!((s.std_errors[0] - 0.18f64.sqrt()).abs() < 1e-14);
    // se(intercept) = sqrt(σ²(1/n + x̄²/Sxx)) = sqrt(0.9 · (0.25 + 0.45)).
    assert!((s.intercept_std_error.unwrap() - (0.9f64 * 0.7).sqrt()).abs() < 1e-14);
    assert_eq!(s.df_resid, 2.0);
    // R² = 1 - 1.8 / 5 = 0.64.
    assert!((s.r2 - 0.64).abs() < 1e-14);
}
