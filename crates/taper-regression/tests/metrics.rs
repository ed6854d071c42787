//! Metrics against small cases worked out by hand.

use taper_regression::metrics::*;
use taper_regression::nalgebra::DMatrix;
use taper_regression::Error;

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn regression_metrics() {
    let t = [3.0, -0.5, 2.0, 7.0];
    let p = [2.5, 0.0, 2.0, 8.0];
    // Errors 0.5, -0.5, 0, -1: squares sum to 1.5, absolutes to 2.
    close(mse(&t, &p).unwrap(), 0.375);
    close(rmse(&t, &p).unwrap(), 0.375f64.sqrt());
    close(mae(&t, &p).unwrap(), 0.5);
    // Mean 2.875; SS_tot = 0.015625 + 11.390625 + 0.765625 + 17.015625 = 29.1875.
    close(r2(&t, &p).unwrap(), 1.0 - 1.5 / 29.1875);
    close(r2(&[1.0, 1.0], &[1.0, 1.0]).unwrap(), 1.0);
    close(r2(&[1.0, 1.0], &[1.0, 2.0]).unwrap(), 0.0);
    assert!(matches!(
        mse(&[1.0], &[1.0, 2.0]),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(mse(&[], &[]), Err(Error::EmptyInput { .. })));
    assert!(matches!(
        mae(&[1.0, f64::NAN], &[1.0, 2.0]),
        Err(Error::NonFiniteInput { row: 1, .. })
    ));
}

#[test]
fn binary_classification_metrics() {
    let t = [1, 1, 1, 1, 0, 0, 0, 0];
    let p = [1, 1, 1, 0, 1, 0, 0, 0];
    // TP 3, FN 1, FP 1, TN 3.
    close(accuracy(&t, &p).unwrap(), 0.75);
    let pos = Average::Binary { positive: 1 };
    close(precision(&t, &p, pos).unwrap(), 0.75);
    close(recall(&t, &p, pos).unwrap(), 0.75);
    close(f1(&t, &p, pos).unwrap(), 0.75);
    let cm = confusion_matrix(&t, &p, 2).unwrap();
    assert_eq!(cm.rows(), [vec![3, 1], vec![1, 3]]);
    assert_eq!(cm.to_string(), "[3 1]\n[1 3]\n");
    // No predicted positives: precision is 0 by convention, not NaN.
    close(precision(&[1, 0], &[0, 0], pos).unwrap(), 0.0);
}

#[test]
fn macro_averages() {
    let t = [0, 0, 1, 1, 2, 2];
    let p = [0, 1, 1, 1, 2, 0];
    // class 0: tp1 pred2 true2 -> P .5 R .5 F .5
    // class 1: tp2 pred3 true2 -> P 2/3 R 1 F 0.8
    // class 2: tp1 pred1 true2 -> P 1 R .5 F 2/3
    let s = precision_recall_f1(&t, &p, Average::Macro).unwrap();
    close(s.precision, (0.5 + 2.0 / 3.0 + 1.0) / 3.0);
    close(s.recall, (0.5 + 1.0 + 0.5) / 3.0);
    close(s.f1, (0.5 + 0.8 + 2.0 / 3.0) / 3.0);
    let cm = confusion_matrix(&t, &p, 3).unwrap();
    assert_eq!(cm.get(2, 0), 1);
    assert_eq!(cm.get(0, 1), 1);
    assert!(matches!(
        confusion_matrix(&[3], &[0], 3),
        Err(Error::InvalidLabel { index: 0, .. })
    ));
}

#[test]
fn roc_auc_counts_pairs() {
    // Pairs (pos, neg): 0.35>0.1 ✓, 0.35<0.4 ✗, 0.8>0.1 ✓, 0.8>0.4 ✓ -> 3/4.
    close(
        roc_auc(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap(),
        0.75,
    );
    // A tie between a positive and a negative counts one half.
    close(roc_auc(&[0, 1], &[0.5, 0.5]).unwrap(), 0.5);
    close(roc_auc(&[0, 0, 1], &[0.2, 0.5, 0.5]).unwrap(), 0.75);
    assert!(matches!(
        roc_auc(&[1, 1], &[0.2, 0.3]),
        Err(Error::NotBinary { n_classes: 1 })
    ));
}

#[test]
fn log_loss_by_hand() {
    let proba = DMatrix::from_row_slice(2, 2, &[0.9, 0.1, 0.2, 0.8]);
    close(
        log_loss(&[0, 1], &proba).unwrap(),
        -(0.9f64.ln() + 0.8f64.ln()) / 2.0,
    );
    close(
        log_loss_binary(&[1, 0], &[0.7, 0.4]).unwrap(),
        -(0.7f64.ln() + 0.6f64.ln()) / 2.0,
    );
    // A confident wrong answer is clipped, so the loss is large but finite.
    let l = log_loss_binary(&[1], &[0.0]).unwrap();
    assert!(l.is_finite() && l > 30.0);
}
