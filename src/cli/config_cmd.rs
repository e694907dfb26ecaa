//! `clearcount config …`: check, sign and verify the collection config.
//!
//! ```no_run
//! use clap::Parser;
//! use clearcount::cli::config_cmd::{run, ConfigCommand};
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     cmd: ConfigCommand,
//! }
//! let cli = Cli::parse_from(["config", "check", "--config", "config/config.toml"]);
//! if let Err(e) = run(cli.cmd) {
//!     eprintln!("{e}");
//!     std::process::exit(1);
//! }
//! ```

use crate::config::{CollectionConfig, DeclaredCounters, check};
use std::path::{Path, PathBuf};

/// The `config` subcommands.
///
/// ```
/// use clap::Parser;
/// use clearcount::cli::config_cmd::ConfigCommand;
/// #[derive(Parser)]
/// struct Cli {
///     #[command(subcommand)]
///     cmd: ConfigCommand,
/// }
/// let cli = Cli::parse_from(["x", "verify", "--public", "k.pub", "config.toml"]);
/// assert!(matches!(cli.cmd, ConfigCommand::Verify { .. }));
/// ```
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check the collection config against the declared counters and print
    /// every problem as `file:line: message`.
    Check {
        /// The collection config.
        #[arg(long, default_value = "config/config.toml")]
        config: PathBuf,
        /// The directory of declared counters (`<program>.toml` files).
        #[arg(long, default_value = "config/counters")]
        counters: PathBuf,
    },
    /// Create a signing key pair (the secret key is not encrypted: keep it
    /// offline). Refuses to overwrite existing files.
    Keygen {
        /// Where to write the public key.
        #[arg(long)]
        public: PathBuf,
        /// Where to write the secret key.
        #[arg(long)]
        secret: PathBuf,
    },
    /// Sign a config (after checking that it parses); writes CONFIG.minisig.
    Sign {
        /// The secret key file.
        #[arg(long)]
        secret: PathBuf,
        /// The config to sign.
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Verify a config's signature (CONFIG.minisig unless --signature is
    /// given); exits 0 only for a good signature on a valid config.
    Verify {
        /// The public key file (or its base64 line).
        #[arg(long, default_value = "config/clearcount.pub")]
        public: String,
        /// The signature file; default CONFIG.minisig.
        #[arg(long)]
        signature: Option<PathBuf>,
        /// The config to verify.
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
    },
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn check_paths(config: &Path, counters: &Path) -> Result<Vec<String>, String> {
    let shown = config.display().to_string();
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
///
/// ```
/// use clearcount::cli::config_cmd::{run, ConfigCommand};
/// let dir = std::env::temp_dir().join(format!("cc-doc-cmd-{}", std::process::id()));
/// std::fs::create_dir_all(dir.join("counters")).unwrap();
/// std::fs::write(dir.join("config.toml"), "version = 1\nsample_rate = 0.1\n").unwrap();
/// run(ConfigCommand::Check { config: dir.join("config.toml"), counters: dir.join("counters") }).unwrap();
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn run(cmd: ConfigCommand) -> Result<(), String> {
    match cmd {
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
        ConfigCommand::Keygen { public, secret } => {
            let pk = crate::sign::keygen(&public, &secret).map_err(|e| e.to_string())?;
            let id = pk.lines().next().unwrap_or("").trim();
            println!("wrote {} ({id})", public.display());
            println!(
                "wrote {} — the secret key is NOT encrypted: keep it offline and never commit it",
                secret.display()
            );
            Ok(())
        }
        ConfigCommand::Sign { secret, config } => {
            let text = read(&config)?;
            let cfg = CollectionConfig::parse(&text, &config.display().to_string())
                .map_err(|e| format!("not signing an invalid config: {e}"))?;
            let out = crate::sign::sign(&secret, &config).map_err(|e| e.to_string())?;
            println!(
                "signed {} (version {}) -> {}",
                config.display(),
                cfg.version,
                out.display()
            );
            Ok(())
        }
        ConfigCommand::Verify {
            public,
            signature,
            config,
        } => {
            let key = if Path::new(&public).is_file() {
                read(Path::new(&public))?
            } else if public.trim().len() == 56 && !public.contains('/') {
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
            let cfg = crate::sign::verify_config(&key, &text, &sig, None)
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
