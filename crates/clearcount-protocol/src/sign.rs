//! Signing and verifying the collection config with minisign (Ed25519).
//!
//! The config is published with a detached minisign signature
//! (`config.toml.minisig`); clients hold the public key (a toolchain builds
//! its own in) and accept a config only through [`verify_config`]: the
//! signature must be good and the version must not be lower than one
//! already accepted.
//!
//! Verification uses `minisign-verify` (small, no key handling); key
//! generation and signing (feature `sign`) use `minisign`. The files are the
//! standard minisign formats, so the `minisign` command-line tool can verify
//! our signatures and make signatures we accept.
//!
//! ```standalone_crate
//! use clearcount_protocol::sign::verify_config;
//! // The config clearcount publishes for its example tools.
//! let key = include_str!("../../../config/clearcount.pub");
//! let text = include_str!("../../../config/config.toml");
//! let sig = include_str!("../../../config/config.toml.minisig");
//! let cfg = verify_config(key, text, sig, None).unwrap();
//! assert!(verify_config(key, text, sig, Some(cfg.version + 1)).is_err());
//! ```

use crate::config::{CollectionConfig, ConfigError};
use std::fmt;

/// Why a key, signature or config was refused. Displays in plain words.
#[derive(Debug)]
pub enum SignError {
    /// A file could not be read or written.
    Io(String),
    /// The public or secret key is not a usable minisign key.
    Key(String),
    /// The signature text is missing, truncated or not a minisign signature.
    Malformed(String),
    /// The signature was made by another key than the public key.
    OtherKey,
    /// The signature does not match the data and the public key.
    Mismatch,
    /// The signature is good but the config is invalid.
    Config(ConfigError),
    /// The config's version is lower than one already accepted.
    Rollback {
        /// Version of the refused config.
        version: u64,
        /// Highest version already accepted.
        accepted: u64,
    },
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Io(m) | SignError::Key(m) | SignError::Malformed(m) => f.write_str(m),
            SignError::OtherKey => f.write_str(
                "signature was made with another key than the public key (key ids differ)",
            ),
            SignError::Mismatch => f.write_str(
                "signature does not match the public key (the file was changed after signing, or signed by another key)",
            ),
            SignError::Config(e) => write!(f, "signed config is invalid: {e}"),
            SignError::Rollback { version, accepted } => write!(
                f,
                "config version {version} is older than version {accepted} already accepted"
            ),
        }
    }
}

impl std::error::Error for SignError {}

/// Reads a public key given as the text of a `.pub` file (comment line and
/// base64 line) or as the bare base64 key.
fn public_key(text: &str) -> Result<minisign_verify::PublicKey, SignError> {
    let t = text.trim();
    let key = if t.starts_with("untrusted comment:") {
        minisign_verify::PublicKey::decode(t)
    } else {
        minisign_verify::PublicKey::from_base64(t)
    };
    key.map_err(|_| {
        SignError::Key(
            "public key is not a minisign Ed25519 public key (expected a .pub file or its base64 line)".into(),
        )
    })
}

/// Verifies a minisign signature of `data`. `public_key` is the text of a
/// minisign `.pub` file or its base64 line; `signature` is the text of the
/// `.minisig` file. Only the current (pre-hashed) signature format is
/// accepted; both the signature and its trusted comment are checked.
pub fn verify(public_key_text: &str, data: &[u8], signature: &str) -> Result<(), SignError> {
    let pk = public_key(public_key_text)?;
    if signature.trim().is_empty() {
        return Err(SignError::Malformed(
            "signature is missing (the signature text is empty)".into(),
        ));
    }
    let sig = minisign_verify::Signature::decode(signature).map_err(|e| {
        SignError::Malformed(match e {
            minisign_verify::Error::UnsupportedAlgorithm => {
                "signature uses an algorithm this program does not support".into()
            }
            _ => "signature is not a minisign signature (garbled or truncated)".into(),
        })
    })?;
    pk.verify(data, &sig, false).map_err(|e| match e {
        minisign_verify::Error::UnexpectedKeyId => SignError::OtherKey,
        minisign_verify::Error::UnexpectedAlgorithm => SignError::Malformed(
            "signature is in the legacy (not pre-hashed) minisign format, which is not accepted; re-sign with a current minisign".into(),
        ),
        minisign_verify::Error::InvalidSignature => SignError::Mismatch,
        _ => SignError::Malformed("signature is not a minisign signature (garbled or truncated)".into()),
    })
}

/// Verifies a signed config, parses it, and refuses a rollback: a config
/// whose version is lower than `last_accepted_version` (the same version is
/// accepted again). The caller records the returned config's version as the
/// new last accepted one.
pub fn verify_config(
    public_key: &str,
    config_text: &str,
    signature: &str,
    last_accepted_version: Option<u64>,
) -> Result<CollectionConfig, SignError> {
    verify(public_key, config_text.as_bytes(), signature)?;
    let cfg = CollectionConfig::parse(config_text, "config.toml").map_err(SignError::Config)?;
    if let Some(accepted) = last_accepted_version
        && cfg.version < accepted
    {
        return Err(SignError::Rollback {
            version: cfg.version,
            accepted,
        });
    }
    Ok(cfg)
}

#[cfg(feature = "sign")]
fn io_err(what: &str, path: &std::path::Path, e: impl fmt::Display) -> SignError {
    SignError::Io(format!("cannot {what} {}: {e}", path.display()))
}

/// Creates a new key pair and writes the public key (minisign `.pub` format)
/// and the secret key (minisign format, not encrypted, so it can sign
/// without a prompt; keep it offline). Refuses to overwrite existing files.
/// The secret key file is readable by its owner only (on Unix). Returns the
/// text of the public key file.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("cc-doc-keygen-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let pub_text = clearcount_protocol::sign::keygen(dir.join("k.pub"), dir.join("k.key")).unwrap();
/// assert!(pub_text.starts_with("untrusted comment: minisign public key"));
/// assert!(clearcount_protocol::sign::keygen(dir.join("k.pub"), dir.join("k.key")).is_err());
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[cfg(feature = "sign")]
pub fn keygen(
    public_path: impl AsRef<std::path::Path>,
    secret_path: impl AsRef<std::path::Path>,
) -> Result<String, SignError> {
    use std::io::Write;
    let (public_path, secret_path) = (public_path.as_ref(), secret_path.as_ref());
    for p in [public_path, secret_path] {
        if p.exists() {
            return Err(SignError::Io(format!(
                "{} already exists; not overwriting a key",
                p.display()
            )));
        }
    }
    let kp = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| SignError::Key(format!("cannot generate a key pair: {e}")))?;
    let pk_text = kp
        .pk
        .to_box()
        .map_err(|e| SignError::Key(format!("cannot encode the public key: {e}")))?
        .into_string();
    let sk_text = kp
        .sk
        .to_box(Some("clearcount config signing secret key (keep offline)"))
        .map_err(|e| SignError::Key(format!("cannot encode the secret key: {e}")))?
        .into_string();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(secret_path)
        .map_err(|e| io_err("create", secret_path, e))?;
    f.write_all(sk_text.as_bytes())
        .map_err(|e| io_err("write", secret_path, e))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(public_path)
        .and_then(|mut f| f.write_all(pk_text.as_bytes()))
        .map_err(|e| io_err("write", public_path, e))?;
    Ok(pk_text)
}

/// Decodes standard base64 (with `=` padding); `None` on any bad byte.
#[cfg(feature = "sign")]
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim().as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    Some(out)
}

/// Loads a secret key file: an unencrypted key (what [`keygen`] and
/// `minisign -G -W` write; the latter leaves the checksum zeroed), or one
/// encrypted with an empty password.
#[cfg(feature = "sign")]
fn secret_key(text: &str) -> Result<minisign::SecretKey, SignError> {
    let sk_box = || minisign::SecretKeyBox::from_string(text);
    let bad = |e: minisign::PError| SignError::Key(format!("secret key is not usable: {e}"));
    if let Ok(sk) = minisign::SecretKey::from_unencrypted_box(sk_box().map_err(bad)?) {
        return Ok(sk);
    }
    // Layout: sig_alg(2) kdf_alg(2) chk_alg(2) salt(32) ops(8) mem(8)
    // keynum(8) sk(64) chk(32) = 158 bytes.
    let raw = text.lines().nth(1).and_then(base64_decode);
    if let Some(raw) = raw.filter(|r| r.len() == 158) {
        if raw[2..4] == [0, 0] {
            if raw[126..].iter().all(|&b| b == 0) {
                return minisign::SecretKey::from_bytes(&raw).map_err(bad);
            }
            return Err(SignError::Key(
                "secret key is corrupted (its checksum does not match)".into(),
            ));
        }
    } else {
        return Err(SignError::Key(
            "secret key is not a minisign secret key file".into(),
        ));
    }
    minisign::SecretKey::from_box(sk_box().map_err(bad)?, Some(String::new())).map_err(|_| {
        SignError::Key(
            "secret key is encrypted with a password; clearcount signs only with an unencrypted key (minisign -G -W) kept offline".into(),
        )
    })
}

/// Signs `data` with the secret key text; returns the `.minisig` text. The
/// signature is checked against the key's public half before it is returned.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("cc-doc-signb-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let pk = clearcount_protocol::sign::keygen(dir.join("k.pub"), dir.join("k.key")).unwrap();
/// let sk = std::fs::read_to_string(dir.join("k.key")).unwrap();
/// let sig = clearcount_protocol::sign::sign_bytes(&sk, b"hello").unwrap();
/// assert!(clearcount_protocol::sign::verify(&pk, b"hello", &sig).is_ok());
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[cfg(feature = "sign")]
pub fn sign_bytes(secret_key_text: &str, data: &[u8]) -> Result<String, SignError> {
    let sk = secret_key(secret_key_text)?;
    let pk = minisign::PublicKey::from_secret_key(&sk)
        .map_err(|e| SignError::Key(format!("secret key is not usable: {e}")))?;
    let sig = minisign::sign(
        Some(&pk),
        &sk,
        data,
        None,
        Some("signature from clearcount"),
    )
    .map_err(|e| SignError::Key(format!("cannot sign: {e}")))?;
    Ok(sig.into_string())
}

/// Signs a file with the secret key file and writes `FILE.minisig` next to
/// it (replacing an older signature). Returns the signature's path.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("cc-doc-sign-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let pk = clearcount_protocol::sign::keygen(dir.join("k.pub"), dir.join("k.key")).unwrap();
/// std::fs::write(dir.join("config.toml"), "version = 1\nsample_rate = 0.1\n").unwrap();
/// let sig_path = clearcount_protocol::sign::sign(dir.join("k.key"), dir.join("config.toml")).unwrap();
/// assert_eq!(sig_path, dir.join("config.toml.minisig"));
/// let sig = std::fs::read_to_string(&sig_path).unwrap();
/// assert!(clearcount_protocol::sign::verify(&pk, b"version = 1\nsample_rate = 0.1\n", &sig).is_ok());
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[cfg(feature = "sign")]
pub fn sign(
    secret_path: impl AsRef<std::path::Path>,
    file: impl AsRef<std::path::Path>,
) -> Result<std::path::PathBuf, SignError> {
    let (secret_path, file) = (secret_path.as_ref(), file.as_ref());
    let sk_text =
        std::fs::read_to_string(secret_path).map_err(|e| io_err("read", secret_path, e))?;
    let data = std::fs::read(file).map_err(|e| io_err("read", file, e))?;
    let sig = sign_bytes(&sk_text, &data)?;
    let mut out = file.as_os_str().to_owned();
    out.push(".minisig");
    let out = std::path::PathBuf::from(out);
    std::fs::write(&out, sig).map_err(|e| io_err("write", &out, e))?;
    Ok(out)
}

#[cfg(all(test, feature = "sign"))]
mod tests {
    use super::*;

    fn keys(tag: &str) -> (std::path::PathBuf, String, String) {
        let dir = std::env::temp_dir().join(format!("cc-sign-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pk = keygen(dir.join("k.pub"), dir.join("k.key")).unwrap();
        let sk = std::fs::read_to_string(dir.join("k.key")).unwrap();
        (dir, pk, sk)
    }

    #[test]
    fn round_trip_and_refusals() {
        let (dir, pk, sk) = keys("rt");
        let (dir2, pk2, sk2) = keys("rt2");
        let sig = sign_bytes(&sk, b"data").unwrap();
        verify(&pk, b"data", &sig).unwrap();
        // bare base64 key works too
        let b64 = pk.lines().nth(1).unwrap();
        verify(b64, b"data", &sig).unwrap();
        assert!(matches!(
            verify(&pk, b"datA", &sig),
            Err(SignError::Mismatch)
        ));
        assert!(matches!(
            verify(&pk2, b"data", &sig),
            Err(SignError::OtherKey)
        ));
        let other = sign_bytes(&sk2, b"data").unwrap();
        assert!(matches!(
            verify(&pk, b"data", &other),
            Err(SignError::OtherKey)
        ));
        assert!(matches!(
            verify(&pk, b"data", "garbage\n"),
            Err(SignError::Malformed(_))
        ));
        assert!(matches!(
            verify("not a key", b"data", &sig),
            Err(SignError::Key(_))
        ));
        assert!(matches!(secret_key("junk"), Err(SignError::Key(_))));
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGkh").unwrap(), b"hi!");
        assert_eq!(base64_decode("aA==").unwrap(), b"h");
        assert!(base64_decode("a=Gk").is_none() && base64_decode("aGk").is_none());
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(dir2).unwrap();
    }
}
