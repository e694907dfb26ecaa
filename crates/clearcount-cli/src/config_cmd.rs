//! `clearcount config …`: check, sign and verify the collection config;
//! publish it through the config log and audit a log (`log_cmd.rs`,
//! `audit_cmd.rs`).

use crate::audit_cmd::AuditArgs;
use crate::log_cmd::{self, CosignArgs, KeygenArgs, LogInitArgs, PublishArgs};
use clearcount_protocol::config::{CollectionConfig, DeclaredCounters, check};
use clearcount_protocol::sign;
use clearcount_protocol::tlog::note::KeyType;
use std::path::{Path, PathBuf};

/// The `config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Check the collection config against the declared counters and print
    /// every problem as `file:line: message`. The defaults are the README's
    /// layout, from the directory that holds it (this repository's
    /// `config/` has the same layout).
    Check {
        /// The collection config.
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        /// The directory of declared counters (`<program>.toml` files).
        #[arg(long, default_value = "counters")]
        counters: PathBuf,
    },
    /// Create a signing key pair (the secret key is not encrypted: keep it
    /// offline). Refuses to overwrite existing files.
    Keygen {
        /// Where to write the public key.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// Where to write the secret key.
        #[arg(long, value_name = "FILE")]
        secret_key: PathBuf,
    },
    /// Sign a config (after checking that it parses); writes CONFIG.minisig.
    Sign {
        /// The secret key file.
        #[arg(long, value_name = "FILE")]
        secret_key: PathBuf,
        /// The config to sign.
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Verify a config's signature (CONFIG.minisig unless --signature is
    /// given); exits 0 only for a good signature on a valid config.
    Verify {
        /// The public key file (or its base64 line).
        #[arg(long, value_name = "FILE")]
        public_key: String,
        /// The signature file; default CONFIG.minisig.
        #[arg(long)]
        signature: Option<PathBuf>,
        /// The config to verify.
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Create the config log's key pair (Ed25519, C2SP signed-note
    /// formats): the verifier key is published, the signer key kept
    /// offline. Refuses to overwrite existing files.
    LogKeygen(KeygenArgs),
    /// Create an empty config log directory for a log key.
    LogInit(LogInitArgs),
    /// Publish a config: check it against the declared counters, sign it
    /// (CONFIG.minisig), append it to the log (its version must be higher
    /// than the last entry's), sign the new checkpoint, and ask the
    /// witnesses given for cosignatures.
    Publish(PublishArgs),
    /// Ask witnesses to cosign the log's latest checkpoint (online, no
    /// secret key; without --witness, every witness of the log's policy
    /// that has a URL) and add their cosignatures to the log.
    Cosign(CosignArgs),
    /// Audit a config log (URL or directory): recompute every hash, check
    /// every checkpoint's signatures and that all are one history, print
    /// the history; exits non-zero with the reason on any failure.
    Audit(AuditArgs),
}

/// True for the base64 line of a minisign public key (56 characters of
/// the base64 alphabet, which includes `/` and `+`).
fn is_base64_key(s: &str) -> bool {
    let s = s.trim();
    s.len() == 56
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

pub(crate) fn check_paths(config: &Path, counters: &Path) -> Result<Vec<String>, String> {
    let shown = config.display().to_string();
    if !config.exists() {
        return Err(format!(
            "{shown} does not exist: run this where the config and counters/ are, or name them with --config and --counters"
        ));
    }
    let text = read(config)?;
    let mut problems = Vec::new();
    let cfg = CollectionConfig::parse(&text, &shown);
    let declared = DeclaredCounters::load_dir(counters);
    match (&cfg, &declared) {
        (Ok(cfg), Ok(declared)) => {
            if let Err(errs) = check(cfg, declared) {
                problems.extend(errs.iter().map(|e| e.to_string()));
            }
        }
        _ => {
            if let Err(e) = &cfg {
                problems.push(e.to_string());
            }
            if let Err(errs) = &declared {
                problems.extend(errs.iter().map(|e| e.to_string()));
            }
        }
    }
    Ok(problems)
}

/// Runs a `config` subcommand. Output goes to stdout; an error is one line
/// for the caller to print before exiting non-zero.
pub(crate) fn run(cmd: ConfigCommand) -> Result<(), String> {
    match cmd {
        ConfigCommand::LogKeygen(a) => log_cmd::keygen(a, KeyType::Ed25519),
        ConfigCommand::LogInit(a) => log_cmd::log_init(a),
        ConfigCommand::Publish(a) => log_cmd::publish(a),
        ConfigCommand::Cosign(a) => log_cmd::cosign(a),
        ConfigCommand::Audit(a) => crate::audit_cmd::run(a),
        ConfigCommand::Check { config, counters } => {
            let problems = check_paths(&config, &counters)?;
            for p in &problems {
                println!("{p}");
            }
            match problems.len() {
                0 => {
                    println!(
                        "{}: ok (checked against {})",
                        config.display(),
                        counters.display()
                    );
                    Ok(())
                }
                1 => Err(format!("{}: 1 problem", config.display())),
                n => Err(format!("{}: {n} problems", config.display())),
            }
        }
        ConfigCommand::Keygen {
            public_key: public,
            secret_key: secret,
        } => {
            let pk = sign::keygen(&public, &secret).map_err(|e| e.to_string())?;
            let id = pk.lines().next().unwrap_or("").trim();
            println!("wrote {} ({id})", public.display());
            println!(
                "wrote {} — the secret key is NOT encrypted: keep it offline and never commit it",
                secret.display()
            );
            Ok(())
        }
        ConfigCommand::Sign {
            secret_key: secret,
            config,
        } => {
            let text = read(&config)?;
            let cfg = CollectionConfig::parse(&text, &config.display().to_string())
                .map_err(|e| format!("not signing an invalid config: {e}"))?;
            let out = sign::sign(&secret, &config).map_err(|e| e.to_string())?;
            println!(
                "signed {} (version {}) -> {}",
                config.display(),
                cfg.version,
                out.display()
            );
            Ok(())
        }
        ConfigCommand::Verify {
            public_key: public,
            signature,
            config,
        } => {
            let key = if Path::new(&public).is_file() {
                read(Path::new(&public))?
            } else if is_base64_key(&public) {
                public.clone()
            } else {
                return Err(format!("{public}: public key file not found"));
            };
            let text = read(&config)?;
            let sig_path = signature.unwrap_or_else(|| {
                let mut s = config.as_os_str().to_owned();
                s.push(".minisig");
                PathBuf::from(s)
            });
            let sig = match std::fs::read_to_string(&sig_path) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(format!(
                        "{}: signature is missing ({} does not exist)",
                        config.display(),
                        sig_path.display()
                    ));
                }
                Err(e) => return Err(format!("{}: cannot read: {e}", sig_path.display())),
            };
            let cfg = sign::verify_config(&key, &text, &sig, None)
                .map_err(|e| format!("{}: {e}", config.display()))?;
            println!(
                "{}: good signature, config version {}",
                config.display(),
                cfg.version
            );
            Ok(())
        }
    }
}
