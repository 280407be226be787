//! The physical floor of a durable answer: how long the data directory's disk takes to
//! make one small write durable (`fdatasync`), measured in the same run as everything
//! else. A decision is answered only once its audit record is durable, so at concurrency 1
//! no decision can be faster than this.
//!
//! It is measured twice: back to back (each sync starts as the last returns), and with
//! [`IDLE_GAP`] of sleep before each. A server answering one connection syncs once per
//! answer after a gap of a few tenths of a millisecond in which the disk had nothing to
//! do, and on a virtual disk a sync after such a gap takes longer than one in a stream
//! (likely because the device and its host go idle), so the second figure is closer to
//! what one connection meets; the first is the disk at its best.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::load::{histogram, micros, Latency};
use super::BenchError;

/// How many durable writes the floor is measured over.
pub const SAMPLES: usize = 200;
/// The size of each write, bytes (an audit batch of one record is about this).
const WRITE: usize = 4096;
/// The probe file, removed afterwards.
const PROBE: &str = ".warrant-bench-fdatasync";
/// The sleep before each sync of the second measurement: about the gap between two
/// syncs of a server answering one connection on a 2-core virtual machine (0.28 to
/// 0.45 ms there, depending on how its idle CPUs wait).
pub const IDLE_GAP: Duration = Duration::from_micros(500);

/// The floor as measured.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// The directory whose disk was measured.
    pub dir: PathBuf,
    /// One 4 KiB write and `fdatasync`, per sample, back to back.
    pub fdatasync: Latency,
    /// The same, each after [`IDLE_GAP`] of sleep (the sleep is not timed).
    pub fdatasync_after_idle: Latency,
    /// The requested gap, milliseconds (the real sleep is at least this).
    pub idle_gap_ms: f64,
}

/// An I/O failure on the probe file `path`, naming it.
fn on_probe(path: &Path) -> impl Fn(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io { path: path.display().to_string(), source }
}

/// `SAMPLES` writes of `block` at the start of `file`, each made durable with
/// `fdatasync`, each after `before_each` (nothing, or a sleep), which is not timed.
/// A failure names the probe file, `path`.
fn syncs(
    file: &mut std::fs::File,
    block: &[u8],
    path: &Path,
    mut before_each: impl FnMut(),
) -> Result<Latency, BenchError> {
    let io = on_probe(path);
    let mut h = histogram()?;
    for _ in 0..SAMPLES {
        before_each();
        let started = Instant::now();
        file.seek(SeekFrom::Start(0)).map_err(&io)?;
        file.write_all(block).map_err(&io)?;
        file.sync_data().map_err(&io)?;
        h.saturating_record(micros(started.elapsed()));
    }
    Ok(Latency::of(&h))
}

/// Measures `SAMPLES` writes of 4 KiB, each followed by `fdatasync`, to a probe file in
/// `dir` (rewriting the same block, as a log's last page is), back to back and then each
/// after [`IDLE_GAP`], then removes the file.
pub async fn measure(dir: &Path) -> Result<Floor, BenchError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let path = dir.join(PROBE);
        let mut file =
            std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path).map_err(on_probe(&path))?;
        let block = vec![0x5a_u8; WRITE];
        let measured = syncs(&mut file, &block, &path, || {}).and_then(|streamed| {
            syncs(&mut file, &block, &path, || std::thread::sleep(IDLE_GAP)).map(|idle| (streamed, idle))
        });
        drop(file);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the floor's probe file");
        }
        let (fdatasync, fdatasync_after_idle) = measured?;
        Ok(Floor { dir, fdatasync, fdatasync_after_idle, idle_gap_ms: IDLE_GAP.as_secs_f64() * 1000.0 })
    })
    .await
    .map_err(|e| BenchError::Worker(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_floor_is_measured_both_ways_and_leaves_no_probe_behind() {
        let dir = tempfile::tempdir().unwrap();
        let floor = measure(dir.path()).await.unwrap();
        assert_eq!(floor.fdatasync.count, SAMPLES as u64);
        assert_eq!(floor.fdatasync_after_idle.count, SAMPLES as u64);
        assert_eq!(floor.idle_gap_ms, 0.5);
        assert!(!dir.path().join(PROBE).exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn what_comes_before_each_sync_runs_before_every_one_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROBE);
        let mut file = std::fs::File::create(&path).unwrap();
        let mut gaps = 0;
        let latency = syncs(&mut file, &[1; WRITE], &path, || gaps += 1).unwrap();
        assert_eq!(gaps, SAMPLES);
        assert_eq!(latency.count, SAMPLES as u64);
    }

    #[tokio::test]
    async fn a_directory_that_cannot_hold_the_probe_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not-there");
        let e = measure(&missing).await.unwrap_err();
        assert!(e.to_string().contains("not-there") && e.to_string().contains(PROBE), "{e}");
    }
}
