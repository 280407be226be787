//! A stand-in for the path of a durable answer, to compare server designs with
//! `warrant bench --baseline URL` (the same client and load as every Warrant figure).
//!
//! `answer-path MODE RUNTIME ADDR DIR` serves the harness's `POST /ping` (a small JSON
//! body echoed back) on ADDR. Before answering, every request encodes a record of about
//! 340 bytes and, by MODE:
//!
//! - `plain`: nothing more (the HTTP stack alone);
//! - `durable`: writes it into a preallocated log file in DIR and waits for
//!   `fdatasync`, on the thread that read the request;
//! - `sqlite`: inserts it into a SQLite table (WAL, `synchronous = FULL`) in DIR and
//!   commits, on the thread that read the request;
//! - `handoff`: queues it for a writer thread that writes every queued record and syncs
//!   once (a group commit), and waits for its answer: the shape of Warrant's audit log;
//! - `lead`: a group commit led by the request threads themselves: a request that finds
//!   no sync under way writes every waiting record (its own first) and syncs, on its own
//!   thread; one that finds a sync under way queues its record and waits for the leader.
//!
//! RUNTIME is `current` (one thread runs every connection, tokio's current-thread
//! runtime), `multi` (tokio's work-stealing runtime, one worker per core, as Warrant
//! runs) or `percore` (one current-thread runtime per core, each accepting on the same
//! port with `SO_REUSEPORT`, so a connection stays on the thread that accepted it).
//! `durable` and `sqlite` hold one lock through each sync, so they model one request at
//! a time: compare them at concurrency 1.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The log file's size: it is filled with zeros first and writes wrap around inside it,
/// so a sync never has to record a larger file or a new block (as a reused write-ahead
/// log).
const LOG_BYTES: u64 = 64 << 20;

/// The harness's ping body.
#[derive(Debug, Deserialize, Serialize)]
struct Ping {
    agent: String,
    action: String,
    n: u64,
}

/// The answer the harness checks.
#[derive(Debug, Serialize)]
struct Pong {
    ok: bool,
    agent: String,
    n: u64,
}

/// The record made durable per request: the ping and a fixed payload, about the size of
/// a decision's audit record.
#[derive(Debug, Serialize)]
struct Record<'a> {
    ping: &'a Ping,
    detail: &'a str,
}

const DETAIL: &str = "an audit record carries the warrant, the agent, its chain, the action, the resource, \
    the policies that decided, the reason and the time; this text stands in for them so that each record is \
    about as long as a decision's, which is what a sync has to carry to the disk";

/// A log file written in place, wrapping around.
#[derive(Debug)]
struct Log {
    file: File,
    at: u64,
}

impl Log {
    fn create(dir: &Path) -> std::io::Result<Log> {
        let file =
            File::options().create(true).truncate(true).read(true).write(true).open(dir.join("answer-path.log"))?;
        // Zeros written, not a sparse file: a sync then never has to allocate a block.
        let zeros = vec![0_u8; 1 << 20];
        for at in (0..LOG_BYTES).step_by(zeros.len()) {
            file.write_all_at(&zeros, at)?;
        }
        file.sync_all()?;
        Ok(Log { file, at: 0 })
    }

    /// Writes `bytes` after the last write and waits until they are on disk.
    fn append_durably(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len = u64::try_from(bytes.len()).unwrap_or(LOG_BYTES);
        if self.at + len > LOG_BYTES {
            self.at = 0;
        }
        self.file.write_all_at(bytes, self.at)?;
        self.file.sync_data()?;
        self.at += len;
        Ok(())
    }
}

/// Where a request's record goes.
enum Sink {
    Nothing,
    Durable(Mutex<Log>),
    Sqlite(Mutex<rusqlite::Connection>),
    Handoff(mpsc::Sender<Waiting>),
    Lead(Lead),
}

/// A group commit led by the request threads themselves: a record that finds no sync
/// under way writes and syncs every record waiting (its own first) on its own thread;
/// one that finds a sync under way queues itself and waits for the leader.
struct Lead {
    log: Mutex<Log>,
    state: Mutex<LeadState>,
}

/// A record queued for a group commit, and where its answer goes.
type Waiting = (Vec<u8>, oneshot::Sender<Result<(), String>>);

/// One group commit: every record of `batch` in one durable append. The records after
/// the first `skip` are answered here; the callers of those skipped hear the result
/// returned.
fn commit(log: &mut Log, batch: Vec<Waiting>, skip: usize) -> Result<(), String> {
    let bytes: Vec<u8> = batch.iter().flat_map(|(record, _)| record.iter().copied()).collect();
    let written = log.append_durably(&bytes).map_err(|e| e.to_string());
    for (_, answer) in batch.into_iter().skip(skip) {
        let _ = answer.send(written.clone());
    }
    written
}

#[derive(Default)]
struct LeadState {
    syncing: bool,
    waiting: Vec<Waiting>,
}

impl Lead {
    async fn record(&self, bytes: Vec<u8>) -> Result<(), String> {
        let follow = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.syncing {
                let (tx, rx) = oneshot::channel();
                state.waiting.push((bytes, tx));
                Err(rx)
            } else {
                state.syncing = true;
                let mut batch = std::mem::take(&mut state.waiting);
                batch.insert(0, (bytes, oneshot::channel().0));
                Ok(batch)
            }
        };
        let mut batch = match follow {
            Err(rx) => return rx.await.map_err(|e| e.to_string())?,
            Ok(batch) => batch,
        };
        // The leader's own result, kept until it hands the lead back. It goes on leading
        // (with no bound: this is what a real design would have to limit) while records
        // wait, and returns only once none does; nothing here returns early, so the lead
        // is always handed back (a poisoned lock is taken as it is).
        let mut own = None;
        loop {
            // The leader's own record is first in its first batch; it is answered by
            // returning, not through the channel.
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            let written = commit(&mut log, batch, usize::from(own.is_none()));
            drop(log);
            own.get_or_insert(written);
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.waiting.is_empty() {
                state.syncing = false;
                return own.unwrap_or(Ok(()));
            }
            batch = std::mem::take(&mut state.waiting);
        }
    }
}

impl Sink {
    fn open(mode: &str, dir: &Path) -> Result<Sink, String> {
        Ok(match mode {
            "plain" => Sink::Nothing,
            "durable" => Sink::Durable(Mutex::new(Log::create(dir).map_err(|e| e.to_string())?)),
            "sqlite" => {
                let conn = rusqlite::Connection::open(dir.join("answer-path.db")).map_err(|e| e.to_string())?;
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);",
                )
                .map_err(|e| e.to_string())?;
                Sink::Sqlite(Mutex::new(conn))
            }
            "handoff" => {
                let mut log = Log::create(dir).map_err(|e| e.to_string())?;
                let (tx, rx) = mpsc::channel::<Waiting>();
                std::thread::spawn(move || {
                    while let Ok(first) = rx.recv() {
                        let mut batch = vec![first];
                        batch.extend(rx.try_iter());
                        // Every caller is answered through its channel.
                        let _ = commit(&mut log, batch, 0);
                    }
                });
                Sink::Handoff(tx)
            }
            "lead" => Sink::Lead(Lead {
                log: Mutex::new(Log::create(dir).map_err(|e| e.to_string())?),
                state: Mutex::default(),
            }),
            other => return Err(format!("unknown mode {other:?}: plain, durable, sqlite, handoff or lead")),
        })
    }

    async fn record(&self, bytes: Vec<u8>) -> Result<(), String> {
        let lost = |e: &dyn std::fmt::Display| format!("the record was not written: {e}");
        match self {
            Sink::Nothing => Ok(()),
            Sink::Durable(log) => log.lock().map_err(|e| lost(&e))?.append_durably(&bytes).map_err(|e| lost(&e)),
            Sink::Sqlite(conn) => conn
                .lock()
                .map_err(|e| lost(&e))?
                .execute("INSERT INTO records (body) VALUES (?1)", [&bytes])
                .map(|_| ())
                .map_err(|e| lost(&e)),
            Sink::Lead(lead) => lead.record(bytes).await.map_err(|e| lost(&e)),
            Sink::Handoff(queue) => {
                let (answer, answered) = oneshot::channel();
                queue.send((bytes, answer)).map_err(|e| lost(&e))?;
                answered.await.map_err(|e| lost(&e))?.map_err(|e| lost(&e))
            }
        }
    }
}

async fn ping(
    axum::extract::State(sink): axum::extract::State<Arc<Sink>>,
    axum::Json(ping): axum::Json<Ping>,
) -> Result<axum::Json<Pong>, (axum::http::StatusCode, String)> {
    let record = serde_json::to_vec(&Record { ping: &ping, detail: DETAIL })
        .map_err(|e| (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // Answer only once the record is durable; a failed write is a failed request.
    sink.record(record).await.map_err(|e| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(axum::Json(Pong { ok: !ping.action.is_empty(), agent: ping.agent, n: ping.n }))
}

fn main() -> std::process::ExitCode {
    match serve() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("answer-path: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn serve() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, runtime, addr, dir] = args.as_slice() else {
        return Err("usage: answer-path plain|durable|sqlite|handoff|lead current|multi|percore ADDR DIR".into());
    };
    let sink = Arc::new(Sink::open(mode, Path::new(dir))?);
    if runtime == "percore" {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        if addr.port() == 0 {
            return Err("percore needs a fixed port: every thread listens on the same one".into());
        }
        // Every listener is bound before any thread starts, so a failure is reported here.
        let listeners = (0..cores)
            .map(|_| {
                let socket =
                    if addr.is_ipv6() { tokio::net::TcpSocket::new_v6() } else { tokio::net::TcpSocket::new_v4() }
                        .map_err(|e| e.to_string())?;
                socket.set_reuseaddr(true).map_err(|e| e.to_string())?;
                socket.set_reuseport(true).map_err(|e| e.to_string())?;
                socket.bind(addr).map_err(|e| format!("{addr}: {e}"))?;
                Ok(socket)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let threads: Vec<_> = listeners
            .into_iter()
            .map(|socket| {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || -> Result<(), String> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    rt.block_on(async move {
                        let listener = socket.listen(1024).map_err(|e| e.to_string())?;
                        let app = axum::Router::new().route("/ping", axum::routing::post(ping)).with_state(sink);
                        axum::serve(listener, app).await.map_err(|e| e.to_string())
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().map_err(|_| "a server thread panicked".to_owned())??;
        }
        return Ok(());
    }
    let runtime = match runtime.as_str() {
        "current" => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        "multi" => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        other => return Err(format!("unknown runtime {other:?}: current, multi or percore")),
    }
    .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr.as_str()).await.map_err(|e| format!("{addr}: {e}"))?;
        let app = axum::Router::new().route("/ping", axum::routing::post(ping)).with_state(sink);
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })
}
