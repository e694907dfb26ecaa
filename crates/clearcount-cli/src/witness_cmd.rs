//! `clearcount witness keygen|serve`: a small witness for config logs
//! (C2SP `tlog-witness`, `counters-spec/config-log.md` §8).
//!
//! `serve` answers `POST /add-checkpoint`: it cosigns a checkpoint of a log
//! it follows only if the log signed it and it extends the checkpoint the
//! witness stored for that log (the decision is
//! `clearcount_protocol::tlog::witness::Witness::add_checkpoint`). State:
//!
//! ```text
//! <state>/lock          held (flock) while a witness runs on this state
//! <state>/logs/<origin> the latest checkpoint cosigned for each log
//! ```
//!
//! Requests for one log are handled one at a time (a lock per origin):
//! read the stored checkpoint, decide, store the new one (temporary file,
//! fsync, rename) and only then answer with the cosignature.
//!
//! **Re-cosigning on a schedule.** Every `--recosign-every` seconds the
//! witness cosigns again the checkpoint it stored for each log, and answers
//! a request for that same checkpoint (`old` = its size) with that recent
//! cosignature, so a log whose checkpoint does not change still gets fresh
//! cosignatures (clients may refuse old ones: `counters-spec/config-log.md`
//! §4.3) at a bounded signing cost; `clearcount serve` asks for them
//! (`--recosign-every`). A new checkpoint is cosigned when asked.

use crate::log_cmd::{self, KeygenArgs, read_skey, read_vkey};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clearcount_protocol::tlog::Checkpoint;
use clearcount_protocol::tlog::note::KeyType;
use clearcount_protocol::tlog::witness::{AddCheckpoint, Witness, WitnessDir};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Largest `add-checkpoint` body (a proof of 63 hashes and a checkpoint
/// with 100 signature lines fit well below).
const MAX_BODY: usize = 64 * 1024;

/// The `witness` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum WitnessCommand {
    /// Create a witness key pair (C2SP cosignature/v1, Ed25519): the
    /// verifier key goes into the policies of the logs it witnesses.
    /// Refuses to overwrite existing files.
    Keygen(KeygenArgs),
    /// Run a witness: cosign new checkpoints of the logs it follows only
    /// when they extend what it saw (POST /add-checkpoint).
    Serve(ServeArgs),
}

/// Arguments of `witness serve`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServeArgs {
    /// The witness's signer (secret) key, from `clearcount witness keygen`.
    #[arg(long, value_name = "SKEY")]
    key: PathBuf,
    /// A log to follow: its verifier key (file or key; its name is the
    /// log's origin). Repeatable.
    #[arg(long = "log", value_name = "VKEY", required = true)]
    logs: Vec<String>,
    /// The state directory: the latest checkpoint cosigned for each log.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:7380")]
    addr: SocketAddr,
    /// Seconds between re-cosignings of each log's stored checkpoint (an
    /// unchanged checkpoint asked for again gets the latest of them; 0:
    /// cosign at every request).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    recosign_every: u64,
}

/// Runs a `witness` subcommand.
pub(crate) fn run(cmd: WitnessCommand) -> Result<(), String> {
    match cmd {
        WitnessCommand::Keygen(a) => log_cmd::keygen(a, KeyType::CosignatureV1),
        WitnessCommand::Serve(a) => serve(a),
    }
}

/// The witness, its state, and one lock per log it follows.
struct Shared {
    witness: Witness,
    dir: WitnessDir,
    locks: HashMap<String, Mutex<()>>,
    about: String,
    /// The latest cosignature of each log's stored checkpoint, made on the
    /// schedule (or at the last request): (checkpoint, line, time).
    fresh: Mutex<HashMap<String, Fresh>>,
    /// Seconds between re-cosignings (0: none).
    every: u64,
}

/// A recent cosignature of a stored checkpoint.
#[derive(Clone)]
struct Fresh {
    checkpoint: Checkpoint,
    line: String,
    at: u64,
}

/// An answer: status, content type, body.
type Answer = (StatusCode, &'static str, String);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shared {
    /// One `add-checkpoint` request, under the lock of its log.
    fn add_checkpoint(&self, body: &[u8]) -> Answer {
        const TEXT: &str = "text/plain; charset=utf-8";
        let bad = |m: String| (StatusCode::BAD_REQUEST, TEXT, format!("{m}\n"));
        let Ok(text) = std::str::from_utf8(body) else {
            return bad("the request is not UTF-8 text".into());
        };
        let request = match AddCheckpoint::parse(text) {
            Ok(r) => r,
            Err(e) => return bad(e.to_string()),
        };
        let origin = match request.origin() {
            Ok(o) => o,
            Err(e) => return bad(format!("the checkpoint is malformed: {e}")),
        };
        let Some(lock) = self.locks.get(&origin) else {
            println!("refused a checkpoint of {origin:?} (404: not followed)");
            return (
                StatusCode::NOT_FOUND,
                TEXT,
                format!("this witness does not follow log {origin}\n"),
            );
        };
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let internal = |m: String| {
            eprintln!("clearcount witness: {m}");
            (StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{m}\n"))
        };
        let stored = match self.dir.latest(&origin) {
            Ok(s) => s,
            Err(e) => return internal(e.to_string()),
        };
        match self
            .witness
            .add_checkpoint(stored.as_ref(), &request, now())
        {
            Ok(cosigned) => {
                // The same checkpoint again: the cosignature of the
                // schedule, if it is recent enough.
                let unchanged = stored.as_ref() == Some(&cosigned.latest);
                if unchanged && let Some(f) = self.recent(&origin, &cosigned.latest) {
                    return (StatusCode::OK, TEXT, f);
                }
                // Stored before answering: a crash after this answer
                // cannot make the witness forget what it cosigned.
                if let Err(e) = self.dir.store(&cosigned.latest) {
                    return internal(e.to_string());
                }
                println!(
                    "cosigned {origin} size {} (was {})",
                    cosigned.latest.size,
                    stored.map_or(0, |s| s.size)
                );
                self.remember(&origin, &cosigned.latest, &cosigned.response, now());
                (StatusCode::OK, TEXT, cosigned.response)
            }
            Err(e) => {
                let status =
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                println!("refused a checkpoint of {origin} ({}: {e})", e.status());
                let kind = if e.status() == 409 {
                    "text/x.tlog.size"
                } else {
                    TEXT
                };
                (status, kind, e.body())
            }
        }
    }
}

impl Shared {
    /// The cosignature made on the schedule for this stored checkpoint, if
    /// it is younger than the schedule's period.
    fn recent(&self, origin: &str, checkpoint: &Checkpoint) -> Option<String> {
        let fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        let f = fresh.get(origin)?;
        (self.every > 0 && f.checkpoint == *checkpoint && now().saturating_sub(f.at) < self.every)
            .then(|| f.line.clone())
    }

    fn remember(&self, origin: &str, checkpoint: &Checkpoint, line: &str, at: u64) {
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        fresh.insert(
            origin.to_string(),
            Fresh {
                checkpoint: checkpoint.clone(),
                line: line.to_string(),
                at,
            },
        );
    }

    /// Cosigns again the stored checkpoint of every log (the schedule).
    fn recosign_all(&self) {
        for (origin, lock) in &self.locks {
            let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
            let stored = match self.dir.latest(origin) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    eprintln!("clearcount witness: {e}");
                    continue;
                }
            };
            let t = now();
            match self.witness.recosign(&stored, t) {
                Ok(line) => {
                    self.remember(origin, &stored, &line, t);
                    println!("re-cosigned {origin} size {} (on schedule)", stored.size);
                }
                Err(e) => eprintln!("clearcount witness: {e}"),
            }
        }
    }
}

fn respond((status, kind, body): Answer) -> Response {
    (status, [(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn add_checkpoint(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match tokio::task::spawn_blocking(move || s.add_checkpoint(&body)).await {
        Ok(a) => respond(a),
        Err(_) => respond((
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "internal error\n".into(),
        )),
    }
}

async fn about(State(s): State<Arc<Shared>>) -> Response {
    respond((StatusCode::OK, "text/plain; charset=utf-8", s.about.clone()))
}

/// The witness's routes (C2SP tlog-witness: `POST /add-checkpoint`; `GET
/// /` says which key and logs).
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(about))
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// `witness serve`: until Ctrl-C or SIGTERM.
fn serve(args: ServeArgs) -> Result<(), String> {
    let key = read_skey(&args.key)?;
    let mut logs = Vec::new();
    for l in &args.logs {
        let k = read_vkey(l)?;
        if k.key_type() != KeyType::Ed25519 {
            return Err(format!("{k} is a witness key, not a log key"));
        }
        if logs
            .iter()
            .any(|o: &clearcount_protocol::tlog::VerifierKey| o.name() == k.name())
        {
            return Err(format!("two --log keys have the origin {}", k.name()));
        }
        logs.push(k);
    }
    let witness = Witness::new(key, logs.clone()).map_err(|e| {
        format!(
            "{}: {e} (make one with `clearcount witness keygen`)",
            args.key.display()
        )
    })?;
    std::fs::create_dir_all(&args.state)
        .map_err(|e| format!("cannot create {}: {e}", args.state.display()))?;
    // One witness process per state directory.
    let lock_path = args.state.join("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => {
            format!("another witness is running on {}", args.state.display())
        }
        std::fs::TryLockError::Error(e) => format!("cannot lock {}: {e}", lock_path.display()),
    })?;
    let dir = WitnessDir::open(args.state.join("logs")).map_err(|e| e.to_string())?;
    let mut about = format!(
        "clearcount witness (C2SP tlog-witness: POST /add-checkpoint)\nkey {}\n",
        witness.verifier()
    );
    for l in &logs {
        about.push_str(&format!("log {l}\n"));
    }
    let shared = Arc::new(Shared {
        locks: logs
            .iter()
            .map(|l| (l.name().to_string(), Mutex::new(())))
            .collect(),
        witness,
        dir,
        about,
        fresh: Mutex::new(HashMap::new()),
        every: args.recosign_every,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let result = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        println!(
            "clearcount witness: listening on http://{addr}/ (key {}, {} logs, state in {})",
            shared.witness.verifier(),
            shared.locks.len(),
            args.state.display()
        );
        if shared.every > 0 {
            let s = shared.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(s.every));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let s = s.clone();
                    let _ = tokio::task::spawn_blocking(move || s.recosign_all()).await;
                }
            });
        }
        axum::serve(listener, router(shared))
            .with_graceful_shutdown(clearcount_server::shutdown_signal())
            .await
            .map_err(|e| format!("witness server error: {e}"))
    });
    drop(lock);
    result
}
