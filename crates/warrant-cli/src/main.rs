//! `warrant`: the server, the admin commands, token tools and a guided demo.
//!
//! Everything printed to stdout goes through [`output::emit`] (`outln!`), which ends
//! quietly when the reader of a pipe goes away, and everything printed to stderr through
//! `errln!` ([`output::emit_err`]), which never panics; `println!` and `eprintln!` are
//! denied here.
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod output;

mod admin;
mod bench;
mod client;
mod demo;
mod evidence;
mod gateway;
mod govern;
mod guard;
mod keyfile;
mod ops;
mod pep;
mod serve_gateway;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use warrant_server::config::{FileConfig, Settings, DEFAULT_DATA_DIR};

/// mimalloc instead of the system allocator: under decision load glibc's malloc and free
/// took about a fifth of the CPU (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Warrant: identity, credentials and authorization for AI agents.
#[derive(Debug, Parser)]
#[command(name = "warrant", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server is and how to authenticate as admin.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The server's URL.
    #[arg(long, global = true, env = "WARRANT_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The admin token; by default read from `<data>/admin.token`.
    #[arg(long, global = true, env = "WARRANT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The data directory holding `admin.token`.
    #[arg(long, global = true, env = "WARRANT_DATA", default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Create or upgrade the database schema (safe to run twice, and from several
    /// machines at once), then exit.
    Migrate(MigrateArgs),
    /// Create an agent key pair as JWK files (`NAME.key.jwk`, mode 0600, and `NAME.pub.jwk`).
    Keygen(tokens::KeygenArgs),
    /// Manage humans.
    Human {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: admin::HumanCmd,
    },
    /// Manage the credentials of enforcement points (PEPs) for the AuthZEN PDP.
    Pep {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: pep::PepCmd,
    },
    /// Manage agents.
    Agent {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: AgentCommand,
    },
    /// Obtain, exchange and inspect warrants.
    Token {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: tokens::TokenCmd,
    },
    /// Ask for a decision: may this warrant do this action on this resource now?
    ///
    /// Exit status (with or without `--json`): 0 allow, 1 deny (or any error), 2 pending
    /// (a human must approve; retry with `--approval-id`).
    Authorize {
        #[command(flatten)]
        conn: Conn,
        /// The warrant; `-` reads stdin, `@FILE` reads a file.
        #[arg(long)]
        token: String,
        /// The concrete action, e.g. `crm.read`.
        #[arg(long)]
        action: String,
        /// The concrete resource path, e.g. `customers/42`.
        #[arg(long)]
        resource: String,
        /// Runtime telemetry as a JSON object, e.g. '{"estimated_cost": 120}'.
        #[arg(long)]
        context: Option<String>,
        /// Resource attributes as a JSON object.
        #[arg(long)]
        resource_attrs: Option<String>,
        /// Retry a `pending` decision with its approval, once approved (`apr_…`).
        #[arg(long)]
        approval_id: Option<String>,
    },
    /// List and show human approvals of pending decisions.
    Approvals {
        #[command(flatten)]
        conn: Conn,
        /// Act as this human: their approver token (`warrant human approver-session`, never
        /// the session token their agents exchange); `-` reads stdin, `@FILE` a file.
        /// Default: the admin token.
        #[arg(long = "approver", alias = "session", global = true)]
        session: Option<String>,
        #[command(subcommand)]
        cmd: guard::ApprovalsCmd,
    },
    /// Approve a pending decision: the agent's retry with the approval id is allowed once.
    Approve {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: guard::DecideArgs,
    },
    /// Reject a pending decision.
    Reject {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: guard::DecideArgs,
    },
    /// Stream live events (decisions, anomalies, quarantines, approvals, revocations), one
    /// JSON object per line, until interrupted.
    Events {
        #[command(flatten)]
        conn: Conn,
        /// Only events about this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only these kinds, comma-separated.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Revoke a warrant (with its descendants), an agent, a task or a human.
    Revoke {
        #[command(flatten)]
        conn: Conn,
        /// `warrant`, `agent`, `task` or `human`.
        #[arg(value_parser = ["warrant", "agent", "task", "human"])]
        kind: String,
        /// The id.
        id: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Show or complete tasks.
    Task {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: ops::TaskCmd,
    },
    /// Validate, show and reload Cedar policies.
    Policy {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: evidence::PolicyCmd,
    },
    /// Verify, export, trace and query the audit log.
    Audit {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: evidence::AuditCmd,
    },
    /// Review governance findings (a summary by kind and severity, then each finding with its
    /// evidence), or accept, apply or sweep.
    #[command(args_conflicts_with_subcommands = true)]
    Review {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        filter: govern::ReviewFilter,
        #[command(subcommand)]
        cmd: Option<govern::ReviewCmd>,
    },
    /// Export the agent inventory (owner, scope, activity, trust, attestation, findings)
    /// as CSV or JSON.
    Inventory {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: govern::InventoryArgs,
    },
    /// Manage the issuer's signing keys: on the data directory when no server runs on it,
    /// or through the running server with `--online`.
    Key {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Start a throw-away server and walk through human -> agent -> sub-agent.
    Demo,
    /// Load-test a server over HTTP (authorize, batch, mint, exchange, revocation) against a
    /// trivial axum endpoint measured with the same client.
    Bench(bench::BenchArgs),
    /// Run the MCP gateway: Streamable HTTP in front of upstream MCP servers, every call
    /// decided by the Warrant server (see docs/gateway.md).
    Gateway {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: gateway::GatewayArgs,
    },
}

/// `warrant agent …`: the registry commands and the governance ones.
#[derive(Debug, Subcommand)]
enum AgentCommand {
    #[command(flatten)]
    Registry(admin::AgentCmd),
    #[command(flatten)]
    Govern(govern::AgentGovernCmd),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Data directory [default: ./warrant-data].
    #[arg(long, env = "WARRANT_DATA")]
    data: Option<PathBuf>,
    /// The database: `sqlite` (a file in the data directory) or a
    /// `postgres://user:password@host:port/dbname` URL [default: sqlite].
    #[arg(long, env = "WARRANT_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// Do not create or upgrade the schema on start: refuse a database that is not at
    /// this build's version (run `warrant migrate` first), unless it lacks only indexes
    /// that later migrations add.
    #[arg(long, env = "WARRANT_NO_MIGRATE")]
    no_migrate: bool,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "WARRANT_LISTEN")]
    listen: Option<String>,
    /// Configuration file [default: <data>/warrant.toml when present].
    #[arg(long, env = "WARRANT_CONFIG")]
    config: Option<PathBuf>,
    /// Public issuer URL [default: http://<listen address>].
    #[arg(long, env = "WARRANT_ISSUER")]
    issuer: Option<String>,
    /// Default warrant lifetime, seconds [default: 300].
    #[arg(long, env = "WARRANT_DEFAULT_TTL")]
    default_ttl: Option<i64>,
    /// Maximum warrant lifetime, seconds [default: 900].
    #[arg(long, env = "WARRANT_MAX_TTL")]
    max_ttl: Option<i64>,
    /// Maximum delegation depth [default: 5].
    #[arg(long, env = "WARRANT_MAX_DEPTH")]
    max_depth: Option<usize>,
    /// Human session lifetime, seconds [default: 3600].
    #[arg(long, env = "WARRANT_SESSION_TTL")]
    session_ttl: Option<i64>,
    /// Largest request body, bytes [default: 65536].
    #[arg(long, env = "WARRANT_BODY_LIMIT")]
    body_limit: Option<usize>,
    /// The nice value of the SQLite store's commit thread, -20 to 0; 0 leaves it at the
    /// process's priority [default: -10, when the system allows it].
    #[arg(long, env = "WARRANT_WRITER_NICE", allow_negative_numbers = true)]
    writer_nice: Option<i64>,
    /// Log as JSON lines.
    #[arg(long, env = "WARRANT_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    keys: KeyPaths,
    #[command(flatten)]
    gateway: ServeGatewayArgs,
}

/// `warrant migrate`.
#[derive(Debug, Args)]
struct MigrateArgs {
    /// The database: `sqlite` (the file in `--data`) or a `postgres://` URL
    /// [default: the configuration's, else sqlite].
    #[arg(long, env = "WARRANT_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// Data directory, for SQLite and the configuration file [default: ./warrant-data].
    #[arg(long, env = "WARRANT_DATA")]
    data: Option<PathBuf>,
    /// Configuration file [default: <data>/warrant.toml when present].
    #[arg(long, env = "WARRANT_CONFIG")]
    config: Option<PathBuf>,
}

/// The MCP gateway inside `serve` (over the file's `[gateway]` table; any of them runs it).
#[derive(Debug, Args)]
struct ServeGatewayArgs {
    /// Run the MCP gateway with this upstream, `NAME=URL` (repeatable; replaces the
    /// table's `upstreams`).
    #[arg(
        long = "gateway-upstream",
        value_name = "NAME=URL",
        env = "WARRANT_GATEWAY_UPSTREAMS",
        value_delimiter = ','
    )]
    gateway_upstreams: Vec<String>,
    /// The gateway's listen address [default: 127.0.0.1:8090].
    #[arg(long = "gateway-listen", env = "WARRANT_GATEWAY_LISTEN")]
    gateway_listen: Option<String>,
    /// The gateway's public URL [default: http://<gateway address>].
    #[arg(long = "gateway-public-url", env = "WARRANT_GATEWAY_PUBLIC_URL")]
    gateway_public_url: Option<String>,
}

impl ServeGatewayArgs {
    /// The `[gateway]` values these flags set, if any.
    fn table(self) -> Result<Option<warrant_server::config::GatewayFile>, String> {
        let mut upstreams = std::collections::BTreeMap::new();
        for text in self.gateway_upstreams {
            let (name, url) =
                text.split_once('=').ok_or_else(|| format!("--gateway-upstream `{text}` is not NAME=URL"))?;
            if upstreams.insert(name.to_owned(), url.to_owned()).is_some() {
                return Err(format!("--gateway-upstream names `{name}` twice"));
            }
        }
        let any = !upstreams.is_empty() || self.gateway_listen.is_some() || self.gateway_public_url.is_some();
        Ok(any.then_some(warrant_server::config::GatewayFile {
            listen: self.gateway_listen,
            public_url: self.gateway_public_url,
            upstreams,
        }))
    }
}

/// Where the key-encryption key and the audit witness are, for every command that opens
/// the data directory (serve, `key rotate`, `audit verify`).
#[derive(Debug, Clone, Args)]
pub struct KeyPaths {
    /// The key-encryption key file, used when `WARRANT_KEK` (the key itself, base64 of 32
    /// bytes) is not set [default: <data>/keys/kek, created on first start; in production
    /// put it on another disk than the database or set `WARRANT_KEK`].
    #[arg(long, env = "WARRANT_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// The audit witness file every checkpoint is appended to [default:
    /// <data>/witness/audit-witness.jsonl; in production put it on another disk].
    #[arg(long, env = "WARRANT_WITNESS")]
    pub witness: Option<PathBuf>,
}

impl KeyPaths {
    /// The settings for `data` with these paths over `<data>/warrant.toml` (when present).
    pub fn settings(&self, data: &std::path::Path) -> Result<Settings, warrant_server::config::ConfigError> {
        let options = FileConfig {
            data: Some(data.to_owned()),
            kek_file: self.kek_file.clone(),
            witness: self.witness.clone(),
            ..FileConfig::default()
        };
        Settings::resolve(options, None)
    }
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Create a new signing key; the old one keeps verifying until its warrants expire.
    /// Without `--online` it works on the data directory and refuses while a server holds
    /// it.
    Rotate {
        #[command(flatten)]
        keys: KeyPaths,
        /// Rotate through the running server (`POST /v1/keys/rotate`, admin token) instead
        /// of on the data directory.
        #[arg(long)]
        online: bool,
    },
}

impl Conn {
    /// The admin token from the flag, the environment or `<data>/admin.token`.
    pub fn admin_token(&self) -> Option<String> {
        self.admin_token.clone().filter(|t| !t.trim().is_empty()).or_else(|| {
            std::fs::read_to_string(self.data.join(warrant_server::server::ADMIN_TOKEN_FILE))
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        })
    }

    /// The admin token, or an error saying where it was looked for and how to give one;
    /// checked before anything is sent.
    pub fn require_admin_token(&self) -> Result<String, client::ClientError> {
        self.admin_token().ok_or_else(|| client::ClientError::NoAdminToken {
            path: self.data.join(warrant_server::server::ADMIN_TOKEN_FILE),
        })
    }

    /// A client for the admin API: fails before sending anything when there is no admin
    /// token (see [`Conn::require_admin_token`]).
    pub fn client(&self) -> Result<client::Client, client::ClientError> {
        Ok(client::Client::new(&self.server, Some(self.require_admin_token()?)))
    }

    /// A client for the public endpoints (token endpoint, decisions, JWKS): no admin token.
    pub fn public_client(&self) -> client::Client {
        client::Client::new(&self.server, None)
    }
}

/// Any failure of a command; printed as `error: …` with exit code 1, except an [`Exit`],
/// which sets its own code.
pub type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A command that ran but whose outcome is a non-zero exit status (e.g. `authorize` on a
/// deny): `message`, when set, goes to stderr as is, without `error:`.
#[derive(Debug)]
pub struct Exit {
    /// The process exit status.
    pub code: u8,
    /// What to tell the user on stderr.
    pub message: Option<String>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(message) => f.write_str(message),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

async fn serve(args: ServeArgs) -> CliResult {
    warrant_server::telemetry::init(args.log_json);
    let options = FileConfig {
        data: args.data,
        database: args.database,
        migrate: args.no_migrate.then_some(false),
        listen: args.listen,
        issuer: args.issuer,
        default_ttl: args.default_ttl,
        max_ttl: args.max_ttl,
        max_depth: args.max_depth,
        session_ttl: args.session_ttl,
        body_limit: args.body_limit,
        guard: None,
        governance: None,
        kek_file: args.keys.kek_file,
        witness: args.keys.witness,
        writer_nice: args.writer_nice,
        limits: None,
        gateway: args.gateway.table()?,
        federation: None,
        ssf: None,
        cluster: None,
        console: None,
    };
    let settings = Settings::resolve(options, args.config.as_deref())?;
    // A bad `[gateway]` refuses to start before anything is bound.
    let upstreams = settings.gateway.as_ref().map(serve_gateway::upstreams).transpose()?;
    let server = warrant_server::BoundServer::bind(&settings).await?;
    let gateway = match (&settings.gateway, upstreams) {
        (Some(g), Some(upstreams)) => Some(serve_gateway::Planned::bind(g, upstreams).await?),
        _ => None,
    };
    let addr = server.local_addr().map(|a| a.to_string()).unwrap_or_default();
    // Signal handlers are in place before anybody is told the server is up.
    let shutdown = warrant_server::server::shutdown_signal();
    // A closed stdout must not stop a server: these lines are dropped then.
    outln!("warrant {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
    outln!("issuer:      {}", server.issuer());
    outln!("data:        {}", settings.data.display());
    if let warrant_server::config::Database::Postgres(url) = &settings.database {
        outln!("database:    {url}");
    }
    outln!("admin token: {}", settings.data.join(warrant_server::server::ADMIN_TOKEN_FILE).display());
    outln!("witness:     {}", settings.witness.display());
    tracing::info!(%addr, issuer = server.issuer(), "listening");
    let Some(gateway) = gateway else {
        server.run(shutdown).await?;
        return Ok(());
    };
    let gateway_addr = gateway.local_addr().map(|a| a.to_string()).unwrap_or_default();
    outln!("gateway:     http://{gateway_addr}");
    for name in gateway.names() {
        outln!("  upstream {name}: {}/mcp/{name}", gateway.public_url());
    }
    tracing::info!(addr = %gateway_addr, "gateway listening");
    serve_gateway::run(server, gateway, &settings, shutdown).await
}

async fn migrate(args: MigrateArgs) -> CliResult {
    use warrant_server::config::Database;
    let file = match &args.config {
        Some(path) => Some(FileConfig::read(path)?),
        None => {
            let data = args.data.clone().unwrap_or_else(|| PathBuf::from(warrant_server::config::DEFAULT_DATA_DIR));
            let implicit = data.join("warrant.toml");
            implicit.is_file().then(|| FileConfig::read(&implicit)).transpose()?
        }
    };
    let text = args.database.or_else(|| file.as_ref().and_then(|f| f.database.clone()));
    let database = text.as_deref().map(Database::parse).transpose()?.unwrap_or(Database::Sqlite);
    match database {
        Database::Postgres(url) => {
            let store = warrant_store::PgStore::connect(url.expose())?;
            let done = store.migrate().await.map_err(|e| format!("cannot migrate {url}: {e}"))?;
            if done.from == done.to {
                outln!("{url}: the schema is at version {} already; nothing to do", done.to);
            } else {
                outln!("{url}: migrated the schema from version {} to {}", done.from, done.to);
            }
        }
        Database::Sqlite => {
            let data = args
                .data
                .or_else(|| file.and_then(|f| f.data))
                .unwrap_or_else(|| PathBuf::from(warrant_server::config::DEFAULT_DATA_DIR));
            // Opening the SQLite store migrates it.
            warrant_server::server::open_store(&data)?;
            outln!("{}: the schema is at this build's version", data.join(warrant_server::server::DB_FILE).display());
        }
        _ => return Err("this database is not supported by `warrant migrate`".into()),
    }
    Ok(())
}

async fn rotate(conn: &Conn, keys: KeyPaths, online: bool) -> CliResult {
    use warrant_engine::Clock as _;
    if online {
        let rotated = conn.client()?.post("/v1/keys/rotate", &serde_json::json!({})).await?;
        output::print(conn.json, &rotated, |v| {
            format!(
                "new signing key {}, in force now; the JWKS publishes {}\n\
                 retired keys stay in the JWKS until every warrant they signed has expired",
                output::field(v, "kid"),
                output::field(v, "published")
            )
        });
        return Ok(());
    }
    let data = &conn.data;
    if !data.join(warrant_server::server::DB_FILE).exists() {
        return Err(format!(
            "no Warrant database in `{}`; start `warrant serve --data {}` once first",
            data.display(),
            data.display()
        )
        .into());
    }
    // A running server owns the directory: writing keys behind its back is refused.
    let _lock = match warrant_server::server::DataDirLock::acquire(data) {
        Err(warrant_server::server::ServeError::Locked { pid, .. }) => {
            let holder = pid.map_or_else(
                || "a running Warrant server".to_owned(),
                |p| format!("a running Warrant server (pid {p})"),
            );
            return Err(format!(
                "the data directory `{}` is in use by {holder}; rotate through it with `warrant key rotate --online` \
                 (POST /v1/keys/rotate), or stop the server first",
                data.display()
            )
            .into());
        }
        other => other?,
    };
    let settings = keys.settings(data)?;
    let store = warrant_server::server::open_store(data)?;
    let kek =
        warrant_server::kek::for_store(&store, &settings.kek_file, warrant_server::kek::WhenMissing::Create).await?;
    // A database an older build wrote is sealed first, as `serve` would.
    warrant_engine::keys::seal_plaintext(&store, &kek).await?;
    let kid = warrant_engine::keys::rotate(&store, &kek, warrant_server::server::SystemClock.now()).await?;
    outln!("new signing key {kid}; the server signs with it from its next start");
    outln!("retired keys stay in the JWKS until every warrant they signed has expired");
    Ok(())
}

async fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Keygen(args) => tokens::keygen(args),
        Command::Human { conn, cmd } => admin::human(&conn, cmd).await,
        Command::Pep { conn, cmd } => pep::pep(&conn, cmd).await,
        Command::Agent { conn, cmd: AgentCommand::Registry(cmd) } => admin::agent(&conn, cmd).await,
        Command::Agent { conn, cmd: AgentCommand::Govern(cmd) } => govern::agent(&conn, cmd).await,
        Command::Review { conn, filter, cmd } => govern::review(&conn, filter, cmd).await,
        Command::Inventory { conn, args } => govern::inventory(&conn, args).await,
        Command::Token { conn, cmd } => tokens::token(&conn, cmd).await,
        Command::Key { conn, cmd: KeyCmd::Rotate { keys, online } } => rotate(&conn, keys, online).await,
        Command::Authorize { conn, token, action, resource, context, resource_attrs, approval_id } => {
            ops::authorize(&conn, ops::AuthorizeArgs { token, action, resource, context, resource_attrs, approval_id })
                .await
        }
        Command::Approvals { conn, session, cmd } => guard::approvals(&conn, cmd, session).await,
        Command::Approve { conn, args } => guard::decide(&conn, args, true).await,
        Command::Reject { conn, args } => guard::decide(&conn, args, false).await,
        Command::Events { conn, agent, kind } => guard::events(&conn, agent, kind).await,
        Command::Revoke { conn, kind, id, reason } => ops::revoke(&conn, kind, id, reason).await,
        Command::Task { conn, cmd } => ops::task(&conn, cmd).await,
        Command::Policy { conn, cmd } => evidence::policy(&conn, cmd).await,
        Command::Audit { conn, cmd } => evidence::audit(&conn, cmd).await,
        Command::Openapi => {
            outln!("{}", warrant_server::openapi::json());
            Ok(())
        }
        Command::Demo => demo::run().await,
        Command::Bench(args) => Ok(bench::run(args).await?),
        Command::Gateway { conn, args } => gateway::run(&conn, args).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast::<Exit>() {
            Ok(exit) => {
                if let Some(message) = exit.message {
                    errln!("{message}");
                }
                ExitCode::from(exit.code)
            }
            // The reader of a pipe went away (`warrant audit export | head`): not a failure.
            Err(e) if output::is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
            Err(e) => {
                errln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
