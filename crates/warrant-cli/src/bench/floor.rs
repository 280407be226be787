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

use super::load::{histogram, Latency};
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

/// `SAMPLES` writes of `block` at the start of `file`, each made durable with
/// `fdatasync`, each after `gap` of sleep (when given), timed without the sleep.
/// A failure names the probe file, `path`.
fn syncs(file: &mut std::fs::File, block: &[u8], gap: Option<Duration>, path: &Path) -> Result<Latency, BenchError> {
    let io = |source: std::io::Error| BenchError::Io { path: path.display().to_string(), source };
    let mut h = histogram()?;
    for _ in 0..SAMPLES {
        if let Some(gap) = gap {
            std::thread::sleep(gap);
        }
        let started = Instant::now();
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(block).map_err(io)?;
        file.sync_data().map_err(io)?;
        h.saturating_record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1));
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
        let io = |source: std::io::Error| BenchError::Io { path: path.display().to_string(), source };
        let mut file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path).map_err(io)?;
        let block = vec![0x5a_u8; WRITE];
        let measured = syncs(&mut file, &block, None, &path)
            .and_then(|streamed| syncs(&mut file, &block, Some(IDLE_GAP), &path).map(|idle| (streamed, idle)));
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
        let started = Instant::now();
        let floor = measure(dir.path()).await.unwrap();
        // The gap is slept before each of the second series' syncs.
        assert!(started.elapsed() >= IDLE_GAP * SAMPLES as u32, "{:?}", started.elapsed());
        assert_eq!(floor.fdatasync.count, SAMPLES as u64);
        assert_eq!(floor.fdatasync_after_idle.count, SAMPLES as u64);
        assert_eq!(floor.idle_gap_ms, 0.5);
        assert!(!dir.path().join(PROBE).exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_directory_that_cannot_hold_the_probe_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not-there");
        let e = measure(&missing).await.unwrap_err();
        assert!(e.to_string().contains("not-there") && e.to_string().contains(PROBE), "{e}");
    }
}
