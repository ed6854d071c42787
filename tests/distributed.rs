//! Data-parallel training under `mpirun` (feature `mpi`): two ranks of batch 16
//! equal one process of batch 32; a rank killed mid-epoch takes the job down
//! promptly, naming it, and the run resumes bit-exactly; a 2-rank checkpoint
//! resumes on one rank at an epoch boundary and refuses to mid-epoch.
//!
//! `make test` builds with the `mpi` feature where Open MPI is installed
//! (`tools/install_mpi.sh`); elsewhere these tests say they skipped and why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use taper::train::checkpoint;

mod common;
use common::{assert_succeeded, example};

/// `mpirun`, or why these tests cannot run here.
fn mpirun() -> Result<PathBuf, String> {
    if !cfg!(feature = "mpi") {
        return Err(
            "the tests were built without the `mpi` feature (make test enables it \
                    where Open MPI is installed: tools/install_mpi.sh)"
                .into(),
        );
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("mpirun"))
            .find(|p| p.is_file())
    });
    found.ok_or_else(|| "mpirun is not installed (tools/install_mpi.sh installs it)".into())
}

macro_rules! mpirun_or_skip {
    () => {
        match mpirun() {
            Ok(p) => p,
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
    };
}

/// `mpirun -np N mlp ARGS`, one thread per rank, as root where the tests run
/// as root (Open MPI refuses otherwise).
fn ranks(mpirun: &Path, n: usize, args: &[&str]) -> Command {
    let mut cmd = Command::new(mpirun);
    cmd.args(["-np", &n.to_string(), "--oversubscribe"])
        .arg(example("mlp"))
        .args(args)
        .args(["--threads", "1"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    cmd
}

fn single(args: &[&str]) -> Command {
    let mut cmd = Command::new(example("mlp"));
    cmd.args(args).args(["--threads", "1"]);
    cmd
}

fn run(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    assert_succeeded(&out);
    out
}

fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let t = checkpoint::read_tensors(dir, &candle_core::Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn latest(run: &Path) -> PathBuf {
    checkpoint::read(run, "latest")
        .unwrap()
        .unwrap()
        .weights_path()
}

#[test]
fn two_ranks_of_16_equal_one_rank_of_32() {
    let mpirun = mpirun_or_skip!();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // No dropout: the ranks' masks differ from one process's by design. A fifth
    // held out leaves 1,150 training items: 36 steps of 32, and the two ranks'
    // last batches (7 items each) make up one process's last batch of 14.
    let common = ["--epochs", "1", "--dropout", "0", "--valid-fraction", "0.2"];
    let (a, b) = (
        one.path().to_str().unwrap().to_string(),
        two.path().to_str().unwrap().to_string(),
    );
    run(single(
        &[&common[..], &["--batch-size", "32", "--out", &a]].concat(),
    ));
    let out = run(ranks(
        &mpirun,
        2,
        &[&common[..], &["--batch-size", "16", "--out", &b]].concat(),
    ));
    // Rank 0 alone prints: one final JSON line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with('{')).count(),
        1,
        "{stdout}"
    );
    let (w1, w2) = (weights(&latest(one.path())), weights(&latest(two.path())));
    assert_eq!(w1.len(), w2.len());
    let mut worst = 0f32;
    for ((n1, a), (n2, b)) in w1.iter().zip(&w2) {
        assert_eq!(n1, n2);
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(
        worst < 1e-5,
        "largest weight difference after 36 steps: {worst}"
    );
    // The ranks' figures are reduced: the 2-rank run logs what one process does.
    let line = |d: &Path| -> serde_json::Value {
        let s = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        serde_json::from_str(s.lines().next().unwrap()).unwrap()
    };
    let (l1, l2) = (line(one.path()), line(two.path()));
    let acc = |l: &serde_json::Value| l["valid"]["accuracy"].as_f64().unwrap();
    assert!((acc(&l1) - acc(&l2)).abs() < 0.01, "{l1}\n{l2}");
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.path().join("run.json")).unwrap())
            .unwrap();
    assert_eq!(run_json["ranks"], 2);
}

/// The process ids of the `mlp` ranks writing into `out` whose MPI rank is `rank`.
fn rank_pids(out: &str, rank: usize) -> Vec<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let read =
                |what: &str| std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
            let (cmd, env) = (read("cmdline"), read("environ"));
            let parts = |b: &[u8]| -> Vec<String> {
                b.split(|&c| c == 0)
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect()
            };
            let (cmd, env) = (parts(&cmd), parts(&env));
            cmd.first().is_some_and(|exe| exe.ends_with("/mlp"))
                && cmd.iter().any(|a| a == out)
                && env.contains(&want)
        })
        .collect()
}

#[test]
fn a_killed_rank_ends_the_job_and_the_run_resumes_bit_exactly() {
    let mpirun = mpirun_or_skip!();
    let common = [
        "--epochs",
        "6",
        "--batch-size",
        "16",
        "--checkpoint-every",
        "7",
    ];
    let reference = tempfile::tempdir().unwrap();
    let r = reference.path().to_str().unwrap();
    let t0 = Instant::now();
    run(ranks(&mpirun, 2, &[&common[..], &["--out", r]].concat()));
    let whole = t0.elapsed();
    let want = std::fs::read(latest(reference.path())).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut job = ranks(&mpirun, 2, &[&common[..], &["--out", d]].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill rank 1 once the run has checkpointed past its first epoch, so the
    // kill lands mid-run.
    let deadline = Instant::now() + whole * 4 + Duration::from_secs(30);
    let victim = loop {
        assert!(Instant::now() < deadline, "the 2-rank run never got going");
        let past_first = checkpoint::read(dir.path(), "latest")
            .ok()
            .flatten()
            .is_some_and(|c| c.state.epoch >= 1);
        let pids = rank_pids(d, 1);
        if past_first && !pids.is_empty() {
            break pids[0];
        }
        assert!(
            job.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let killed_at = Instant::now();
    let status = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The job (rank 0 with it) must end on its own, promptly.
    let mut ended = None;
    while killed_at.elapsed() < Duration::from_secs(30) {
        if let Some(s) = job.try_wait().unwrap() {
            ended = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(status) = ended else {
        let _ = job.kill();
        panic!("rank 0 still runs 30 s after rank 1 was killed");
    };
    let waited = killed_at.elapsed();
    let out = job.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !status.success(),
        "the job reported success after a rank was killed"
    );
    assert!(
        said.contains("rank 1"),
        "the message does not name the lost rank:\n{said}"
    );
    assert!(rank_pids(d, 0).is_empty(), "rank 0 outlived the job");
    eprintln!(
        "rank 1 killed: the job ended {:.1} s later",
        waited.as_secs_f64()
    );

    // Resume on two ranks: the same final weights, byte for byte.
    let ck = checkpoint::read(dir.path(), "latest").unwrap().unwrap();
    assert!(ck.state.epoch < 6, "the kill came after the run finished");
    run(ranks(&mpirun, 2, &[&common[..], &["--resume", d]].concat()));
    let got = std::fs::read(latest(dir.path())).unwrap();
    assert!(
        got == want,
        "the resumed 2-rank run ends with other weights"
    );
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 6, "one line per epoch");
}

#[test]
fn a_two_rank_checkpoint_resumes_on_one_rank_at_an_epoch_boundary() {
    let mpirun = mpirun_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    run(ranks(
        &mpirun,
        2,
        &["--epochs", "2", "--batch-size", "16", "--out", d],
    ));
    let out = run(single(&[
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--resume",
        d,
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data-parallel ranks 2 → 1"),
        "the resume does not say the world changed:\n{err}"
    );
    let ck = checkpoint::read(dir.path(), "latest").unwrap().unwrap();
    assert_eq!(ck.state.epoch, 3);
    assert_eq!(ck.state.data.as_ref().unwrap().world_size, 1);
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3);

    // Mid-epoch, another world size would repeat some items and skip others:
    // stop a 2-rank run (small batches: a long epoch) after its first mid-epoch
    // checkpoint.
    let mid = tempfile::tempdir().unwrap();
    let m = mid.path().to_str().unwrap();
    let mut job = ranks(
        &mpirun,
        2,
        &[
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--checkpoint-every",
            "10",
            "--out",
            m,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no mid-epoch checkpoint within 60 s"
        );
        let at = checkpoint::read(mid.path(), "latest").ok().flatten();
        if at.is_some_and(|c| c.state.batch_in_epoch > 0) {
            break;
        }
        assert!(
            job.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // Through a rank, so that mpirun takes the other down with it (a killed
    // mpirun would leave its ranks running).
    for pid in rank_pids(m, 1) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    job.wait().unwrap();
    assert!(rank_pids(m, 0).is_empty(), "rank 0 outlived the job");
    let ck = checkpoint::read(mid.path(), "latest").unwrap().unwrap();
    assert!(ck.state.batch_in_epoch > 0, "the kill missed the epoch");
    let out = single(&["--epochs", "1", "--batch-size", "2", "--resume", m])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data-parallel ranks 2 → 1") && err.contains("mid-epoch"),
        "{err}"
    );
}
