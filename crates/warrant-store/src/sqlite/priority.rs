//! The group-commit writer's scheduling priority.
//!
//! Every decision, issuance and revocation waits for the commit that holds its write,
//! and one thread commits them all (`commit.rs`). Under load that thread is busy nearly
//! all the time, so whenever it is ready to run while every core is taken by request
//! handlers, it waits for a core, and every caller of its batch and of the batches
//! queued behind it waits with it. A lower nice value lets it take a core first; it
//! sleeps in each batch's sync, so it never holds a core for long.
//!
//! On Linux each thread has a nice value of its own, so only the writer is raised. Raising
//! a priority needs `CAP_SYS_NICE` (root has it) or an `RLIMIT_NICE` that allows it; when
//! the system refuses, the writer runs at the process's priority and the store works as
//! before. A writer already at the asked value or above (the whole process started with
//! a lower nice value) is left as it is: asking never lowers it.

use std::fmt;

/// The nice value asked for the writer thread: -20 (the highest priority) to 0 (the
/// default: the writer keeps the process's priority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterNice(i8);

impl WriterNice {
    /// The writer keeps the process's priority.
    pub const NORMAL: WriterNice = WriterNice(0);
    /// Nice -10: the writer runs before the request handlers when both are ready (what
    /// `warrant serve` asks for unless configured otherwise).
    pub const RAISED: WriterNice = WriterNice(-10);

    /// `nice`, when it is from -20 to 0.
    pub fn new(nice: i64) -> Result<Self, InvalidNice> {
        match i8::try_from(nice) {
            Ok(n) if (-20..=0).contains(&n) => Ok(WriterNice(n)),
            _ => Err(InvalidNice(nice)),
        }
    }

    /// The nice value.
    pub fn get(self) -> i32 {
        i32::from(self.0)
    }
}

/// A nice value outside -20 to 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidNice(pub i64);

impl fmt::Display for InvalidNice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the storage writer's nice value must be from -20 (highest priority) to 0 (the process's own), not {}",
            self.0
        )
    }
}

impl std::error::Error for InvalidNice {}

/// What became of the priority asked for the writer thread.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriterPriority {
    /// None was asked ([`WriterNice::NORMAL`]): the writer keeps the process's priority.
    Unchanged,
    /// The writer already ran at `nice`, the value asked or a higher priority, and was
    /// left so.
    AlreadyAt {
        /// The writer's nice value.
        nice: i32,
    },
    /// The writer thread (`thread`, its Linux thread id) now runs at `nice`.
    Raised {
        /// The writer's nice value.
        nice: i32,
        /// The writer's thread id (as `ps -L` shows it).
        thread: i32,
    },
    /// The system refused (`reason`): the writer runs at the process's priority.
    Refused {
        /// The nice value asked.
        nice: i32,
        /// The system's answer.
        reason: String,
    },
    /// This system gives threads no priority of their own (not Linux): the writer runs
    /// at the process's priority.
    Unsupported {
        /// The nice value asked.
        nice: i32,
    },
}

impl fmt::Display for WriterPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriterPriority::Unchanged => f.write_str("the storage writer runs at the process's priority"),
            WriterPriority::AlreadyAt { nice } => {
                write!(f, "the storage writer runs at nice {nice}, the process's priority, which is as high as asked")
            }
            WriterPriority::Raised { nice, thread } => {
                write!(f, "the storage writer (thread {thread}) runs at nice {nice}, before the request handlers")
            }
            WriterPriority::Refused { nice, reason } => write!(
                f,
                "the storage writer runs at the process's priority: raising it to nice {nice} was refused \
                 ({reason}; it needs CAP_SYS_NICE or an RLIMIT_NICE that allows it), so under load decisions \
                 wait longer for their audit records"
            ),
            WriterPriority::Unsupported { nice } => write!(
                f,
                "the storage writer runs at the process's priority: this system gives threads no priority of their \
                 own to raise it to nice {nice}"
            ),
        }
    }
}

/// Gives the calling thread (the writer, as it starts) the priority `nice` asks for.
pub(crate) fn raise_this_thread(nice: WriterNice) -> WriterPriority {
    if nice == WriterNice::NORMAL {
        return WriterPriority::Unchanged;
    }
    raise(nice.get())
}

/// The calling thread's nice value, read back after asking (`None` off Linux, where
/// threads have none of their own, or when it cannot be read).
pub(crate) fn this_thread_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(target_os = "linux")]
fn raise(nice: i32) -> WriterPriority {
    use rustix::process::{getpriority_process, setpriority_process};
    let thread = rustix::thread::gettid();
    // `PRIO_PROCESS` with a thread id reads and sets that thread alone on Linux.
    match getpriority_process(Some(thread)) {
        Ok(now) if now <= nice => return WriterPriority::AlreadyAt { nice: now },
        Ok(_) => {}
        Err(e) => return WriterPriority::Refused { nice, reason: e.to_string() },
    }
    match setpriority_process(Some(thread), nice) {
        Ok(()) => WriterPriority::Raised { nice, thread: thread.as_raw_nonzero().get() },
        Err(e) => WriterPriority::Refused { nice, reason: e.to_string() },
    }
}

#[cfg(not(target_os = "linux"))]
fn raise(nice: i32) -> WriterPriority {
    WriterPriority::Unsupported { nice }
}

/// `/proc`'s view of a process's threads, shared with the server's and the CLI's tests.
#[cfg(test)]
#[cfg(target_os = "linux")]
#[path = "../../tests/support/threads.rs"]
mod threads;

#[cfg(test)]
mod tests {
    use super::{raise_this_thread, InvalidNice, WriterNice, WriterPriority};
    use crate::sqlite::{SqliteOptions, SqliteStore};

    #[cfg(target_os = "linux")]
    use super::threads::{may_take_nice as may_take, threads, ProcThread};

    /// The store's writer, and only it, runs at the nice value asked, and writes as
    /// before; where the system refuses, the store says why and works all the same; a
    /// writer that starts higher (this thread already is) is left there.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_writer_thread_runs_at_the_nice_value_asked() {
        let dir = tempfile::tempdir().unwrap();
        // The writer thread starts at the value of the thread that opens the store.
        let own = super::this_thread_nice().unwrap();
        let asked = WriterNice::new(-5).unwrap();
        let store = SqliteStore::open_with(&dir.path().join("n.db"), &SqliteOptions::with_writer_nice(asked)).unwrap();
        match store.writer_priority().clone() {
            WriterPriority::Raised { nice, thread } => {
                assert!(own > -5, "raised from {own}");
                assert_eq!(nice, -5);
                let writer = threads("self").into_iter().find(|t| t.tid == thread);
                let expected = ProcThread { tid: thread, name: "warrant-sqlite-".to_owned(), nice: -5 };
                assert_eq!(writer, Some(expected), "the writer thread (its name cut to 15 bytes)");
                assert_eq!(super::this_thread_nice(), Some(own), "only the writer is raised");
                assert_eq!(store.writer_nice(), Some(-5), "the value it runs at, as the store reports it");
            }
            WriterPriority::AlreadyAt { nice } => {
                assert!(own <= -5 && nice == own, "at {nice}, this thread at {own}");
                assert_eq!(store.writer_nice(), Some(own));
            }
            WriterPriority::Refused { nice, reason } => {
                assert_eq!(nice, -5);
                assert!(!may_take(-5), "refused ({reason}) although a thread of this process may take -5");
                assert_eq!(store.writer_nice(), Some(own), "left at the value it started with");
            }
            other => panic!("asked for nice -5, got {other:?}"),
        }
        let written = store.write(|c| Ok(c.execute_batch("CREATE TABLE scratch (v INTEGER)")?)).await;
        assert!(written.is_ok(), "{written:?}");
    }

    /// Asking for nothing changes nothing; a writer already at a higher priority is left
    /// there, never lowered to the value asked.
    #[cfg(target_os = "linux")]
    #[test]
    fn asking_never_lowers_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SqliteStore::open(&dir.path().join("d.db")).unwrap().writer_priority(), &WriterPriority::Unchanged);
        if !may_take(-15) {
            return;
        }
        let outcome = std::thread::spawn(|| {
            rustix::process::setpriority_process(Some(rustix::thread::gettid()), -15).unwrap();
            raise_this_thread(WriterNice::RAISED)
        })
        .join()
        .unwrap();
        assert_eq!(outcome, WriterPriority::AlreadyAt { nice: -15 });
    }

    #[test]
    fn a_nice_value_is_from_minus_twenty_to_zero() {
        assert_eq!(WriterNice::new(-20).map(WriterNice::get), Ok(-20));
        assert_eq!(WriterNice::new(0), Ok(WriterNice::NORMAL));
        assert_eq!(WriterNice::new(-10), Ok(WriterNice::RAISED));
        assert_eq!(WriterNice::new(1), Err(InvalidNice(1)));
        assert_eq!(WriterNice::new(-21), Err(InvalidNice(-21)));
        assert_eq!(WriterNice::new(i64::MIN), Err(InvalidNice(i64::MIN)));
        assert!(InvalidNice(5).to_string().contains("from -20"));
    }
}
