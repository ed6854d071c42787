//! Moving-digit clips (determinism, shapes, labels that follow the motion) and
//! the CNN + RNN clip classifier (shapes, bad input).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use taper_nn::init::seeded_var_builder;
use taper_nn::{Forward, Mode};
use taper_train::data::BatchSource;
use taper_vision::datasets::moving::DIRECTIONS;
use taper_vision::datasets::{
    clip_from_frames, digits, load_digits, MovingDigits, MovingDigitsConfig,
};
use taper_vision::models::video::{frame_classifier, video_classifier, RnnCell};
use taper_vision::models::VideoConfig;

fn digits24() -> Tensor {
    let (x, _) = load_digits(&digits::default_digits_path()).unwrap();
    x.narrow(0, 0, 50)
        .unwrap()
        .upsample_nearest2d(24, 24)
        .unwrap()
}

fn config(frames: usize, seed: u64) -> MovingDigitsConfig {
    MovingDigitsConfig {
        frames,
        clips: 200,
        seed,
        ..Default::default()
    }
}

/// Centre of mass (x, y) of a frame.
fn centre(frame: &[f32], side: usize) -> (f32, f32) {
    let (mut m, mut sx, mut sy) = (0f32, 0f32, 0f32);
    for (i, v) in frame.iter().enumerate() {
        m += v;
        sx += v * (i % side) as f32;
        sy += v * (i / side) as f32;
    }
    (sx / m, sy / m)
}

#[test]
fn clips_are_seeded_shaped_and_labelled_by_motion() {
    let d = digits24();
    let a = MovingDigits::new(&d, config(12, 3), &Device::Cpu).unwrap();
    let b = MovingDigits::new(&d, config(12, 3), &Device::Cpu).unwrap();
    let c = MovingDigits::new(&d, config(12, 4), &Device::Cpu).unwrap();
    assert_eq!(a.clip(7).unwrap(), b.clip(7).unwrap());
    assert_ne!(a.clip(7).unwrap().0, c.clip(7).unwrap().0);
    let batch = a.batch(&[0, 1, 2]).unwrap();
    assert_eq!(batch.inputs().dims(), &[3, 12, 1, 64, 64]);
    assert_eq!(batch.targets().dims(), &[3]);
    let px: Vec<f32> = batch.inputs().flatten_all().unwrap().to_vec1().unwrap();
    assert!(px.iter().all(|v| (0.0..=1.0).contains(v)));
    let mut counts = [0usize; 4];
    for i in 0..200 {
        let (px, label) = a.clip(i).unwrap();
        counts[label as usize] += 1;
        let f = 64 * 64;
        let (x1, y1) = centre(&px[10 * f..11 * f], 64);
        let (x2, y2) = centre(&px[11 * f..12 * f], 64);
        // Rounding to whole pixels can hide a sub-pixel step; a visible one must agree.
        let want_right = label < 2;
        let want_down = label % 2 == 0;
        if (x2 - x1).abs() > 0.5 {
            assert_eq!(
                x2 > x1,
                want_right,
                "clip {i}: {} but dx {}",
                DIRECTIONS[label as usize],
                x2 - x1
            );
        }
        if (y2 - y1).abs() > 0.5 {
            assert_eq!(
                y2 > y1,
                want_down,
                "clip {i}: {} but dy {}",
                DIRECTIONS[label as usize],
                y2 - y1
            );
        }
    }
    assert!(counts.iter().all(|&n| n > 25), "{counts:?}");
}

#[test]
fn clip_bad_input_is_refused() {
    let d = digits24();
    let e = MovingDigits::new(&d, config(0, 0), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("at least 2 frames"), "{e}");
    let big = d.upsample_nearest2d(64, 64).unwrap();
    let e = MovingDigits::new(&big, config(10, 0), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not fit"), "{e}");
    let a = MovingDigits::new(&d, config(10, 0), &Device::Cpu).unwrap();
    assert!(a.clip(200).is_err());
    let e = clip_from_frames(&[]).unwrap_err().to_string();
    assert!(e.contains("at least one frame"), "{e}");
    let f1 = Tensor::zeros((1, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let f2 = Tensor::zeros((1, 32, 64), DType::F32, &Device::Cpu).unwrap();
    let e = clip_from_frames(&[f1.clone(), f2]).unwrap_err().to_string();
    assert!(
        e.contains("frame 1 is [1, 32, 64], frame 0 is [1, 64, 64]"),
        "{e}"
    );
    assert_eq!(
        clip_from_frames(&[f1.clone(), f1]).unwrap().dims(),
        &[2, 1, 64, 64]
    );
}

#[test]
fn video_models_shapes_and_bad_clips() {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 0, DType::F32, &Device::Cpu);
    let cfg = VideoConfig::moving_digits(4);
    let lstm = video_classifier(cfg, vb.pp("lstm")).unwrap();
    let gru = video_classifier(
        VideoConfig {
            cell: RnnCell::Gru,
            ..cfg
        },
        vb.pp("gru"),
    )
    .unwrap();
    let single = frame_classifier(cfg, vb.pp("single")).unwrap();
    let clips = Tensor::zeros((2, 3, 1, 64, 64), DType::F32, &Device::Cpu).unwrap();
    for m in [&lstm as &dyn Forward, &gru, &single] {
        assert_eq!(
            m.forward_t(&clips, &Mode::train(0)).unwrap().dims(),
            &[2, 4]
        );
        let empty = Tensor::zeros((2, 0, 1, 64, 64), DType::F32, &Device::Cpu).unwrap();
        let e = m.forward_t(&empty, &Mode::eval()).unwrap_err().to_string();
        assert!(e.contains("0 frames"), "{e}");
        let small = Tensor::zeros((2, 3, 1, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let e = m.forward_t(&small, &Mode::eval()).unwrap_err().to_string();
        assert!(e.contains("frames are 1x32x32"), "{e}");
        let e = m
            .forward_t(&clips.squeeze(2).unwrap(), &Mode::eval())
            .unwrap_err()
            .to_string();
        assert!(e.contains("clips must be (N, frames, 1, 64, 64)"), "{e}");
    }
    let names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    for n in [
        "lstm.rnn.weight_ih_l0",
        "gru.rnn.weight_hh_l0",
        "single.head.weight",
        "lstm.encoder.conv1.weight",
    ] {
        assert!(names.iter().any(|k| k == n), "{n} missing");
    }
    assert!(video_classifier(
        VideoConfig {
            frame_size: (40, 40),
            ..cfg
        },
        vb.pp("bad")
    )
    .is_err());
}
