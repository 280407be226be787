//! The audit witness: an append-only record of every signed checkpoint, kept outside
//! the database.
//!
//! Each checkpoint is appended as one JSON line `{seq, head_hash, at, kid, signature}`
//! (the same statement and JWS as the `audit_checkpoints` row) and the file is fsync'd
//! before the checkpoint is stored in the database. Whoever can rewrite the database but
//! not the witness (put it on another disk, an append-only mount, or ship it to a SIEM)
//! cannot truncate, wipe or re-chain the log without verification noticing: the witness
//! names heads the database must still have.

use std::io::{BufRead as _, Write as _};
use std::path::Path;

use serde::{Deserialize, Serialize};
use warrant_core::audit::hash_hex;
use warrant_core::UnixTime;
use warrant_store::StoredCheckpoint;

/// The witness file's name inside its default directory (`<data>/witness/`).
pub const WITNESS_FILE: &str = "audit-witness.jsonl";

/// One witnessed checkpoint: one line of the witness file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessLine {
    /// The head record's sequence number.
    pub seq: u64,
    /// The head record's hash, hex.
    pub head_hash: String,
    /// When the checkpoint was taken.
    pub at: UnixTime,
    /// The checkpoint key's id.
    pub kid: String,
    /// The compact JWS (`audit-checkpoint+jwt`) over `{seq, head_hash, at}`.
    pub signature: String,
}

impl WitnessLine {
    /// The line for a stored checkpoint.
    pub fn of(checkpoint: &StoredCheckpoint) -> Self {
        WitnessLine {
            seq: checkpoint.seq,
            head_hash: hash_hex(&checkpoint.head_hash),
            at: checkpoint.at,
            kid: checkpoint.kid.clone(),
            signature: checkpoint.signature.clone(),
        }
    }
}

/// What was read from a witness file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessContents {
    /// Every readable line with its line number (from 1), in file order.
    pub lines: Vec<(usize, WitnessLine)>,
    /// The first line that could not be parsed, with its number and why.
    pub unreadable: Option<(usize, String)>,
    /// Whether the file exists.
    pub exists: bool,
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Appends `line` to the witness at `path` (creating it, mode 0600, and its directory,
/// mode 0700) and waits until it is on disk. Blocking: call it off the async executor.
pub fn append(path: &Path, line: &WitnessLine) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    create_dir(dir)?;
    let created = !path.exists();
    let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
    text.push('\n');
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_data()?;
    #[cfg(unix)]
    if created && !dir.as_os_str().is_empty() {
        // Make the new directory entry durable too.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads the witness at `path`. A missing file reads as empty (`exists: false`); an
/// unparsable line stops the reading and is reported in `unreadable`.
pub fn read(path: &Path) -> std::io::Result<WitnessContents> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(WitnessContents::default()),
        Err(e) => return Err(e),
    };
    let mut contents = WitnessContents { exists: true, ..WitnessContents::default() };
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = index.saturating_add(1);
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<WitnessLine>(&line) {
            Ok(parsed) => contents.lines.push((number, parsed)),
            Err(e) => {
                contents.unreadable = Some((number, e.to_string()));
                break;
            }
        }
    }
    Ok(contents)
}
