//! Helpers shared by the integration tests: the binary and run directories.
#![allow(dead_code)] // each test crate uses its own share of these

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// The `clustermoe` binary, without the Slurm variables of the test's own
/// environment (a test that wants them sets them itself).
pub fn clustermoe() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clustermoe"));
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs the binary with `args` to its end.
pub fn output<S: AsRef<OsStr>>(args: &[S]) -> Output {
    clustermoe().args(args).output().expect("the binary runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Copies `from` to `to`, subdirectories included (a run or a sweep).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
