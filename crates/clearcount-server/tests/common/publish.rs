//! Publishing a config for a test server, as `clearcount config publish`
//! does: signed with minisign, appended to a config log whose checkpoint
//! the log key signs. Shared by the integration tests (`common`), the unit
//! tests (`src/race_tests.rs`) and the benches, through `#[path]`.

#![allow(dead_code)]

use clearcount_protocol::tlog::log::{LogDir, Published};
use clearcount_protocol::tlog::note::{KeyType, SignerKey};
use std::path::{Path, PathBuf};

/// The files of a published config in a directory: `config.toml` (+
/// `.minisig`), the minisign key pair `config.pub` and `config.key`, the
/// log key `log.skey` and the config log `log/`, beside the config, where
/// the server looks for it by default.
#[derive(Debug, Clone)]
pub struct PublishedConfig {
    pub config: PathBuf,
    pub public_key: PathBuf,
    pub log: PathBuf,
    pub log_key: PathBuf,
    /// What the log's publish did (the entry, its checkpoint).
    pub published: Published,
}

/// The origin of the test logs.
pub const ORIGIN: &str = "test.clearcount.example/config-log";

/// Writes `text` as `<dir>/config.toml`, signs it, and appends it to the
/// log `<dir>/log` (keys and log made on first use). Panics on refusal
/// (use [`try_publish`] to see one).
pub fn publish(dir: &Path, text: &str) -> PublishedConfig {
    try_publish(dir, text).unwrap()
}

/// [`publish`], returning the log's refusal (such as a version not higher
/// than the last entry's); the config file is written (and signed) anyway.
pub fn try_publish(dir: &Path, text: &str) -> Result<PublishedConfig, String> {
    let config = dir.join("config.toml");
    let (public_key, secret) = (dir.join("config.pub"), dir.join("config.key"));
    let (log, log_key) = (dir.join("log"), dir.join("log.skey"));
    if !public_key.exists() {
        clearcount_protocol::sign::keygen(&public_key, &secret).unwrap();
    }
    let key = if log_key.exists() {
        SignerKey::parse(&std::fs::read_to_string(&log_key).unwrap()).unwrap()
    } else {
        let k = SignerKey::generate(ORIGIN, KeyType::Ed25519).unwrap();
        std::fs::write(&log_key, k.to_skey()).unwrap();
        LogDir::init(&log, k.verifier()).unwrap();
        k
    };
    std::fs::write(&config, text).unwrap();
    clearcount_protocol::sign::sign(&secret, &config).unwrap();
    let published = LogDir::open(&log)
        .unwrap()
        .publish(text.as_bytes(), &key)
        .map_err(|e| e.to_string())?;
    Ok(PublishedConfig {
        config,
        public_key,
        log,
        log_key,
        published,
    })
}
