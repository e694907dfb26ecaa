//! The signed config fetch and the POST of a report, through the settings'
//! [`Transport`](super::Transport).

use super::UploadSettings;
use super::floor::Floor;
use super::transport::{Answer, Method, Request, TransportError};
use crate::config::CollectionConfig;
use clearcount_protocol::tlog::client::verify_config;

const CONFIG_LIMIT: u64 = 1 << 20;
/// A proof bundle is about 1.4 KB for a log of a thousand versions.
const PROOF_LIMIT: u64 = 64 << 10;
const SIG_LIMIT: u64 = 16 << 10;
const ANSWER_LIMIT: u64 = 16 << 10;

fn net_error(url: &str, e: &TransportError, s: &UploadSettings) -> String {
    match e {
        TransportError::TimedOut => format!(
            "server did not answer in time ({} s) at {url}",
            s.total_timeout.as_secs_f64()
        ),
        TransportError::Unreachable(why) => format!("server unreachable at {url} ({why})"),
        TransportError::BadAnswer(why) => format!("bad answer from {url}: {why}"),
        TransportError::Other(why) => format!("network error talking to {url}: {why}"),
    }
}

fn send(s: &UploadSettings, url: &str, body: Option<&[u8]>, limit: u64) -> Result<Answer, String> {
    let req = Request {
        method: if body.is_some() {
            Method::Post
        } else {
            Method::Get
        },
        url,
        body: body.map(|b| ("application/json", b)),
        connect_timeout: s.connect_timeout,
        total_timeout: s.total_timeout,
        limit,
    };
    s.transport().send(&req).map_err(|e| net_error(url, &e, s))
}

/// A config that passed every check, with what to keep of the config log.
pub(crate) struct Verified {
    /// The config.
    pub config: CollectionConfig,
    /// The new state of the config log this installation keeps
    /// ([`Kept`] text).
    pub kept: String,
}

/// Fetches and verifies the signed config: `config_url`, then
/// `config_url + ".minisig"`, checked with the settings' public key (a
/// version below the accepted one is refused), then its proof from the
/// config log, `config_url + ".proof?old=..."`: the config must be the
/// latest entry of a checkpoint signed by the log key (and cosigned as the
/// policy says, with cosignatures no older than the settings allow) that
/// extends the checkpoint this installation kept and the one the toolchain
/// compiled in (`counters-spec/config-log.md` §9; see [`Floor`]). Any
/// failure is one line; nothing is kept then.
pub(crate) fn fetch_config(s: &UploadSettings, state: &super::State) -> Result<Verified, String> {
    // The compiled-in policy, and the floor: the kept checkpoint if it is
    // of the compiled-in log (a damaged one, or one kept under another
    // log key, is set aside), and the compiled-in minimum, which holds
    // whatever happened to the state.
    let Floor { policy, kept, .. } = Floor::of(s, state)?;
    let a = send(s, &s.config_url, None, CONFIG_LIMIT)?;
    if !(200..300).contains(&a.status) {
        return Err(format!(
            "cannot fetch the config: {} answered HTTP {}",
            s.config_url, a.status
        ));
    }
    let text = String::from_utf8(a.body)
        .map_err(|_| format!("config at {} is not UTF-8 text", s.config_url))?;
    let sig_url = format!("{}.minisig", s.config_url);
    let a = send(s, &sig_url, None, SIG_LIMIT)?;
    if a.status == 404 {
        return Err(format!(
            "config refused: signature is missing ({sig_url} not found)"
        ));
    }
    if !(200..300).contains(&a.status) {
        return Err(format!(
            "cannot fetch the config signature: {sig_url} answered HTTP {}",
            a.status
        ));
    }
    let sig = String::from_utf8_lossy(&a.body);
    crate::sign::verify_config(&s.public_key, &text, &sig, state.accepted_config)
        .map_err(|e| format!("config refused: bad signature or version: {e}"))?;
    let proof_url = policy.proof_url(&s.config_url, kept.as_ref());
    let a = send(s, &proof_url, None, PROOF_LIMIT)?;
    if a.status == 404 {
        return Err(format!(
            "config refused: no proof from the config log ({} not found)",
            s.config_url.clone() + ".proof"
        ));
    }
    if !(200..300).contains(&a.status) {
        return Err(format!(
            "cannot fetch the config's proof: {proof_url} answered HTTP {}",
            a.status
        ));
    }
    let bundle = String::from_utf8_lossy(&a.body);
    // The cosignatures' age is measured on the clearcount clock.
    let now = u64::try_from(crate::clock::now().timestamp()).unwrap_or(0);
    let accepted = verify_config(&policy, kept.as_ref(), &text, &bundle, now)
        .map_err(|r| format!("config refused by the config log: {r}"))?;
    Ok(Verified {
        config: accepted.config,
        kept: accepted.kept.to_text(),
    })
}

pub(super) enum Posted {
    Ok,
    Rejected(u16, String),
    Retry(String),
}

pub(super) fn post(s: &UploadSettings, body: &[u8]) -> Posted {
    let url = &s.upload_url;
    let a = match send(s, url, Some(body), ANSWER_LIMIT) {
        Ok(a) => a,
        Err(e) => return Posted::Retry(e),
    };
    let st = a.status;
    let answer: String = String::from_utf8_lossy(&a.body)
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    match st {
        200..=299 => Posted::Ok,
        // Too many uploads from this address for now (say, a company's NAT
        // on a Monday morning), or the body came in too slowly: not the
        // report's fault. Tried again on a later day, like a 5xx.
        408 | 429 => Posted::Retry(format!(
            "{url} answered HTTP {st}: try again later{}",
            if answer.is_empty() {
                String::new()
            } else {
                format!(" ({answer})")
            }
        )),
        400..=499 => Posted::Rejected(st, answer),
        _ => Posted::Retry(format!(
            "server error: {url} answered HTTP {st}{}",
            if answer.is_empty() {
                String::new()
            } else {
                format!(" ({answer})")
            }
        )),
    }
}
