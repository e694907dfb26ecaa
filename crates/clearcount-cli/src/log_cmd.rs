//! The config log, maintainer side (`counters-spec/config-log.md` §2, §7,
//! §8): `clearcount config log-keygen`, `log-init`, `publish`, `cosign`,
//! and `clearcount witness keygen` (the key files are written here).
//!
//! Secret keys are files the maintainer names on the command line; nothing
//! is kept anywhere else. `publish` works offline unless `--witness` is
//! given; `cosign` is the online half (no secret key).

use crate::config_cmd::check_paths;
use crate::http;
use clearcount_protocol::tlog::checkpoint::SignedCheckpoint;
use clearcount_protocol::tlog::log::{Log, LogDir};
use clearcount_protocol::tlog::merkle;
use clearcount_protocol::tlog::note::{KeyType, NoteSignature, SignerKey, VerifierKey};
use clearcount_protocol::tlog::policy::Policy;
use clearcount_protocol::tlog::witness::AddCheckpoint;
use std::path::{Path, PathBuf};

/// Arguments of `config log-keygen` and `witness keygen`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KeygenArgs {
    /// The key's name: for a log key, the log's origin (e.g.
    /// `telemetry.example.org/config-log`); for a witness, its name
    /// (e.g. `witness.example.org/w1`). No spaces, no `+`.
    #[arg(long)]
    name: String,
    /// Where to write the verifier (public) key, one line.
    #[arg(long, value_name = "FILE")]
    vkey: PathBuf,
    /// Where to write the signer (secret) key: not encrypted, readable by
    /// its owner only. Keep it offline.
    #[arg(long, value_name = "FILE")]
    skey: PathBuf,
}

/// Arguments of `config log-init`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LogInitArgs {
    /// The log directory to create (it must not hold a log yet).
    #[arg(long, value_name = "DIR", default_value = "log")]
    log: PathBuf,
    /// The log's verifier key (a file, or the key itself).
    #[arg(long, value_name = "VKEY")]
    vkey: String,
    /// A trust policy (C2SP tlog-policy) to publish as DIR/policy: what
    /// toolchains compile in. Default: the log's key alone, no witness. Its `log` line must be the log's key.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

/// Arguments of `config publish`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PublishArgs {
    /// The collection config to publish.
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
    /// The directory of declared counters it is checked against.
    #[arg(long, default_value = "counters")]
    counters: PathBuf,
    /// The minisign secret key: the config is signed (CONFIG.minisig is
    /// written). Without it, the existing CONFIG.minisig must verify with
    /// --public-key (a config signed beforehand).
    #[arg(long, value_name = "FILE")]
    secret_key: Option<PathBuf>,
    /// The minisign public key the signature must verify with (checked
    /// after signing too, when given).
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    /// The log's signer (secret) key.
    #[arg(long, value_name = "SKEY")]
    log_key: PathBuf,
    /// The log directory (made by `config log-init`).
    #[arg(long, value_name = "DIR", default_value = "log")]
    log: PathBuf,
    #[command(flatten)]
    witnesses: WitnessArgs,
}

/// Which witnesses to ask for cosignatures.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WitnessArgs {
    /// A witness to ask for a cosignature (C2SP tlog-witness; the URL
    /// prefix of its `add-checkpoint` endpoint). Repeatable. Its key must
    /// be in the log's policy or given with --witness-key.
    #[arg(long = "witness", value_name = "URL")]
    urls: Vec<String>,
    /// A witness's verifier key (file or key), to check its cosignature
    /// when the log's policy does not list it. Repeatable.
    #[arg(long = "witness-key", value_name = "VKEY")]
    keys: Vec<String>,
}

/// Arguments of `config cosign`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CosignArgs {
    /// The log directory.
    #[arg(long, value_name = "DIR", default_value = "log")]
    log: PathBuf,
    /// Without --witness: every witness of the log's policy that has a URL.
    #[command(flatten)]
    witnesses: WitnessArgs,
}

fn io(what: &str, p: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot {what} {}: {e}", p.display())
}

/// Reads a verifier key given as a file or as the key itself.
pub(crate) fn read_vkey(arg: &str) -> Result<VerifierKey, String> {
    let p = Path::new(arg);
    if p.is_file() {
        let text = std::fs::read_to_string(p).map_err(|e| io("read", p, e))?;
        return VerifierKey::parse(&text).map_err(|e| format!("{arg}: {e}"));
    }
    VerifierKey::parse(arg).map_err(|e| {
        if arg.contains('+') {
            e.to_string()
        } else {
            format!("{arg}: no such key file")
        }
    })
}

/// Reads a signer key file.
pub(crate) fn read_skey(path: &Path) -> Result<SignerKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| io("read", path, e))?;
    SignerKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a new key pair: the secret key (mode 0600) and then the verifier
/// key, never replacing a file.
pub(crate) fn write_key_pair(
    name: &str,
    key_type: KeyType,
    vkey: &Path,
    skey: &Path,
) -> Result<SignerKey, String> {
    use std::io::Write;
    if vkey == skey {
        return Err("--vkey and --skey must be two different files".into());
    }
    for p in [vkey, skey] {
        if p.exists() || p.is_symlink() {
            return Err(format!(
                "{} already exists; not overwriting a key",
                p.display()
            ));
        }
    }
    let key = SignerKey::generate(name, key_type).map_err(|e| e.to_string())?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(skey).map_err(|e| io("create", skey, e))?;
    f.write_all(format!("{}\n", key.to_skey()).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io("write", skey, e))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(vkey)
        .and_then(|mut f| f.write_all(format!("{}\n", key.verifier()).as_bytes()))
        .map_err(|e| io("write", vkey, e))?;
    Ok(key)
}

/// `config log-keygen` (`Ed25519`) and `witness keygen`
/// (`CosignatureV1`).
pub(crate) fn keygen(args: KeygenArgs, key_type: KeyType) -> Result<(), String> {
    let key = write_key_pair(&args.name, key_type, &args.vkey, &args.skey)?;
    println!("wrote {} ({})", args.vkey.display(), key.verifier());
    println!(
        "wrote {} — the secret key is NOT encrypted: keep it offline and never commit it",
        args.skey.display()
    );
    Ok(())
}

/// Checks a policy text against the log's key.
fn policy_for(text: &str, shown: &str, vkey: &VerifierKey) -> Result<Policy, String> {
    let policy = Policy::parse(text).map_err(|e| format!("{shown}: {e}"))?;
    if policy.log() != vkey {
        return Err(format!(
            "{shown}: its log key {} is not this log's key {vkey}",
            policy.log()
        ));
    }
    Ok(policy)
}

/// `config log-init`.
pub(crate) fn log_init(args: LogInitArgs) -> Result<(), String> {
    let vkey = read_vkey(&args.vkey)?;
    if vkey.key_type() != KeyType::Ed25519 {
        return Err(format!(
            "{vkey} is a witness key: a log key is made with `clearcount config log-keygen`"
        ));
    }
    let policy = match &args.policy {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| io("read", p, e))?;
            policy_for(&text, &p.display().to_string(), &vkey)?;
            Some(text)
        }
        // The log's key alone, no witness: what a toolchain compiles in
        // until witnesses are added (edit DIR/policy then).
        None => Some(
            Policy::new(vkey.clone(), Vec::new(), 0)
                .map_err(|e| e.to_string())?
                .to_text(),
        ),
    };
    let log = LogDir::init(&args.log, &vkey).map_err(|e| e.to_string())?;
    if let Some(text) = policy {
        let p = log.path().join(LogDir::POLICY);
        std::fs::write(&p, text).map_err(|e| io("write", &p, e))?;
    }
    println!(
        "created an empty config log in {} (origin {})",
        args.log.display(),
        vkey.name()
    );
    Ok(())
}

/// The log's published policy, if it has one (checked against its key).
fn log_policy(log: &LogDir) -> Result<Option<Policy>, String> {
    let p = log.path().join(LogDir::POLICY);
    match std::fs::read_to_string(&p) {
        Ok(text) => {
            let vkey = log.verifier().map_err(|e| e.to_string())?;
            policy_for(&text, &p.display().to_string(), &vkey).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", &p, e)),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    merkle::sha256(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `CONFIG.minisig`.
fn minisig_path(config: &Path) -> PathBuf {
    let mut s = config.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

fn read_text(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| io("read", p, e))
}

/// `config publish`: check, minisign, append, sign the checkpoint, then ask
/// the witnesses given.
pub(crate) fn publish(args: PublishArgs) -> Result<(), String> {
    let shown = args.config.display().to_string();
    // 1. The config is checked against the declared counters.
    let problems = check_paths(&args.config, &args.counters)?;
    if let Some(first) = problems.first() {
        for p in &problems {
            println!("{p}");
        }
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" (and {} more above)", n - 1),
        };
        return Err(format!("not publishing {shown}: {first}{more}"));
    }
    println!("{shown}: ok (checked against {})", args.counters.display());
    let bytes = std::fs::read(&args.config).map_err(|e| io("read", &args.config, e))?;
    // 2. The log takes it (dry run first: nothing is signed or written
    //    for a config the log refuses).
    let log = LogDir::open(&args.log).map_err(|e| {
        format!(
            "{e}: create it first with `clearcount config log-init --log {} --vkey LOG.vkey`",
            args.log.display()
        )
    })?;
    let log_key = read_skey(&args.log_key)?;
    let vkey = log.verifier().map_err(|e| e.to_string())?;
    if log_key.verifier() != &vkey {
        return Err(format!(
            "{} is the key of {}, but the log in {} is signed by {vkey}",
            args.log_key.display(),
            log_key.verifier(),
            args.log.display()
        ));
    }
    // The witnesses' keys too, before anything is written.
    let witnesses = if args.witnesses.urls.is_empty() {
        None
    } else {
        Some(witnesses(&log, &args.witnesses, false)?)
    };
    let mut dry = log
        .load()
        .map_err(|e| format!("{}: {e}", args.log.display()))?;
    dry.append(bytes.clone())
        .map_err(|e| format!("not publishing {shown}: {e}"))?;
    // 3. minisign, as `config sign` / `config verify`.
    let sig_path = minisig_path(&args.config);
    let public = match &args.public_key {
        Some(p) => Some(read_text(p)?),
        None => None,
    };
    match (&args.secret_key, &public) {
        (Some(secret), _) => {
            let sk = read_text(secret)?;
            let sig = clearcount_protocol::sign::sign_bytes(&sk, &bytes)
                .map_err(|e| format!("{}: {e}", secret.display()))?;
            if let Some(pk) = &public {
                clearcount_protocol::sign::verify(pk, &bytes, &sig).map_err(|e| {
                    format!(
                        "the signature made with {} does not verify with the public key: {e}",
                        secret.display()
                    )
                })?;
            }
            let mut tmp = sig_path.clone().into_os_string();
            tmp.push(".tmp");
            std::fs::write(&tmp, &sig)
                .and_then(|()| std::fs::rename(&tmp, &sig_path))
                .map_err(|e| io("write", &sig_path, e))?;
            println!("signed {shown} -> {}", sig_path.display());
        }
        (None, Some(pk)) => {
            let sig = std::fs::read_to_string(&sig_path).map_err(|e| {
                format!("not publishing {shown}: without --secret-key its signature {} must exist ({e})", sig_path.display())
            })?;
            clearcount_protocol::sign::verify(pk, &bytes, &sig)
                .map_err(|e| format!("not publishing {shown}: {}: {e}", sig_path.display()))?;
            println!("{}: good signature", sig_path.display());
        }
        (None, None) => {
            return Err(
                "give --secret-key (to sign the config) or --public-key (to check its existing signature)"
                    .into(),
            );
        }
    }
    // 4. Append, sign the checkpoint.
    let published = log
        .publish(&bytes, &log_key)
        .map_err(|e| format!("not publishing {shown}: {e}"))?;
    println!(
        "appended {shown} (version {}, sha256 {}) as entry {} of {}",
        published.version,
        sha256_hex(&bytes),
        published.index,
        args.log.display()
    );
    println!(
        "signed checkpoint of size {} -> {}",
        published.checkpoint.checkpoint.size,
        args.log.join(LogDir::CHECKPOINT).display()
    );
    println!(
        "a release built from now on compiles in {} as its minimum checkpoint (UploadSettings::with_minimum_checkpoint): no installation of it accepts an older config, whatever happens to its state",
        args.log.join(LogDir::MINIMUM).display()
    );
    // 5. Witnesses, if asked for.
    match witnesses {
        None => Ok(()),
        Some(w) => ask_all(&log, &w)
            .map_err(|e| format!("entry {} is published, but {e}", published.index)),
    }
}

/// `config cosign`.
pub(crate) fn cosign(args: CosignArgs) -> Result<(), String> {
    let log = LogDir::open(&args.log).map_err(|e| e.to_string())?;
    let w = witnesses(&log, &args.witnesses, true)?;
    ask_all(&log, &w)
}

/// Asks every witness of the log's policy that has a URL to cosign the
/// log's latest checkpoint again, and stores their fresh cosignatures
/// (what `clearcount serve --recosign-every` does on a schedule, so that a
/// log whose config does not change keeps recent cosignatures). `false`
/// when the policy lists no witness with a URL.
pub(crate) fn recosign(log: &Path) -> Result<bool, String> {
    let log = LogDir::open(log).map_err(|e| e.to_string())?;
    let has_urls = log_policy(&log)?.is_some_and(|p| p.witnesses().iter().any(|w| w.url.is_some()));
    if !has_urls {
        return Ok(false);
    }
    let none = WitnessArgs {
        urls: Vec::new(),
        keys: Vec::new(),
    };
    let w = witnesses(&log, &none, true)?;
    ask_all(&log, &w)?;
    Ok(true)
}

/// A witness to ask: where, and the keys its answer may be signed with.
struct Target {
    url: String,
    /// The key the log's policy gives this URL, if any.
    key: Option<VerifierKey>,
}

/// The witnesses to ask and the keys their answers are checked with.
struct Witnesses {
    targets: Vec<Target>,
    keys: Vec<VerifierKey>,
}

/// Resolves `--witness` and `--witness-key` against the log's policy
/// (`from_policy`: no `--witness` means every policy witness with a URL).
fn witnesses(log: &LogDir, args: &WitnessArgs, from_policy: bool) -> Result<Witnesses, String> {
    let policy = log_policy(log)?;
    let mut keys: Vec<VerifierKey> = policy
        .iter()
        .flat_map(|p| p.witnesses().iter().map(|w| w.key.clone()))
        .collect();
    for k in &args.keys {
        let k = read_vkey(k)?;
        if k.key_type() != KeyType::CosignatureV1 {
            return Err(format!(
                "{k} is not a witness (cosignature/v1) key: make one with `clearcount witness keygen`"
            ));
        }
        keys.push(k);
    }
    let url_key = |url: &str| {
        policy.as_ref().and_then(|p| {
            p.witnesses()
                .iter()
                .find(|w| w.url.as_deref().map(trim_url) == Some(trim_url(url)))
                .map(|w| w.key.clone())
        })
    };
    let mut targets: Vec<Target> = args
        .urls
        .iter()
        .map(|u| Target {
            url: u.clone(),
            key: url_key(u),
        })
        .collect();
    if targets.is_empty() && from_policy {
        targets = policy
            .iter()
            .flat_map(|p| p.witnesses())
            .filter_map(|w| {
                w.url.as_ref().map(|u| Target {
                    url: u.clone(),
                    key: Some(w.key.clone()),
                })
            })
            .collect();
        if targets.is_empty() {
            return Err(format!(
                "no witness to ask: give --witness URL, or list witnesses with URLs in {}",
                log.path().join(LogDir::POLICY).display()
            ));
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "no witness key to check cosignatures with: list the witnesses in {} or give --witness-key",
            log.path().join(LogDir::POLICY).display()
        ));
    }
    Ok(Witnesses { targets, keys })
}

/// Asks every witness for a cosignature of the log's latest checkpoint and
/// stores those that verify. Fails (after asking all) if any did not
/// cosign.
fn ask_all(log: &LogDir, w: &Witnesses) -> Result<(), String> {
    let (targets, keys) = (&w.targets, &w.keys);
    let signed = log
        .checkpoint()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} has no checkpoint yet", log.path().display()))?;
    let loaded = log.load().map_err(|e| e.to_string())?;
    let agent = http::agent();
    let mut failures = Vec::new();
    for t in targets {
        // What the witness should have: the last checkpoint its key
        // cosigned (a 409 corrects a wrong guess).
        let known = match &t.key {
            Some(k) => cosigned_size(log, k),
            None => keys
                .iter()
                .map(|k| cosigned_size(log, k))
                .max()
                .unwrap_or(0),
        };
        match ask_witness(&agent, &loaded, &signed, t, keys, known) {
            Ok(lines) => {
                let size = signed.checkpoint.size;
                log.add_cosignatures(size, &lines)
                    .map_err(|e| e.to_string())?;
                for l in lines.lines() {
                    let name = l.split(' ').nth(1).unwrap_or("?");
                    println!(
                        "witness {name} ({}) cosigned the checkpoint of size {size}",
                        t.url
                    );
                }
            }
            Err(e) => failures.push(format!("witness {} {e}", t.url)),
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => Err(format!(
            "{n} of {} witnesses did not cosign: {}",
            targets.len(),
            failures.join("; ")
        )),
    }
}

fn trim_url(u: &str) -> &str {
    u.trim_end_matches('/')
}

/// The largest checkpoint size of the log that `key` cosigned (what that
/// witness should have stored), 0 if none.
fn cosigned_size(log: &LogDir, key: &VerifierKey) -> u64 {
    let sizes = log.checkpoint_sizes().unwrap_or_default();
    for &size in sizes.iter().rev() {
        if let Ok(c) = log.checkpoint_of_size(size)
            && c.note.verify(&[key]).is_ok_and(|v| !v.is_empty())
        {
            return size;
        }
    }
    0
}

/// The `add-checkpoint` URL of a witness.
fn add_checkpoint_url(url: &str) -> String {
    let u = trim_url(url);
    if u.ends_with("/add-checkpoint") {
        u.to_string()
    } else {
        format!("{u}/add-checkpoint")
    }
}

/// One witness: `add-checkpoint` with a consistency proof from `old`; on a
/// 409, once more from the size the witness says it has. Returns the
/// answer's signature lines that verify with a known key.
fn ask_witness(
    agent: &ureq::Agent,
    log: &Log,
    signed: &SignedCheckpoint,
    target: &Target,
    keys: &[VerifierKey],
    old: u64,
) -> Result<String, String> {
    let size = signed.checkpoint.size;
    let url = add_checkpoint_url(&target.url);
    let mut old = old.min(size);
    for attempt in 0..2 {
        let proof = log
            .consistency_proof(old, size)
            .map_err(|e| e.to_string())?;
        let body = AddCheckpoint {
            old,
            proof,
            checkpoint: signed.to_text(),
        }
        .to_text();
        let (status, answer) =
            http::post(agent, &url, body).map_err(|e| format!("could not be asked: {e}"))?;
        let first = answer.lines().next().unwrap_or("").trim().to_string();
        match status {
            200 => return verify_answer(&answer, signed, keys, target),
            409 if attempt == 0 => {
                let theirs = first
                    .parse::<u64>()
                    .map_err(|_| format!("answered 409 without its checkpoint size ({first:?})"))?;
                if theirs > size {
                    return Err(format!(
                        "has a checkpoint of size {theirs}, larger than this log's {size}: it has seen another history of this log"
                    ));
                }
                old = theirs;
            }
            409 => {
                return Err(format!(
                    "answered 409 twice (it now has size {first}): is someone else publishing to it?"
                ));
            }
            422 => {
                return Err(format!(
                    "refused to cosign the checkpoint of size {size}, which does not extend the one it cosigned: a split view or a rewritten history (422: {first})"
                ));
            }
            s => {
                return Err(format!(
                    "refused to cosign the checkpoint of size {size} ({s}: {first})"
                ));
            }
        }
    }
    unreachable!("the loop returns on its second attempt")
}

/// The signature lines of a witness's answer that verify over the
/// checkpoint with a known witness key (at least one, else an error).
fn verify_answer(
    answer: &str,
    signed: &SignedCheckpoint,
    keys: &[VerifierKey],
    target: &Target,
) -> Result<String, String> {
    let mut out = String::new();
    for line in answer.lines().filter(|l| !l.trim().is_empty()) {
        let sig = NoteSignature::parse_line(line)
            .map_err(|e| format!("answered something that is not a cosignature: {e}"))?;
        let candidates: Vec<&VerifierKey> = match &target.key {
            Some(k) => vec![k],
            None => keys.iter().collect(),
        };
        let Some(key) = candidates.into_iter().find(|k| k.matches(&sig)) else {
            continue;
        };
        if key.verify(&signed.note.text, &sig.signature).is_none() {
            return Err(format!(
                "answered a cosignature of key {} that does not verify: not stored",
                key.name()
            ));
        }
        out.push_str(&sig.line());
    }
    if out.is_empty() {
        return Err(match &target.key {
            Some(k) => format!("answered no cosignature of its key {k}"),
            None => "answered a cosignature of a key that is neither in the log's policy nor given with --witness-key: not stored".into(),
        });
    }
    Ok(out)
}
