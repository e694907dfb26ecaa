//! The few HTTP requests the command makes (ureq, HTTPS with rustls): the
//! auditor's GETs of a log's files and the maintainer's `add-checkpoint`
//! POSTs to witnesses.

use std::time::Duration;

/// An agent that returns error statuses as answers, with a time limit.
pub(crate) fn agent() -> ureq::Agent {
    let cfg = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .user_agent(concat!("clearcount/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(cfg)
}

fn net_error(url: &str, e: ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("cannot reach {url}: connection refused")
        }
        e => format!("cannot reach {url}: {e}"),
    }
}

/// GETs `url`: `Some(body)` for a 200, `None` for a 404 or 410; an answer
/// of more than `limit` bytes is refused (it is not read further).
pub(crate) fn get(agent: &ureq::Agent, url: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
    let mut r = agent.get(url).call().map_err(|e| net_error(url, e))?;
    match r.status().as_u16() {
        200 => r
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map(Some)
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => too_large(url, limit),
                e => format!("cannot read the answer of {url}: {e}"),
            }),
        404 | 410 => Ok(None),
        s => Err(format!("{url} answered {s}")),
    }
}

/// POSTs a text body; returns the status and the answer's text.
pub(crate) fn post(agent: &ureq::Agent, url: &str, body: String) -> Result<(u16, String), String> {
    let mut r = agent
        .post(url)
        .content_type("text/plain; charset=utf-8")
        .send(body)
        .map_err(|e| net_error(url, e))?;
    let status = r.status().as_u16();
    let text = r
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .map_err(|e| format!("cannot read the answer of {url}: {e}"))?;
    Ok((status, text))
}

/// The refusal of an answer or file larger than `limit` bytes.
pub(crate) fn too_large(what: &str, limit: u64) -> String {
    if limit >= 1 << 20 {
        format!("{what} is larger than {} MiB: refused", limit >> 20)
    } else {
        format!("{what} is larger than {} KiB: refused", limit >> 10)
    }
}
