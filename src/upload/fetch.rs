//! HTTP with ureq: the signed config fetch and the POST of a report.

use super::UploadSettings;
use crate::config::CollectionConfig;

const CONFIG_LIMIT: u64 = 1 << 20;
const SIG_LIMIT: u64 = 16 << 10;
const ANSWER_LIMIT: u64 = 16 << 10;

fn agent(s: &UploadSettings) -> ureq::Agent {
    let cfg = ureq::Agent::config_builder()
        .timeout_connect(Some(s.connect_timeout))
        .timeout_global(Some(s.total_timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("clearcount")
        .build();
    ureq::Agent::new_with_config(cfg)
}

fn net_error(url: &str, e: &ureq::Error, s: &UploadSettings) -> String {
    match e {
        ureq::Error::Timeout(_) => format!(
            "server did not answer in time ({} s) at {url}",
            s.total_timeout.as_secs_f64()
        ),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            format!("server unreachable at {url} ({e})")
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("server unreachable at {url} (connection refused)")
        }
        ureq::Error::Io(io) => format!("network error talking to {url}: {io}"),
        other => format!("bad answer from {url}: {other}"),
    }
}

fn get(
    agent: &ureq::Agent,
    url: &str,
    limit: u64,
    s: &UploadSettings,
) -> Result<(u16, Vec<u8>), String> {
    let mut resp = agent.get(url).call().map_err(|e| net_error(url, &e, s))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| net_error(url, &e, s))?;
    Ok((status, body))
}

/// Fetches and verifies the signed config: `config_url`, then
/// `config_url + ".minisig"`, checked with the settings' public key; a
/// version below `accepted` is refused.
pub fn fetch_config(s: &UploadSettings, accepted: Option<u64>) -> Result<CollectionConfig, String> {
    let agent = agent(s);
    let (st, text) = get(&agent, &s.config_url, CONFIG_LIMIT, s)?;
    if !(200..300).contains(&st) {
        return Err(format!(
            "cannot fetch the config: {} answered HTTP {st}",
            s.config_url
        ));
    }
    let text = String::from_utf8(text)
        .map_err(|_| format!("config at {} is not UTF-8 text", s.config_url))?;
    let sig_url = format!("{}.minisig", s.config_url);
    let (st, sig) = get(&agent, &sig_url, SIG_LIMIT, s)?;
    if st == 404 {
        return Err(format!(
            "config refused: signature is missing ({sig_url} not found)"
        ));
    }
    if !(200..300).contains(&st) {
        return Err(format!(
            "cannot fetch the config signature: {sig_url} answered HTTP {st}"
        ));
    }
    let sig = String::from_utf8_lossy(&sig);
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
    let resp = agent(s)
        .post(url)
        .header("Content-Type", "application/json")
        .send(body);
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => return Posted::Retry(net_error(url, &e, s)),
    };
    let st = resp.status().as_u16();
    let answer = resp
        .body_mut()
        .with_config()
        .limit(ANSWER_LIMIT)
        .read_to_vec()
        .unwrap_or_default();
    let answer: String = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    match st {
        200..=299 => Posted::Ok,
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
