//! Models: shapes, training/evaluation modes, batch-norm statistics and gradients.

use candle_core::{DType, Device, ModuleT, Tensor};
use candle_nn::VarMap;
use taper_train::gradcheck::check_gradients;
use taper_train::seed::seeded_var_builder;
use taper_vision::models::*;

fn x(n: usize, side: usize) -> Tensor {
    Tensor::randn(0f32, 1.0, (n, 1, side, side), &Device::Cpu).unwrap()
}

#[test]
fn shapes_and_names() {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 0, DType::F32, &Device::Cpu);
    let lenet = LeNet::new(LeNetConfig::mnist(), vb.pp("lenet")).unwrap();
    assert_eq!(lenet.forward_t(&x(3, 28), false).unwrap().dims(), &[3, 10]);
    let cnn = Cnn::new(CnnConfig::digits(), vb.pp("cnn")).unwrap();
    assert_eq!(cnn.forward_t(&x(2, 8), true).unwrap().dims(), &[2, 10]);
    let res = ResNet::new(ResNetConfig::small(1, (28, 28), 10), vb.pp("res")).unwrap();
    assert_eq!(res.forward_t(&x(2, 28), true).unwrap().dims(), &[2, 10]);
    let names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    for n in [
        "lenet.conv1.weight",
        "lenet.fc2.bias",
        "cnn.block0.bn.running_mean",
        "res.stage1.block0.shortcut.conv.weight",
    ] {
        assert!(names.iter().any(|k| k == n), "{n} missing from {names:?}");
    }
    let e = lenet.forward_t(&x(1, 8), false).unwrap_err().to_string();
    assert!(
        e.contains("model expects images (N, 1, 28, 28), got [1, 1, 8, 8]"),
        "{e}"
    );
    assert!(LeNet::new(
        LeNetConfig {
            image_size: (4, 4),
            ..LeNetConfig::mnist()
        },
        vb.pp("tiny")
    )
    .is_err());
}

#[test]
fn batch_norm_statistics_move_only_in_training() {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 0, DType::F32, &Device::Cpu);
    let cnn = Cnn::new(CnnConfig::digits(), vb).unwrap();
    let rm = || {
        vm.data().lock().unwrap()["block0.bn.running_mean"]
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap()
    };
    let before = rm();
    let input = (x(8, 8) + 3.0).unwrap();
    let e1 = cnn.forward_t(&input, false).unwrap();
    assert_eq!(
        rm(),
        before,
        "evaluation must not update running statistics"
    );
    let t1 = cnn.forward_t(&input, true).unwrap();
    assert_ne!(rm(), before, "training updates running statistics");
    // Evaluation is deterministic; training (dropout, batch statistics) differs from it.
    let e2 = cnn.forward_t(&input, false).unwrap();
    assert_ne!(
        e1.to_vec2::<f32>().unwrap(),
        e2.to_vec2::<f32>().unwrap(),
        "new statistics change eval output"
    );
    assert_eq!(
        e2.to_vec2::<f32>().unwrap(),
        cnn.forward_t(&input, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    );
    assert_ne!(t1.to_vec2::<f32>().unwrap(), e2.to_vec2::<f32>().unwrap());
}

#[test]
fn batch_norm_and_residual_blocks_have_exact_gradients() {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 0, DType::F64, &Device::Cpu);
    let block = resnet::BasicBlock::new(2, 3, 2, vb).unwrap();
    let input = Tensor::randn(0f64, 1.0, (3, 2, 4, 4), &Device::Cpu).unwrap();
    let r = check_gradients(|xs| block.forward_t(&xs[0], true), &[input], 1e-6, 40).unwrap();
    assert!(r.max_numeric > 1e-3 && r.passed(1e-5), "{r:?}");
}
