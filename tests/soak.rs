//! Kill-and-resume soak: the `mlp` example is SIGKILLed at random moments (mid-step,
//! mid-evaluation, during checkpoint writes), resumed each time, and must end with
//! weights equal, bit for bit, to those of an uninterrupted run with the same seed.
//!
//! `TAPER_SOAK_KILLS` sets how many kills must land (default 6, which keeps this in
//! CI's budget; `make soak` asks for 25). Kill delays come from a fixed seed
//! (`TAPER_SOAK_SEED`, default 7) so a failing sequence can be replayed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use taper::train::checkpoint;

mod common;
use common::example;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The weights file `latest` points at, read through the library (so a kill that
/// left a half-written checkpoint behind the pointer would fail here).
fn latest(run: &Path) -> Option<(u64, Vec<u8>)> {
    let ck = checkpoint::read(run, "latest").expect("latest checkpoint readable")?;
    let path = ck.weights_path();
    checkpoint::read_tensors(&path, &candle_core::Device::Cpu).expect("weights load");
    Some((ck.state.iteration, std::fs::read(path).unwrap()))
}

/// Leftovers of an interrupted write: temporary files, or a checkpoint folder no
/// pointer names yet.
fn interrupted_write(run: &Path) -> bool {
    let root = run.join("checkpoints");
    let named: Vec<String> = ["latest", "best"]
        .iter()
        .filter_map(|w| std::fs::read_to_string(root.join(format!("{w}.json"))).ok())
        .collect();
    std::fs::read_dir(&root)
        .map(|rd| {
            rd.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.contains(".tmp-") || (e.path().is_dir() && !named.iter().any(|p| p.contains(&n)))
            })
        })
        .unwrap_or(false)
}

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn sigkill_at_random_moments_then_resume_is_bit_exact() {
    let kills_wanted = env_or("TAPER_SOAK_KILLS", 6);
    let mut rng = Lcg(env_or("TAPER_SOAK_SEED", 7));
    // Enough epochs that the run outlasts the kills; a checkpoint every 5 steps
    // puts many writes in the way of the kills.
    let epochs = (10 + 2 * kills_wanted).to_string();
    let common = ["--epochs", &epochs, "--checkpoint-every", "5"];
    let mlp = example("mlp");
    let spawn = |extra: &[&str], quiet: bool| {
        let mut cmd = Command::new(&mlp);
        cmd.args(common).args(extra).env("RAYON_NUM_THREADS", "2");
        if quiet {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        cmd
    };

    let reference = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let out = spawn(&["--out", reference.path().to_str().unwrap()], false)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let epoch_ms = t0.elapsed().as_millis() as u64 / (10 + 2 * kills_wanted);
    let want = latest(reference.path()).unwrap().1;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (mut kills, mut during_write, mut finished) = (0u64, 0u64, false);
    let mut last_iteration = 0u64;
    let mut attempts = 0;
    while kills < kills_wanted {
        attempts += 1;
        assert!(attempts < 20 * kills_wanted, "kills keep missing the run");
        let resume = dir.path().join("checkpoints/latest.json").exists();
        let args = if resume {
            ["--resume", d]
        } else {
            ["--out", d]
        };
        let mut child = spawn(&args, true).spawn().unwrap();
        // Anywhere from start-up to about two epochs in.
        std::thread::sleep(Duration::from_millis(20 + rng.below(2 * epoch_ms + 1)));
        if child.try_wait().unwrap().is_some() {
            finished = true;
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        during_write += interrupted_write(dir.path()) as u64;
        // The pointer only ever moves forward: no step before it is ever lost.
        if let Some((it, _)) = latest(dir.path()) {
            assert!(
                it >= last_iteration,
                "checkpoint went back from {last_iteration} to {it}"
            );
            last_iteration = it;
        }
    }
    assert!(
        !finished,
        "the run finished after only {kills} kills; raise its epochs"
    );
    let out = spawn(&["--resume", d], false).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = latest(dir.path()).unwrap().1;
    eprintln!(
        "soak: {kills} kills ({during_write} left an interrupted checkpoint write), \
         last checkpoint before the final resume at step {last_iteration}"
    );
    assert!(
        got == want,
        "after {kills} kills the final weights differ from the uninterrupted run"
    );
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count().to_string(),
        epochs,
        "one line per epoch"
    );
}
