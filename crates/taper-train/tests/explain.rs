//! Attributions: exact values on linear models, completeness of Integrated
//! Gradients, Grad-CAM shapes and ranges, and the model-parameter randomisation
//! sanity test (Adebayo et al. 2018) on a trained network.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{linear, Linear, VarMap};
use taper_nn::init::seeded_var_builder;
use taper_nn::{conv2d, Conv2d, Conv2dConfig};
use taper_train::explain::{
    gauss_legendre, grad_cam, integrated_gradients, rank_correlation, saliency, smooth_grad, to_map,
};
use taper_train::optim::{named_vars, Adam, AdamConfig};
use taper_train::Result;

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn gauss_legendre_integrates_polynomials_exactly() {
    for n in [1, 2, 5, 16, 40] {
        let (x, w) = gauss_legendre(n);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "n={n}");
        assert!(x.iter().all(|&t| (0.0..=1.0).contains(&t)));
        // Degree 2n-1 is exact: integral of t^(2n-1) over [0,1] = 1/(2n).
        let d = 2 * n as i32 - 1;
        let q: f64 = x.iter().zip(&w).map(|(t, w)| w * t.powi(d)).sum();
        assert!((q - 1.0 / (2.0 * n as f64)).abs() < 1e-10, "n={n}: {q}");
    }
}

#[test]
fn linear_model_saliency_is_its_weight_row_and_ig_is_exact() -> Result<()> {
    let dev = Device::Cpu;
    let w = Tensor::new(&[[1.0f32, -2.0, 0.5], [0.0, 3.0, -1.0]], &dev)?;
    let b = Tensor::new(&[0.25f32, -0.5], &dev)?;
    let model = Linear::new(w.clone(), Some(b));
    let f = |x: &Tensor| Ok(model.forward(x)?);
    let x = Tensor::new(&[[1.0f32, 2.0, 3.0], [-1.0, 0.5, 2.0]], &dev)?;
    let g = saliency(f, &x, &[1, 0])?;
    assert_eq!(
        g.to_vec2::<f32>()?,
        vec![vec![0.0, 3.0, -1.0], vec![1.0, -2.0, 0.5]]
    );
    let ig = integrated_gradients(f, &x, None, &[1, 0], 4)?;
    // For a linear model IG = w_target * (x - 0), and completeness is exact.
    let want = Tensor::new(&[[0.0f32, 6.0, -3.0], [-1.0, -1.0, 1.0]], &dev)?;
    assert!(close(
        &ig.attributions.flatten_all()?.to_vec1()?,
        &want.flatten_all()?.to_vec1()?,
        1e-6
    ));
    assert!(ig.relative_gap() < 1e-5, "{:?}", ig.delta);
    // No noise: SmoothGrad is the plain gradient.
    let sg = smooth_grad(f, &x, &[1, 0], 3, 0.0, 1)?;
    assert_eq!(sg.to_vec2::<f32>()?, g.to_vec2::<f32>()?);
    Ok(())
}

#[test]
fn bad_targets_are_refused() {
    let dev = Device::Cpu;
    let model = Linear::new(Tensor::ones((2, 3), DType::F32, &dev).unwrap(), None);
    let f = |x: &Tensor| Ok(model.forward(x)?);
    let x = Tensor::ones((2, 3), DType::F32, &dev).unwrap();
    let e = saliency(f, &x, &[0]).unwrap_err();
    assert!(matches!(e, taper_train::Error::Shape { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("expected 2 (one per example), got 1"),
        "{e}"
    );
    let e = saliency(f, &x, &[0, 7]).unwrap_err();
    assert!(
        matches!(
            e,
            taper_train::Error::Label {
                label: 7,
                classes: 2
            }
        ),
        "{e}"
    );
    let e = integrated_gradients(
        f,
        &x,
        Some(&Tensor::ones(3, DType::F32, &dev).unwrap()),
        &[0, 1],
        8,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("baseline: expected [2, 3]"), "{e}");
}

/// Twenty features, of which only the first four decide the class: a model that
/// learnt the task must attribute its output to them.
fn task(n: usize, seed: u64) -> (Tensor, Tensor) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut x = vec![0f32; n * 20];
    let mut y = vec![0u32; n];
    for i in 0..n {
        for j in 0..20 {
            x[i * 20 + j] = rng.random_range(-1.0..1.0);
        }
        let s = x[i * 20] + x[i * 20 + 1] - x[i * 20 + 2] - x[i * 20 + 3];
        y[i] = (s > 0.0) as u32;
    }
    (
        Tensor::from_vec(x, (n, 20), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
    )
}

struct Mlp {
    a: Linear,
    b: Linear,
}

impl Mlp {
    fn new(vm: &VarMap, seed: u64) -> Self {
        let vb = seeded_var_builder(vm, seed, DType::F32, &Device::Cpu);
        Self {
            a: linear(20, 32, vb.pp("a")).unwrap(),
            b: linear(32, 2, vb.pp("b")).unwrap(),
        }
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.b.forward(&self.a.forward(x)?.relu()?)?)
    }
}

fn train(model: &Mlp, vm: &VarMap) -> f32 {
    use taper_train::optim::Optim;
    let (x, y) = task(512, 1);
    let mut opt = Adam::new(
        named_vars(vm, ""),
        AdamConfig {
            lr: 0.02,
            ..Default::default()
        },
    );
    for _ in 0..150 {
        let loss = taper_nn::cross_entropy(&model.forward(&x).unwrap(), &y).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    let (tx, ty) = task(256, 2);
    let pred = model.forward(&tx).unwrap().argmax(D::Minus1).unwrap();
    let ok = pred.eq(&ty).unwrap().to_dtype(DType::F32).unwrap();
    ok.mean_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn trained_attributions_complete_and_differ_from_random_weights() -> Result<()> {
    let vm = VarMap::new();
    let model = Mlp::new(&vm, 3);
    let random = Mlp::new(&VarMap::new(), 99);
    let acc = train(&model, &vm);
    assert!(acc > 0.9, "the model did not learn the task: {acc}");
    let (x, _) = task(16, 3);
    let target = vec![1u32; 16];
    let f = |t: &Tensor| model.forward(t);
    let ig = integrated_gradients(f, &x, None, &target, 256)?;
    assert!(
        ig.relative_gap() < 0.01,
        "completeness: attributions sum {:?} vs output change {:?}",
        ig.delta,
        ig.output_change
    );
    // Most attribution mass sits on the four informative features.
    let mass = ig.attributions.abs()?.sum(0)?.to_vec1::<f32>()?;
    let share = mass[..4].iter().sum::<f32>() / mass.iter().sum::<f32>();
    assert!(share > 0.6, "informative share {share}");
    // Randomised weights: the attribution ranking is unrelated.
    let ig_rand = integrated_gradients(|t: &Tensor| random.forward(t), &x, None, &target, 32)?;
    let rho = rank_correlation(&ig.attributions.abs()?, &ig_rand.attributions.abs()?)?;
    let rand_mass = ig_rand.attributions.abs()?.sum(0)?.to_vec1::<f32>()?;
    let rand_share = rand_mass[..4].iter().sum::<f32>() / rand_mass.iter().sum::<f32>();
    assert!(rho < 0.5, "rank correlation with random weights {rho}");
    assert!(
        rand_share < 0.4,
        "random model's informative share {rand_share}"
    );
    Ok(())
}

struct TinyCnn {
    conv: Conv2d,
    fc: Linear,
}

impl TinyCnn {
    fn features(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.conv.forward(x)?.relu()?)
    }
    fn head(&self, f: &Tensor) -> Result<Tensor> {
        Ok(self.fc.forward(&f.flatten_from(1)?)?)
    }
}

#[test]
fn grad_cam_maps_are_input_sized_and_scaled() -> Result<()> {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 5, DType::F32, &Device::Cpu);
    let net = TinyCnn {
        conv: conv2d(1, 4, 3, Conv2dConfig::default(), vb.pp("c"))?,
        fc: linear(4 * 6 * 6, 3, vb.pp("fc"))?,
    };
    // A fixed input (candle's CPU random source cannot be seeded), so the finite
    // difference below never straddles a ReLU kink by chance.
    let px: Vec<f32> = (0..128)
        .map(|i| 0.5 + 0.5 * (i as f32 * 0.37).sin())
        .collect();
    let x = Tensor::from_vec(px, (2, 1, 8, 8), &Device::Cpu)?;
    let cam = grad_cam(|t| net.features(t), |f| net.head(f), &x, &[0, 2])?;
    assert_eq!(cam.dims(), &[2, 8, 8]);
    let v = cam.flatten_all()?.to_vec1::<f32>()?;
    assert!(v.iter().all(|&c| (0.0..=1.0 + 1e-6).contains(&c)));
    for i in 0..2 {
        let m = v[i * 64..(i + 1) * 64].iter().cloned().fold(0.0, f32::max);
        assert!(m == 0.0 || (m - 1.0).abs() < 1e-5, "map {i} max {m}");
    }
    // The input gradient runs through taper's own convolution kernel: compare one
    // pixel with a central finite difference.
    let full = |t: &Tensor| net.head(&net.features(t)?);
    let g = saliency(full, &x, &[0, 2])?;
    let eps = 1e-3f32;
    let mut xp = x.flatten_all()?.to_vec1::<f32>()?;
    let k = 3 * 8 + 4;
    let score = |v: &[f32]| -> f32 {
        let t = Tensor::from_slice(v, (2, 1, 8, 8), &Device::Cpu).unwrap();
        full(&t).unwrap().to_vec2::<f32>().unwrap()[0][0]
    };
    xp[k] += eps;
    let up = score(&xp);
    xp[k] -= 2.0 * eps;
    let down = score(&xp);
    let fd = (up - down) / (2.0 * eps);
    let an = g.flatten_all()?.to_vec1::<f32>()?[k];
    assert!(
        (fd - an).abs() < 1e-3 * (1.0 + an.abs()),
        "fd {fd} vs autograd {an}"
    );
    let m = to_map(&g.get(0)?)?;
    assert_eq!(m.dims(), &[8, 8]);
    Ok(())
}
