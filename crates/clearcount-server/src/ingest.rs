//! `POST /upload`: validation, filtering and storage of one report.
//!
//! Every refusal is a 4xx with a one-line plain-text reason; see
//! [`check_upload`] for the checks, which need no server. Before them, in
//! order: the source's rate limit (`429` with `Retry-After`, see
//! [`crate::limits`]), a declared length over 1 MiB (`413`), the budget of
//! upload bytes in flight (`503` with `Retry-After`), and the body read
//! within [`crate::Limits::body_timeout`] (`408`). The body is read as it
//! comes; at most [`MAX_BODY`] bytes are kept, and up to 1 MiB more is read
//! and dropped so that a client sending too much still reads its `413`.

use super::limits::{self, Peer};
use super::metrics::{Accepted, Refused};
use super::store::{self, PutOutcome};
use super::{ACCEPTED_AGE_DAYS, AppState, MAX_BODY};
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clearcount_protocol::config::CollectionConfig;
use clearcount_protocol::report::Report;
use std::sync::Arc;

/// Bodies over [`MAX_BODY`] but under this are read (and dropped) before the
/// 413, so the client can read the answer.
const DRAIN: usize = 1024 * 1024;

/// Why an upload is refused: an HTTP status and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status code (4xx).
    pub status: u16,
    /// One line of plain text.
    pub reason: String,
}

impl Refusal {
    /// A 400 with `reason` (cut to one line of at most 300 bytes).
    pub fn bad(reason: impl Into<String>) -> Refusal {
        Refusal {
            status: 400,
            reason: one_line(&reason.into()),
        }
    }
}

fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 300 {
        let mut cut = 300;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// What a valid upload comes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// SHA-256 (hex) of the canonical bytes of the report as received.
    pub hash: String,
    /// The report reduced by the config, or `None` if nothing was left.
    pub kept: Option<Report>,
}

/// Checks an upload body against the rules and reduces it by the config.
///
/// Refused: a body over [`MAX_BODY`] bytes (413), anything
/// [`Report::from_slice`] refuses (unknown fields, wrong types, a bad week,
/// X out of range, negative or too large counts, bad names), a week that
/// starts after `now`'s date, or more than [`ACCEPTED_AGE_DAYS`] days before it.
pub fn check_upload(
    body: &[u8],
    config: &CollectionConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Checked, Refusal> {
    if body.len() > MAX_BODY {
        return Err(Refusal {
            status: 413,
            reason: format!("report too large: more than {MAX_BODY} bytes"),
        });
    }
    let report = Report::from_slice(body).map_err(|e| Refusal::bad(e.to_string()))?;
    let week = report
        .week_date()
        .map_err(|e| Refusal::bad(e.to_string()))?;
    let today = now.date_naive();
    if week > today {
        return Err(Refusal::bad(format!(
            "week {} starts in the future (server date {today})",
            report.week
        )));
    }
    if (today - week).num_days() > ACCEPTED_AGE_DAYS {
        return Err(Refusal::bad(format!(
            "week {} is too old: more than {} weeks before the server date {today}",
            report.week,
            ACCEPTED_AGE_DAYS / 7
        )));
    }
    let hash = store::sha256_hex(&report.to_bytes());
    let kept = config.filter(&report);
    Ok(Checked {
        hash,
        kept: (!kept.programs.is_empty()).then_some(kept),
    })
}

fn text(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

fn retry_after(status: StatusCode, secs: u64, msg: &str) -> Response {
    let mut r = text(status, msg);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// How reading a body ended badly.
enum BodyError {
    TooLarge,
    Unreadable,
}

/// Reads a body as it comes: keeps at most `keep` bytes, reads and drops up
/// to `drain` in all, then gives up.
async fn read_body(mut body: Body, keep: usize, drain: usize) -> Result<Bytes, BodyError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(_)) => return Err(BodyError::Unreadable),
            Some(Ok(f)) => {
                let Ok(data) = f.into_data() else { continue };
                total += data.len();
                if total > drain {
                    return Err(BodyError::TooLarge);
                }
                if total <= keep {
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
    if total > keep {
        return Err(BodyError::TooLarge);
    }
    Ok(buf.into())
}

/// The `POST /upload` handler.
pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("report too large: more than {MAX_BODY} bytes"),
        )
    };
    // The source's rate limit: the source is hashed with the day's salt
    // and never kept otherwise (see `limits`).
    if let (Some(rate), Some(axum::Extension(Peer(ip)))) = (&state.rate, peer) {
        let source = limits::source(ip, &headers, state.client_ip_header.as_ref());
        if let Err(wait) = rate.check(source) {
            state.metrics.refused(Refused::RateLimited);
            return retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                wait,
                &format!("too many reports from this source; try again in {wait} s"),
            );
        }
    }
    // A body up to DRAIN bytes is read (and what is over MAX_BODY dropped),
    // so that the client, still sending, gets the 413 and its reason rather
    // than a reset connection.
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > DRAIN as u64) {
        state.metrics.refused(Refused::TooLarge);
        return too_large();
    }
    // The bytes this upload may hold, from the budget of all uploads.
    let reserve = declared_len
        .map_or(MAX_BODY, |n| (n as usize).min(MAX_BODY))
        .max(1);
    let Ok(_budget) = state
        .upload_budget
        .clone()
        .try_acquire_many_owned(reserve as u32)
    else {
        state.metrics.refused(Refused::Busy);
        return retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            1,
            "the server is receiving too many reports at once; try again in a second",
        );
    };
    let read = tokio::time::timeout(state.limits.body_timeout, read_body(body, MAX_BODY, DRAIN));
    let bytes = match read.await {
        Err(_) => {
            state.metrics.refused(Refused::Timeout);
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "report body not received in time",
            );
        }
        Ok(Err(BodyError::TooLarge)) => {
            state.metrics.refused(Refused::TooLarge);
            return too_large();
        }
        Ok(Err(BodyError::Unreadable)) => {
            state.metrics.refused(Refused::Unreadable);
            return text(StatusCode::BAD_REQUEST, "the report body could not be read");
        }
        Ok(Ok(b)) => b,
    };
    let Some(cfg) = state.current_config() else {
        state.metrics.refused(Refused::NoConfig);
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server has no collection config; try again later",
        );
    };
    let checked = match check_upload(&bytes, &cfg.config, super::now()) {
        Ok(c) => c,
        Err(r) => {
            state.metrics.refused(match r.status {
                413 => Refused::TooLarge,
                _ => Refused::Invalid,
            });
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
            return text(status, &r.reason);
        }
    };
    let Some(kept) = checked.kept else {
        state.metrics.accepted(Accepted::NothingKept);
        return text(
            StatusCode::OK,
            "nothing kept: the collection config declares none of this report's programs or counters; nothing stored",
        );
    };
    let key = store::report_key(&kept.week, &checked.hash);
    match state.store.put_if_absent(&key, kept.to_bytes()).await {
        Ok(PutOutcome::Created) => {
            state.metrics.accepted(Accepted::Stored);
            if let Ok(mut d) = state.dirty.lock() {
                d.insert(kept.week.clone());
            }
            text(StatusCode::CREATED, &format!("stored {}", checked.hash))
        }
        Ok(PutOutcome::Existed) => {
            state.metrics.accepted(Accepted::Duplicate);
            text(
                StatusCode::OK,
                &format!("already stored {} (duplicate upload)", checked.hash),
            )
        }
        Err(e) => {
            state.metrics.refused(Refused::StoreError);
            eprintln!("clearcount serve: cannot store a report: {e}");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server cannot store reports right now; try again later",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal's reason is one line of at most 300 bytes (and the cut).
    #[test]
    fn a_refusal_is_one_short_line() {
        let r = Refusal::bad("two\nlines");
        assert_eq!((r.status, r.reason.as_str()), (400, "two lines"));
        let r = Refusal::bad("é".repeat(200));
        assert!(r.reason.len() <= 300 + '…'.len_utf8() && r.reason.ends_with('…'));
    }
}
