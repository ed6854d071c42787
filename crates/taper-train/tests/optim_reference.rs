//! Our optimizers and schedules against PyTorch 2.15 trajectories.
//!
//! `tools/optim_reference.py` produced `tools/optim_reference.json` (float64, 5 steps
//! of each optimizer on a fixed least-squares problem; 12 learning rates of each
//! schedule). The computations here run in f64 too, so agreement is near 1 ULP.

use candle_core::{DType, Device, Tensor, Var};
use serde_json::Value;
use taper_train::optim::{
    Adam, AdamConfig, NamedVar, Optim, RmsProp, RmsPropConfig, Sgd, SgdConfig,
};
use taper_train::schedule::{
    Direction, Exponential, LrSchedule, OneCycle, ReduceOnPlateau, StepDecay, WarmupCosine,
};

const REFERENCE: &str = include_str!("../../../tools/optim_reference.json");

fn reference() -> Value {
    serde_json::from_str(REFERENCE).expect("reference JSON parses")
}

fn matrix(v: &Value) -> Vec<f64> {
    fn flat(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
            Value::Number(n) => out.push(n.as_f64().unwrap()),
            _ => panic!("unexpected JSON value"),
        }
    }
    let mut out = Vec::new();
    flat(v, &mut out);
    out
}

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
}

/// Runs 5 steps of `make(vars)` on the reference problem; returns (W, b, loss) per step.
fn trajectory(make: impl Fn(Vec<NamedVar>) -> Box<dyn Optim>) -> Vec<(Vec<f64>, Vec<f64>, f64)> {
    let w = Var::from_tensor(&t(&[0.5, -0.3, 0.8, -0.1, 0.2, 0.4], &[2, 3])).unwrap();
    let b = Var::from_tensor(&t(&[0.1, -0.2], &[2])).unwrap();
    let x = t(
        &[
            1.0, 2.0, -1.0, 0.5, -1.5, 2.0, -2.0, 0.3, 0.7, 1.2, 1.1, -0.4,
        ],
        &[4, 3],
    );
    let y = t(&[1.0, -1.0, 0.0, 2.0, -1.5, 0.5, 0.7, 0.3], &[4, 2]);
    let mut opt = make(vec![("w".into(), w.clone()), ("b".into(), b.clone())]);
    let mut out = Vec::new();
    for _ in 0..5 {
        let pred = x
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        let loss = (pred - &y).unwrap().sqr().unwrap().mean_all().unwrap();
        let l = loss.to_scalar::<f64>().unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads).unwrap();
        out.push((
            w.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            b.as_tensor().to_vec1().unwrap(),
            l,
        ));
    }
    out
}

fn check(name: &str, make: impl Fn(Vec<NamedVar>) -> Box<dyn Optim>) {
    let r = &reference()[name];
    let got = trajectory(make);
    for (step, (w, b, loss)) in got.iter().enumerate() {
        let ew = matrix(&r["W"][step]);
        let eb = matrix(&r["b"][step]);
        let el = r["loss"][step].as_f64().unwrap();
        for (a, e) in w.iter().chain(b).zip(ew.iter().chain(&eb)) {
            // Absolute tolerance: some parameters pass through ~1e-9 where relative
            // error is meaningless.
            assert!(
                (a - e).abs() < 1e-12,
                "{name} step {}: parameter {a} vs PyTorch {e}",
                step + 1
            );
        }
        assert!(
            (loss - el).abs() < 1e-12,
            "{name} step {}: loss {loss} vs {el}",
            step + 1
        );
    }
}

#[test]
fn sgd_matches_pytorch() {
    check("sgd", |v| {
        Box::new(Sgd::new(
            v,
            SgdConfig {
                lr: 0.1,
                ..Default::default()
            },
        ))
    });
    check("sgd_momentum_wd", |v| {
        Box::new(Sgd::new(
            v,
            SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 0.01,
                ..Default::default()
            },
        ))
    });
    check("sgd_nesterov", |v| {
        Box::new(Sgd::new(
            v,
            SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                nesterov: true,
                ..Default::default()
            },
        ))
    });
    check("sgd_dampening", |v| {
        Box::new(Sgd::new(
            v,
            SgdConfig {
                lr: 0.1,
                momentum: 0.5,
                dampening: 0.3,
                ..Default::default()
            },
        ))
    });
}

#[test]
fn adam_and_adamw_match_pytorch() {
    check("adam", |v| {
        Box::new(Adam::new(
            v,
            AdamConfig {
                lr: 0.1,
                ..Default::default()
            },
        ))
    });
    check("adam_wd", |v| {
        Box::new(Adam::new(
            v,
            AdamConfig {
                lr: 0.1,
                weight_decay: 0.05,
                ..Default::default()
            },
        ))
    });
    check("adam_amsgrad", |v| {
        Box::new(Adam::new(
            v,
            AdamConfig {
                lr: 0.1,
                amsgrad: true,
                ..Default::default()
            },
        ))
    });
    check("adamw", |v| Box::new(Adam::adamw(v, 0.1, 0.1)));
}

#[test]
fn rmsprop_matches_pytorch() {
    check("rmsprop", |v| {
        Box::new(RmsProp::new(
            v,
            RmsPropConfig {
                lr: 0.01,
                ..Default::default()
            },
        ))
    });
    check("rmsprop_momentum_centered", |v| {
        Box::new(RmsProp::new(
            v,
            RmsPropConfig {
                lr: 0.01,
                alpha: 0.9,
                momentum: 0.9,
                centered: true,
                weight_decay: 0.01,
                ..Default::default()
            },
        ))
    });
}

#[test]
fn optimizer_state_round_trip_continues_identically() {
    // Two Adam runs: one straight, one rebuilt from saved state after 2 steps.
    let make = |v| {
        Box::new(Adam::new(
            v,
            AdamConfig {
                lr: 0.1,
                ..Default::default()
            },
        )) as Box<dyn Optim>
    };
    let straight = trajectory(make);
    let w = Var::from_tensor(&t(&[0.5, -0.3, 0.8, -0.1, 0.2, 0.4], &[2, 3])).unwrap();
    let b = Var::from_tensor(&t(&[0.1, -0.2], &[2])).unwrap();
    let vars = || vec![("w".to_string(), w.clone()), ("b".to_string(), b.clone())];
    let x = t(
        &[
            1.0, 2.0, -1.0, 0.5, -1.5, 2.0, -2.0, 0.3, 0.7, 1.2, 1.1, -0.4,
        ],
        &[4, 3],
    );
    let y = t(&[1.0, -1.0, 0.0, 2.0, -1.5, 0.5, 0.7, 0.3], &[4, 2]);
    let step = |opt: &mut Adam| {
        let pred = x
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        let loss = (pred - &y).unwrap().sqr().unwrap().mean_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    };
    let mut first = Adam::new(
        vars(),
        AdamConfig {
            lr: 0.1,
            ..Default::default()
        },
    );
    step(&mut first);
    step(&mut first);
    let saved = first.state();
    assert_eq!(saved.scalars["step"], 2.0);
    assert!(saved.tensors.contains_key("w.exp_avg") && saved.tensors.contains_key("b.exp_avg_sq"));
    let mut second = Adam::new(vars(), AdamConfig::default());
    second.load_state(&saved).unwrap();
    assert_eq!(second.learning_rate(), 0.1);
    for _ in 0..3 {
        step(&mut second);
    }
    let w_end: Vec<f64> = w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(
        w_end, straight[4].0,
        "resumed optimizer must continue bit for bit"
    );
}

#[test]
fn loading_state_of_other_shapes_is_refused() {
    let w = Var::zeros((2, 3), DType::F64, &Device::Cpu).unwrap();
    let other = Var::zeros((3, 3), DType::F64, &Device::Cpu).unwrap();
    let mut a = Adam::new(vec![("w".into(), other.clone())], AdamConfig::default());
    let loss = other.as_tensor().sum_all().unwrap();
    a.step(&loss.backward().unwrap()).unwrap();
    let mut b = Adam::new(vec![("w".into(), w)], AdamConfig::default());
    let err = b.load_state(&a.state()).unwrap_err().to_string();
    assert!(err.contains("w.exp_avg") && err.contains("shape"), "{err}");
}

fn check_lrs(name: &str, s: &mut dyn LrSchedule, tol: f64) {
    let expected: Vec<f64> = reference()[name]["lr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (k, e) in expected.iter().enumerate() {
        let got = s.learning_rate(k);
        assert!(
            (got - e).abs() <= tol,
            "{name} step {k}: lr {got} vs PyTorch {e}"
        );
    }
}

#[test]
fn schedules_match_pytorch() {
    check_lrs(
        "steplr",
        &mut StepDecay {
            lr: 0.1,
            step_size: 3,
            gamma: 0.5,
        },
        1e-15,
    );
    check_lrs(
        "exponentiallr",
        &mut Exponential {
            lr: 0.1,
            gamma: 0.9,
        },
        1e-15,
    );
    check_lrs("onecyclelr", &mut OneCycle::new(0.1, 12), 1e-15);
    check_lrs(
        "cosineannealinglr",
        &mut WarmupCosine::cosine(0.1, 0.001, 12),
        1e-15,
    );
    let mut wc = WarmupCosine {
        lr: 0.1,
        min_lr: 0.0,
        warmup_steps: 4,
        warmup_start: 0.25,
        total_steps: 12,
    };
    check_lrs("linear_then_cosine", &mut wc, 1e-15);
}

#[test]
fn reduce_on_plateau_matches_pytorch() {
    let metrics = [
        1.0, 0.9, 0.91, 0.92, 0.93, 0.85, 0.86, 0.86, 0.86, 0.86, 0.5, 0.6,
    ];
    let expected = reference()["reduce_lr_on_plateau"]["lr"].clone();
    let mut s = ReduceOnPlateau::new(0.1, Direction::Min);
    s.factor = 0.5;
    s.patience = 2;
    for (i, m) in metrics.iter().enumerate() {
        s.on_epoch_end(Some(*m));
        assert_eq!(
            s.learning_rate(0),
            expected[i].as_f64().unwrap(),
            "after epoch {}",
            i + 1
        );
    }
    // Its state survives a save and load.
    let mut restored = ReduceOnPlateau::new(1.0, Direction::Min);
    restored.load_state(&s.state()).unwrap();
    assert_eq!(restored.learning_rate(0), s.learning_rate(0));
}
