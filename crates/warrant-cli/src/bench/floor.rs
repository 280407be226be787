//! The physical floor of a durable answer: how long the data directory's disk takes to
//! make one small write durable (`fdatasync`), measured in the same run as everything
//! else. A decision is answered only once its audit record is durable, so at concurrency 1
//! no decision can be faster than this.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::load::{histogram, Latency};
use super::BenchError;

/// How many durable writes the floor is measured over.
pub const SAMPLES: usize = 200;
/// The size of each write, bytes (an audit batch of one record is about this).
const WRITE: usize = 4096;
/// The probe file, removed afterwards.
const PROBE: &str = ".warrant-bench-fdatasync";

/// The floor as measured.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// The directory whose disk was measured.
    pub dir: PathBuf,
    /// One 4 KiB write and `fdatasync`, per sample.
    pub fdatasync: Latency,
}

/// Measures `SAMPLES` writes of 4 KiB, each followed by `fdatasync`, to a probe file in
/// `dir` (rewriting the same block, as a log's last page is), then removes the file.
pub async fn measure(dir: &Path) -> Result<Floor, BenchError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let path = dir.join(PROBE);
        let io = |source: std::io::Error| BenchError::Io { path: path.display().to_string(), source };
        let mut file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path).map_err(io)?;
        let block = vec![0x5a_u8; WRITE];
        let mut h = histogram()?;
        let mut outcome = Ok(());
        for _ in 0..SAMPLES {
            let started = Instant::now();
            let written =
                file.seek(SeekFrom::Start(0)).and_then(|_| file.write_all(&block)).and_then(|()| file.sync_data());
            if let Err(e) = written {
                outcome = Err(io(e));
                break;
            }
            h.saturating_record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1));
        }
        drop(file);
        let _ = std::fs::remove_file(&path);
        outcome?;
        Ok(Floor { dir: dir.clone(), fdatasync: Latency::of(&h) })
    })
    .await
    .map_err(|e| BenchError::Worker(e.to_string()))?
}
