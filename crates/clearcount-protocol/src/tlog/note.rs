//! C2SP signed notes (`c2sp.org/signed-note`): text signed by one or more
//! keys, the verifier key (vkey) text format, Ed25519 signatures (type
//! `0x01`), and timestamped Ed25519 cosignatures (type `0x04`,
//! `c2sp.org/tlog-cosignature`, `cosignature/v1`).
//!
//! A note is its text (ending in a newline), a blank line, and one
//! signature line per signature: `— <key name> <base64(key ID || signature)>`
//! followed by a newline. A key ID is the first four bytes of
//! `SHA-256(key name || 0x0A || type || public key)`, big-endian.
//!
//! ```
//! use clearcount_protocol::tlog::note::{Note, VerifierKey};
//! // The example of c2sp.org/signed-note.
//! let vkey = VerifierKey::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
//! let note = Note::parse("This is an example message.\n\n\
//!     — example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n").unwrap();
//! let verified = note.verify(&[&vkey]).unwrap();
//! assert_eq!(verified.len(), 1);
//! ```

use super::FormatError;
use super::b64;
use super::merkle::sha256;
use std::fmt;

/// Most signature lines a note may carry (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// The header line of a `cosignature/v1` signed message.
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1";

/// The signature types clearcount uses (C2SP signed-note's registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `0x01`: Ed25519 over the note text (a log's checkpoint signature).
    Ed25519,
    /// `0x04`: timestamped Ed25519 `cosignature/v1` (a witness).
    CosignatureV1,
}

impl KeyType {
    /// The signature type identifier byte.
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => 0x01,
            KeyType::CosignatureV1 => 0x04,
        }
    }

    /// The type with this identifier byte, if clearcount knows it.
    pub fn from_byte(b: u8) -> Option<KeyType> {
        match b {
            0x01 => Some(KeyType::Ed25519),
            0x04 => Some(KeyType::CosignatureV1),
            _ => None,
        }
    }

    /// Length of a signature of this type, after the 4-byte key ID.
    pub fn signature_len(self) -> usize {
        match self {
            KeyType::Ed25519 => 64,
            KeyType::CosignatureV1 => 72,
        }
    }
}

/// True for a valid key name: non-empty, without Unicode spaces or `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c < ' ')
}

/// The key ID: `SHA-256(name || 0x0A || type || public key)[:4]`,
/// big-endian.
pub fn key_id(name: &str, key_type: KeyType, public: &[u8; 32]) -> u32 {
    let mut buf = Vec::with_capacity(name.len() + 34);
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(key_type.byte());
    buf.extend_from_slice(public);
    let h = sha256(&buf);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

/// The message a `cosignature/v1` signs: the header line, the timestamp
/// line, then the checkpoint's note text.
pub fn cosigned_message(text: &str, timestamp: u64) -> String {
    format!("{COSIGNATURE_V1_HEADER}\ntime {timestamp}\n{text}")
}

/// A verifier key: a name, a key ID, a signature type and an Ed25519
/// public key. Text form (vkey): `<name>+<hex key ID>+<base64(type || key)>`.
///
/// ```
/// use clearcount_protocol::tlog::note::{KeyType, VerifierKey};
/// let v = VerifierKey::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k\n").unwrap();
/// assert_eq!((v.name(), v.id(), v.key_type()), ("example.com/foo", 0x530d903a, KeyType::Ed25519));
/// assert_eq!(v.to_string(), "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key_type: KeyType,
    public: [u8; 32],
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl VerifierKey {
    /// A verifier key for this name, type and public key (its ID computed).
    pub fn new(
        name: &str,
        key_type: KeyType,
        public: [u8; 32],
    ) -> Result<VerifierKey, FormatError> {
        if !is_valid_key_name(name) {
            return Err(FormatError::new(format!(
                "key name {name:?} is empty or holds a space or a '+'"
            )));
        }
        Ok(VerifierKey {
            name: name.to_string(),
            id: key_id(name, key_type, &public),
            key_type,
            public,
        })
    }

    /// Parses a vkey (surrounding whitespace, such as a file's final
    /// newline, is ignored). The key ID must match the name and key.
    pub fn parse(text: &str) -> Result<VerifierKey, FormatError> {
        let text = text.trim();
        let bad = |why: &str| FormatError::new(format!("verifier key {text:?} {why}"));
        // Names hold no '+'; base64 may.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id16), Some(key64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("is not <name>+<key ID>+<key>"));
        };
        if !is_valid_key_name(name) {
            return Err(bad("has an invalid key name"));
        }
        let id = parse_key_id(id16).ok_or_else(|| bad("has a key ID that is not 8 hex digits"))?;
        let raw = b64::decode(key64).ok_or_else(|| bad("has a key that is not base64"))?;
        let key_type = raw
            .first()
            .and_then(|&b| KeyType::from_byte(b))
            .ok_or_else(|| bad("has an unknown signature type (clearcount knows 0x01 and 0x04)"))?;
        let public: [u8; 32] = raw[1..]
            .try_into()
            .map_err(|_| bad("does not hold a 32-byte Ed25519 public key"))?;
        let key = VerifierKey::new(name, key_type, public)?;
        if key.id != id {
            return Err(bad("has a key ID that does not match its name and key"));
        }
        Ok(key)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The signature type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// True when `sig` (a signature line of a note) names this key.
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.id
    }

    /// Verifies a signature by this key over a note `text`. Returns `None`
    /// when it does not verify, else `Some(timestamp)` (0 for a plain
    /// Ed25519 signature, the cosignature's time for a cosignature).
    pub fn verify(&self, text: &str, signature: &[u8]) -> Option<u64> {
        if signature.len() != self.key_type.signature_len() {
            return None;
        }
        let pk = ed25519_compact::PublicKey::new(self.public);
        match self.key_type {
            KeyType::Ed25519 => {
                let sig = ed25519_compact::Signature::from_slice(signature).ok()?;
                pk.verify(text.as_bytes(), &sig).ok().map(|()| 0)
            }
            KeyType::CosignatureV1 => {
                let ts = u64::from_be_bytes(signature[..8].try_into().ok()?);
                if ts > i64::MAX as u64 {
                    return None;
                }
                let sig = ed25519_compact::Signature::from_slice(&signature[8..]).ok()?;
                pk.verify(cosigned_message(text, ts).as_bytes(), &sig)
                    .ok()
                    .map(|()| ts)
            }
        }
    }
}

fn parse_key_id(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(self.key_type.byte());
        raw.extend_from_slice(&self.public);
        write!(f, "{}+{:08x}+{}", self.name, self.id, b64::encode(&raw))
    }
}

/// One signature line of a note: key name, key ID, and the signature
/// bytes that follow the key ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID.
    pub key_id: u32,
    /// The signature (for a cosignature: 8-byte timestamp, then 64 bytes).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, `— <name> <base64(key ID || signature)>` and a
    /// newline.
    pub fn line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}\n", self.name, b64::encode(&raw))
    }

    /// Parses one signature line (without its newline).
    pub fn parse_line(line: &str) -> Result<NoteSignature, FormatError> {
        let bad = || FormatError::new(format!("signature line {line:?} is malformed"));
        let rest = line.strip_prefix("\u{2014} ").ok_or_else(bad)?;
        let (name, sig64) = rest.split_once(' ').ok_or_else(bad)?;
        if !is_valid_key_name(name) {
            return Err(bad());
        }
        let raw = b64::decode(sig64).ok_or_else(bad)?;
        if raw.len() < 5 {
            return Err(bad());
        }
        Ok(NoteSignature {
            name: name.to_string(),
            key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            signature: raw[4..].to_vec(),
        })
    }

    /// The timestamp of a cosignature (the first 8 bytes, big-endian), if
    /// the signature is long enough to hold one.
    pub fn timestamp(&self) -> Option<u64> {
        Some(u64::from_be_bytes(
            self.signature.get(..8)?.try_into().ok()?,
        ))
    }
}

/// A signed note: its text (ending in a newline) and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The note text, final newline included, separating blank line not.
    pub text: String,
    /// The signatures, in the order of the note.
    pub signatures: Vec<NoteSignature>,
}

/// A signature of a known key that verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Index of the key in the list given to [`Note::verify`].
    pub key: usize,
    /// The cosignature's timestamp (0 for a plain Ed25519 signature).
    pub timestamp: u64,
}

/// A signature that names a known key (name and ID) but does not verify:
/// the whole note is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSignature {
    /// The key's name.
    pub name: String,
    /// The key's ID.
    pub key_id: u32,
}

impl fmt::Display for BadSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the signature of key {} ({:08x}) does not verify",
            self.name, self.key_id
        )
    }
}

impl std::error::Error for BadSignature {}

impl Note {
    /// A note of this text without signatures yet (the text must end in a
    /// newline).
    pub fn new(text: &str) -> Result<Note, FormatError> {
        check_text(text)?;
        Ok(Note {
            text: text.to_string(),
            signatures: Vec::new(),
        })
    }

    /// Parses a signed note: valid UTF-8 (given), no control character but
    /// newline, the text separated from at least one signature line by the
    /// last blank line, every line ending in a newline, at most
    /// [`MAX_SIGNATURES`] signatures.
    pub fn parse(msg: &str) -> Result<Note, FormatError> {
        if msg.chars().any(|c| c < ' ' && c != '\n') {
            return Err(FormatError::new(
                "the note holds a control character other than newline",
            ));
        }
        let split = msg
            .rfind("\n\n")
            .ok_or_else(|| FormatError::new("the note has no blank line before its signatures"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if sigs.is_empty() {
            return Err(FormatError::new("the note has no signature"));
        }
        if !sigs.ends_with('\n') {
            return Err(FormatError::new(
                "the note does not end with a newline after its last signature",
            ));
        }
        let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(FormatError::new(format!(
                "the note has more than {MAX_SIGNATURES} signatures"
            )));
        }
        let signatures = lines
            .into_iter()
            .map(NoteSignature::parse_line)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// The signed note: text, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }

    /// Adds a signature, replacing an earlier one of the same key (name
    /// and ID).
    pub fn add_signature(&mut self, sig: NoteSignature) {
        self.signatures
            .retain(|s| !(s.name == sig.name && s.key_id == sig.key_id));
        self.signatures.push(sig);
    }

    /// Verifies the signatures against `keys`, as C2SP signed-note says:
    /// a signature whose key name and ID are not both those of a known key
    /// is ignored; one that names a known key must verify, or the whole
    /// note is refused. Returns the known keys whose signature verified
    /// (each once, in note order), possibly none.
    pub fn verify(&self, keys: &[&VerifierKey]) -> Result<Vec<Verified>, BadSignature> {
        let mut out: Vec<Verified> = Vec::new();
        for sig in &self.signatures {
            let Some(k) = keys.iter().position(|k| k.matches(sig)) else {
                continue;
            };
            match keys[k].verify(&self.text, &sig.signature) {
                Some(timestamp) => {
                    if !out.iter().any(|v| v.key == k) {
                        out.push(Verified { key: k, timestamp });
                    }
                }
                None => {
                    return Err(BadSignature {
                        name: sig.name.clone(),
                        key_id: sig.key_id,
                    });
                }
            }
        }
        Ok(out)
    }
}

fn check_text(text: &str) -> Result<(), FormatError> {
    if !text.ends_with('\n') {
        return Err(FormatError::new("a note text must end with a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(FormatError::new(
            "a note text must hold no control character other than newline",
        ));
    }
    Ok(())
}

/// A signer key: what signs checkpoints (type [`KeyType::Ed25519`], a log)
/// or cosigns them (type [`KeyType::CosignatureV1`], a witness).
///
/// Text form (skey, as Go's `golang.org/x/mod/sumdb/note` writes it):
/// `PRIVATE+KEY+<name>+<hex key ID>+<base64(type || 32-byte seed)>`.
/// The key ID is that of the public key, so a skey and its vkey agree.
#[cfg(feature = "tlog-sign")]
#[derive(Clone)]
pub struct SignerKey {
    verifier: VerifierKey,
    keypair: ed25519_compact::KeyPair,
}

#[cfg(feature = "tlog-sign")]
impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({}, secret not shown)", self.verifier)
    }
}

#[cfg(feature = "tlog-sign")]
impl SignerKey {
    /// A new random key of this name and type (randomness from the
    /// operating system).
    pub fn generate(name: &str, key_type: KeyType) -> Result<SignerKey, FormatError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| FormatError::new(format!("cannot get random bytes for a key: {e}")))?;
        SignerKey::from_seed(name, key_type, seed)
    }

    /// The key with this 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(
        name: &str,
        key_type: KeyType,
        seed: [u8; 32],
    ) -> Result<SignerKey, FormatError> {
        let keypair = ed25519_compact::KeyPair::try_from_seed(ed25519_compact::Seed::new(seed))
            .map_err(|_| FormatError::new("an all-zero seed is not a key"))?;
        let verifier = VerifierKey::new(name, key_type, *keypair.pk)?;
        Ok(SignerKey { verifier, keypair })
    }

    /// Parses a skey (surrounding whitespace ignored); the key ID must be
    /// the one of the public key derived from the seed.
    pub fn parse(text: &str) -> Result<SignerKey, FormatError> {
        let bad = |why: &str| FormatError::new(format!("signer key {why}"));
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("does not start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id16), Some(key64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("is not PRIVATE+KEY+<name>+<key ID>+<key>"));
        };
        let id = parse_key_id(id16).ok_or_else(|| bad("has a key ID that is not 8 hex digits"))?;
        let raw = b64::decode(key64).ok_or_else(|| bad("has a key that is not base64"))?;
        let key_type = raw
            .first()
            .and_then(|&b| KeyType::from_byte(b))
            .ok_or_else(|| bad("has an unknown signature type"))?;
        let seed: [u8; 32] = raw[1..]
            .try_into()
            .map_err(|_| bad("does not hold a 32-byte Ed25519 seed"))?;
        let key = SignerKey::from_seed(name, key_type, seed)?;
        if key.verifier.id != id {
            return Err(bad("has a key ID that does not match its name and key"));
        }
        Ok(key)
    }

    /// The skey text (secret: keep it offline).
    pub fn to_skey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(self.verifier.key_type.byte());
        raw.extend_from_slice(&*self.keypair.sk.seed());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.verifier.name,
            self.verifier.id,
            b64::encode(&raw)
        )
    }

    /// The public half.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Signs a note text with an Ed25519 (log) key.
    pub fn sign(&self, text: &str) -> Result<NoteSignature, FormatError> {
        if self.verifier.key_type != KeyType::Ed25519 {
            return Err(FormatError::new(format!(
                "key {} is a witness (cosignature) key, not a log key",
                self.verifier.name
            )));
        }
        check_text(text)?;
        let sig = self.keypair.sk.sign(text.as_bytes(), None);
        Ok(NoteSignature {
            name: self.verifier.name.clone(),
            key_id: self.verifier.id,
            signature: sig.to_vec(),
        })
    }

    /// Cosigns a note text at `timestamp` (POSIX seconds) with a
    /// `cosignature/v1` (witness) key.
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<NoteSignature, FormatError> {
        if self.verifier.key_type != KeyType::CosignatureV1 {
            return Err(FormatError::new(format!(
                "key {} is a log key, not a witness (cosignature) key",
                self.verifier.name
            )));
        }
        check_text(text)?;
        if timestamp > i64::MAX as u64 {
            return Err(FormatError::new("a cosignature time must be below 2^63"));
        }
        let sig = self
            .keypair
            .sk
            .sign(cosigned_message(text, timestamp).as_bytes(), None);
        let mut signature = Vec::with_capacity(72);
        signature.extend_from_slice(&timestamp.to_be_bytes());
        signature.extend_from_slice(&sig[..]);
        Ok(NoteSignature {
            name: self.verifier.name.clone(),
            key_id: self.verifier.id,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rules() {
        let line = "\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let ok = format!("text\n\n{line}");
        assert_eq!(Note::parse(&ok).unwrap().to_text(), ok);
        // text with an empty line: the last blank line separates
        let two = format!("a\n\nb\n\n{line}");
        assert_eq!(Note::parse(&two).unwrap().text, "a\n\nb\n");
        for bad in [
            format!("text\n{line}"),                            // no blank line
            "text\n\n".to_string(),                             // no signature
            format!("text\n\n{}", line.trim_end()),             // no final newline
            format!("te\rxt\n\n{line}"),                        // control character
            format!("text\n\n{line}\n"),                        // blank line after signatures
            "text\n\n- example.com/foo AAAAAAA=\n".to_string(), // not an em dash
            "text\n\n\u{2014} exa+mple AAAAAAA=\n".to_string(), // '+' in the name
            "text\n\n\u{2014} example AAAAAA==\n".to_string(),  // fewer than 5 bytes
        ] {
            assert!(Note::parse(&bad).is_err(), "{bad:?} parsed");
        }
        let many: String = (0..=MAX_SIGNATURES).map(|_| line).collect();
        assert!(Note::parse(&format!("t\n\n{many}")).is_err());
    }
}
