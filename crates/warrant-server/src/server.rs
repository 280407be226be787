//! Running the server: the data directory, the admin token, binding, serving, graceful
//! shutdown. [`SystemClock`] lives here: the only place that reads the real clock.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use tokio::net::TcpListener;
use warrant_core::UnixTime;
use warrant_engine::{BackgroundOptions, Clock, Engine, EngineConfig, OpenError};
use warrant_store::{PgStore, SqliteOptions, SqliteStore, Store, StoreError, WriterNice, WriterPriority};

use crate::app::app;
use crate::config::{Database, Settings};
use crate::state::{sha256, AdminToken, AppState};

/// The database file inside the data directory.
pub const DB_FILE: &str = "warrant.db";
/// The admin token file inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// How often the key ring is reloaded from the store (picks up `warrant key rotate`).
pub const KEY_REFRESH: Duration = Duration::from_secs(10);
/// The lock file inside the data directory: held by the server while it runs.
pub const LOCK_FILE: &str = "lock";
/// The policy directory inside the data directory.
pub const POLICY_DIR: &str = "policies";
/// How often the policy directory is checked for changes.
pub const POLICY_WATCH: Duration = Duration::from_secs(2);

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The origin of [`SystemClock`]'s ticks: the first time they were read.
static TICKS_ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        UnixTime(secs)
    }

    fn now_millis(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn ticks(&self) -> Duration {
        TICKS_ORIGIN.get_or_init(std::time::Instant::now).elapsed()
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The data directory or a file in it could not be prepared.
    #[error("data directory `{path}`: {source}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process (normally another `warrant serve`) holds the data directory.
    #[error(
        "the data directory `{}` is in use by another Warrant server ({}); stop it first or use another `--data`",
        path.display(),
        pid.map_or_else(|| "its pid is unknown".to_owned(), |p| format!("pid {p}"))
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// The holder's process id, as it wrote it into the lock file.
        pid: Option<u32>,
    },
    /// The store failed to open.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The engine could not start (keys, registry, policies, audit).
    #[error("cannot start: {0}")]
    Engine(#[from] OpenError),
    /// No usable key-encryption key.
    #[error("cannot start: {0}")]
    Kek(#[from] crate::kek::KekError),
    /// The metrics registry could not be built.
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
}

fn data_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::DataDir { path: path.to_owned(), source }
}

/// Creates the data directory (mode 0700 on Unix) if it does not exist.
fn ensure_dir(data: &Path) -> Result<(), ServeError> {
    if !data.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(data).map_err(data_err(data))?;
    }
    Ok(())
}

/// Creates the data directory (mode 0700 on Unix) if needed and opens the store in it.
/// It takes no lock: readers (`warrant audit verify`) may open a directory a server is
/// using; writers outside the server take a [`DataDirLock`] first.
pub fn open_store(data: &Path) -> Result<SqliteStore, ServeError> {
    open_store_with(data, &SqliteOptions::default())
}

/// [`open_store`], tuned by `options`.
fn open_store_with(data: &Path, options: &SqliteOptions) -> Result<SqliteStore, ServeError> {
    ensure_dir(data)?;
    Ok(SqliteStore::open_with(&data.join(DB_FILE), options)?)
}

/// A store [`open_database`] opened.
pub struct OpenedDatabase {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The nice value its commit thread runs at (SQLite on Linux; `None` otherwise).
    pub writer_nice: Option<i32>,
}

impl std::fmt::Debug for OpenedDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedDatabase").field("writer_nice", &self.writer_nice).finish_non_exhaustive()
    }
}

/// Opens the store `settings` name: SQLite in the data directory, or PostgreSQL
/// (migrated first unless `migrate` is off), which other servers may share.
pub async fn open_database(settings: &Settings) -> Result<OpenedDatabase, ServeError> {
    match &settings.database {
        Database::Sqlite => {
            let nice = settings.writer_nice.unwrap_or(WriterNice::RAISED);
            let store = open_store_with(&settings.data, &SqliteOptions::with_writer_nice(nice))?;
            match store.writer_priority() {
                // Asked for by name and not given: a warning. The default that the system
                // refuses (in a container without CAP_SYS_NICE, say) is only information.
                refused @ WriterPriority::Refused { .. } if settings.writer_nice.is_some() => {
                    tracing::warn!("{refused}; set `writer_nice = 0` not to ask")
                }
                refused @ WriterPriority::Refused { .. } => {
                    tracing::info!("{refused}; set `writer_nice = 0` not to ask")
                }
                priority => tracing::info!("{priority}"),
            }
            let writer_nice = store.writer_nice();
            Ok(OpenedDatabase { store: Arc::new(store), writer_nice })
        }
        Database::Postgres(url) => {
            let store = if settings.migrate {
                PgStore::open(url.expose()).await?
            } else {
                PgStore::open_without_migrating(url.expose()).await?
            };
            tracing::info!(database = %url, "using PostgreSQL (shared with any other server on it)");
            Ok(OpenedDatabase { store: Arc::new(store), writer_nice: None })
        }
    }
}

/// An exclusive lock on a data directory (`<data>/lock`, an OS file lock released when
/// the process ends, however it ends), held for as long as this value lives. A server
/// holds it while it runs, so a second server on the same directory refuses to start
/// instead of making the first one deny everything; `warrant key rotate` takes it too.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    /// Takes the lock, creating the directory if needed, and writes this process's id
    /// into the lock file. [`ServeError::Locked`] (with the holder's pid when it wrote
    /// one) when another process holds it.
    pub fn acquire(data: &Path) -> Result<Self, ServeError> {
        use std::io::{Read as _, Seek as _, Write as _};
        ensure_dir(data)?;
        let path = data.join(LOCK_FILE);
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(data_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                return Err(ServeError::Locked { path: data.to_owned(), pid });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(ServeError::DataDir { path, source: e }),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_all())
            .map_err(data_err(&path))?;
        Ok(DataDirLock { _file: file })
    }
}

/// The admin token of `<data>/admin.token` and `store`. On a database of one server: the
/// file's, created (mode 0600) on first start. On a database several servers share: the
/// token whose SHA-256 the database holds; the first server to start creates it, writes it
/// to its own data directory and stores its SHA-256, and every other server accepts it
/// (a token file of another value in a later server's data directory is ignored, with a
/// warning).
pub async fn admin_token(data: &Path, store: &dyn Store) -> Result<AdminToken, ServeError> {
    let path = data.join(ADMIN_TOKEN_FILE);
    let local = read_admin_token(&path)?;
    if !store.shared() {
        let token = match local {
            Some(token) => token,
            None => create_admin_token(&path)?,
        };
        return Ok(AdminToken::new(&token));
    }
    if let Some(digest) = store.admin_token_digest().await? {
        return Ok(match local {
            Some(token) if sha256(&token) == digest => AdminToken::new(&token),
            Some(_) => {
                tracing::warn!(path = %path.display(), "the admin token in this data directory is not the one the database's servers share; it is not accepted");
                AdminToken::by_digest(digest)
            }
            None => {
                tracing::info!(
                    "the admin token is the one the database's servers share (kept by the server that created it)"
                );
                AdminToken::by_digest(digest)
            }
        });
    }
    // No server claimed one yet: this one's, written before it is claimed so that a
    // claimed token is never lost, and removed again when another server claimed first.
    let (token, created) = match local {
        Some(token) => (token, false),
        None => (create_admin_token(&path)?, true),
    };
    let digest = store.claim_admin_token(sha256(&token)).await?;
    if digest == sha256(&token) {
        tracing::info!(path = %path.display(), "this server's admin token is the one the database's servers share");
        return Ok(AdminToken::new(&token));
    }
    if created {
        let _ = std::fs::remove_file(&path);
    }
    Ok(AdminToken::by_digest(digest))
}

/// The token in the admin token file, if there is one (an empty file is an error).
fn read_admin_token(path: &Path) -> Result<Option<String>, ServeError> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(path).map_err(data_err(path))?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the admin token file is readable by others; chmod 600 it");
                }
            }
            Ok(Some(text.trim().to_owned()))
        }
        Ok(_) => Err(ServeError::DataDir {
            path: path.to_owned(),
            source: std::io::Error::other("the admin token file is empty"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServeError::DataDir { path: path.to_owned(), source: e }),
    }
}

/// Creates the admin token file (mode 0600) with a new random token.
fn create_admin_token(path: &Path) -> Result<String, ServeError> {
    let bytes = warrant_engine::random::bytes::<32>()
        .map_err(|e| ServeError::DataDir { path: path.to_owned(), source: std::io::Error::other(e.to_string()) })?;
    let token = B64.encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(data_err(path))?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes()).map_err(data_err(path))?;
    file.sync_all().map_err(data_err(path))?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(token)
}

/// The issuer URL for a bound address when none is configured.
fn default_issuer(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// A server with its socket bound and its engine open, ready to [`run`](Self::run).
pub struct BoundServer {
    listener: TcpListener,
    state: AppState,
    body_limit: usize,
    webhook: Option<crate::webhook::WebhookConfig>,
    limits: crate::config::ServerLimits,
    /// Held until [`run`](Self::run) has finished (or this is dropped).
    lock: DataDirLock,
}

impl std::fmt::Debug for BoundServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundServer").field("addr", &self.listener.local_addr().ok()).finish_non_exhaustive()
    }
}

impl BoundServer {
    /// Locks the data directory (see [`DataDirLock`]), opens the store, the key-encryption key and the keys, and
    /// binds the listen address.
    pub async fn bind(settings: &Settings) -> Result<Self, ServeError> {
        let lock = DataDirLock::acquire(&settings.data)?;
        let OpenedDatabase { store, writer_nice } = open_database(settings).await?;
        let kek = crate::kek::for_store(store.as_ref(), &settings.kek_file, crate::kek::WhenMissing::Create).await?;
        let admin = admin_token(&settings.data, store.as_ref()).await?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServeError::Bind { addr: settings.listen, source })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: settings.listen, source })?;
        let issuer = settings.issuer.clone().unwrap_or_else(|| default_issuer(addr));
        let mut config = EngineConfig::for_issuer(&issuer);
        config.limits = settings.limits;
        config.session_ttl = settings.session_ttl;
        config.guard = settings.guard.clone();
        config.govern = settings.govern.clone();
        config.policy_dir = Some(settings.data.join(POLICY_DIR));
        config.kek = Some(kek);
        config.audit.witness = Some(settings.witness.clone());
        config.federation = settings.federation.clone();
        config.console_session_ttl = settings.console_session_ttl;
        config.ssf_allow_private_push = settings.ssf_allow_private_push;
        config.cluster = settings.cluster;
        config.spiffe = settings.spiffe.clone();
        let engine = Engine::open(store, Arc::new(SystemClock), config).await?;
        let metrics = crate::metrics::Metrics::new()?;
        if let Some(nice) = writer_nice {
            metrics.storage_writer_nice(nice)?;
        }
        let metrics = Arc::new(metrics);
        let limits = Arc::new(crate::ratelimit::RateLimits::new(&settings.server_limits));
        let state = AppState { engine: Arc::new(engine), admin_token: admin, metrics, limits };
        Ok(BoundServer {
            listener,
            state,
            body_limit: settings.body_limit,
            webhook: settings.webhook.clone(),
            limits: settings.server_limits,
            lock,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The issuer URL warrants carry.
    pub fn issuer(&self) -> &str {
        &self.state.engine.config().issuer
    }

    /// The engine requests to this server reach: for an in-process enforcement point
    /// (the MCP gateway inside `warrant serve`) that decides without HTTP.
    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.state.engine)
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> Option<&str> {
        self.state.admin_token.token()
    }

    /// The router [`run`](Self::run) serves, over the same state: requests sent to it
    /// in-process (e.g. with `tower::ServiceExt::oneshot`) reach the same engine. It
    /// runs no background loop (key refresh, policy watch, guard flush, governance):
    /// those run only under [`run`](Self::run).
    pub fn router(&self) -> axum::Router {
        app(self.state.clone(), self.body_limit)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and returns
    /// (see [`crate::listen`] for the connection limits).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let engine = Arc::clone(&self.state.engine);
        let background = engine.start(BackgroundOptions {
            key_refresh: KEY_REFRESH,
            policy_watch: POLICY_WATCH,
            webhook: self.webhook.clone(),
        });
        let router = app(self.state, self.body_limit);
        let result =
            crate::listen::serve(self.listener, router, self.limits, shutdown).await.map_err(ServeError::Serve);
        // Every answered request's record is already durable; this stops the loops,
        // saves what is only in memory, drains what is queued and signs a last checkpoint.
        background.shutdown().await;
        // Only now may another process take the data directory.
        drop(self.lock);
        tracing::info!("server stopped");
        result
    }
}

/// Completes on Ctrl-C or SIGTERM; the signal handlers are registered when this is called,
/// so call it before announcing that the server is up.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // Registered now, not when the future is first polled: a SIGTERM that arrives right
    // after the server says it is listening must shut it down gracefully, not kill it.
    #[cfg(unix)]
    let (terminate, interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}
