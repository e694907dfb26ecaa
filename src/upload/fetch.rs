//! The signed config fetch and the POST of a report, through the settings'
//! [`Transport`](super::Transport).

use super::UploadSettings;
use super::transport::{Answer, Method, Request, TransportError};
use crate::config::CollectionConfig;

const CONFIG_LIMIT: u64 = 1 << 20;
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

/// Fetches and verifies the signed config: `config_url`, then
/// `config_url + ".minisig"`, checked with the settings' public key; a
/// version below `accepted` is refused.
pub fn fetch_config(s: &UploadSettings, accepted: Option<u64>) -> Result<CollectionConfig, String> {
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
    crate::sign::verify_config(&s.public_key, &text, &sig, accepted)
        .map_err(|e| format!("config refused: bad signature or version: {e}"))
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
