//! S3-compatible object storage for the server (feature `s3`):
//! `--data s3://bucket/prefix`.
//!
//! [`S3Store`] implements [`Store`] with the [`object_store`] crate, so that
//! any number of identical, stateless `clearcount serve` instances (and
//! `clearcount merge` jobs) can share one bucket:
//!
//! | [`Store`] method | S3 request |
//! |---|---|
//! | [`Store::put_if_absent`] | `PutObject` with `If-None-Match: *` (a 412 means the report is already there: [`PutOutcome::Existed`]) |
//! | [`Store::put`] | `PutObject` (atomic: readers see the old object or the new one) |
//! | [`Store::replace_file`] | a conditional `PutObject` of the file (mapped, not read into memory): `If-Match: <ETag>` to replace the version read before, `If-None-Match: *` to create; a 412 is [`Replaced::Conflict`]. One request carries up to 5 GiB, so there is no multipart upload (S3 takes no `If-Match` on one) |
//! | [`Store::version`] | `HeadObject`: the `ETag` |
//! | [`Store::get`] | `GetObject`; the reports of a shard just listed are fetched ahead, 16 at a time, so that the merge (one report at a time) does not wait one round trip per report |
//! | [`Store::open`], [`Store::open_async`] | `GetObject`, its body streamed (into a blocking reader, or as it is) |
//! | [`Store::list`] | `ListObjectsV2` with delimiter `/` (all pages) |
//! | [`Store::delete`] | `DeleteObject` |
//!
//! Dedup needs no lock: two instances that receive the same report race on
//! the same key (`reports/<week>/<h2>/<sha256>.json`) with a conditional
//! put, and the store lets exactly one of them create it.
//!
//! # Several instances, one bucket
//!
//! Nothing is kept in a server process but a cache of the charts and the
//! set of weeks it received reports for since its last merge, so instances
//! can be added, removed or killed at any time:
//!
//! - **Ingest.** A report is stored (conditional put) *before* the 2xx
//!   answer. An answered report is in the bucket; a killed instance loses at
//!   most the uploads in flight, which were never answered, and clients send
//!   them again later (the same bytes, hence the same key: stored once).
//! - **Merge.** A merge reads the archive's `ETag` (`HeadObject`), then
//!   lists every shard of the week, streams the reports into a local scratch
//!   file and uploads it with one conditional `PutObject` (`If-Match` on
//!   that `ETag`, or `If-None-Match: *` for a week without an archive). S3
//!   replaces an object atomically, so a reader sees one complete archive or
//!   another, never a torn one. A merge is a pure function of the reports
//!   it lists, so running it again is harmless.
//! - **Why no report is lost.** Reports are never modified or deleted, and
//!   S3 listings are strongly consistent, so a merge includes every report
//!   answered before it listed. A merge's write succeeds only if the
//!   archive is still the one it read *before* listing; any archive written
//!   in between was built from a listing no later than its own, so nothing
//!   it replaces holds a report it lacks. If another merge wrote first (a
//!   412), the merge starts over (read, list, write), up to
//!   [`crate::merge`]'s attempt limit. So two merges racing leave the
//!   archive of the later listing: after the last merge, every report
//!   accepted before it listed is in the archive exactly once. The race
//!   tests (`race_tests.rs`) force all 20 orders of two merges' steps on
//!   moto while uploads continue, and show that unconditional writes lose
//!   reports in the same test.
//!
//! # Settings
//!
//! Endpoint, region and credentials come from the usual environment:
//! `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_REGION` (or
//! `AWS_DEFAULT_REGION`; default `us-east-1`), `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, and `AWS_ALLOW_HTTP=true`
//! for a plain-HTTP endpoint (implied for a loopback endpoint such as
//! `http://127.0.0.1:9000`). Requests use path-style URLs
//! (`<endpoint>/<bucket>/<key>`) unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`
//! is set. Conditional writes (`If-None-Match: *` and `If-Match` on
//! `PutObject`) are what makes racing merges safe: AWS S3, MinIO,
//! Cloudflare R2 and moto honour them. Some self-hosted stores (Garage 2.5)
//! answer 200 whatever is there: opening a store probes it
//! ([`S3Store::probe_conditional_writes`]), and on a store that ignores
//! them every conditional write is checked (`HeadObject`) just before it is
//! made, and every merge lists the week again after writing and merges
//! again if the listing moved (see [`crate::merge`]).
//!
//! Opening a store checks the bucket once (a one-level listing), so that a
//! missing bucket, refused credentials or an unreachable endpoint are a
//! one-line error at start, not at the first upload.

use super::store::{
    AsyncObjectReader, BoxFuture, ConditionalWrites, Expect, Listing, ObjectMeta, ObjectReader,
    PutOutcome, Replaced, Store, check_key,
};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as OsPath;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The largest object a single `PutObject` may carry (S3's limit, 5 GiB).
const MAX_SINGLE_PUT: u64 = 5 << 30;

/// The bucket and key prefix named by an `s3://bucket/prefix` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty): every key
    /// of the store lives under `<prefix>/`.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket` or `s3://bucket/prefix`.
    pub fn parse(url: &str) -> io::Result<S3Location> {
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad object-store URL {url:?}: {why} (expected s3://bucket/prefix)"),
            )
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(bad(
                "the bucket name must be 3 to 63 characters of a-z, 0-9, '.' and '-'",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() && check_key(prefix).is_err() {
            return Err(bad(
                "the prefix must be '/'-separated names of A-Z, a-z, 0-9, '.', '_' and '-'",
            ));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The object-storage backend of the server.
///
/// Cheap to clone (the client is shared). Its async methods run on the
/// caller's tokio runtime; the reader returned by [`Store::open`] must be
/// read outside the runtime's worker threads (inside
/// `tokio::task::spawn_blocking`, as the merge and the pages do).
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<dyn ObjectStore>,
    location: S3Location,
    scratch: PathBuf,
    read_ahead: Arc<ReadAhead>,
    /// What the store honours, probed when it was opened.
    conditional: ConditionalWrites,
}

/// Reports fetched ahead of the merge (see [`S3Store`]'s `list`): the merge
/// reads one report at a time, which over S3 would be one round trip per
/// report; listing a report shard starts fetching its reports, a few at a
/// time and a bounded number ahead, so that the merge's `get`s find them
/// here. Reports are immutable, so a fetched one stays valid.
#[derive(Debug)]
struct ReadAhead {
    /// key → (when the fetch started, the report once fetched). The slot's
    /// lock is held by its fetch until it is done, so a `get` that comes
    /// first waits for it instead of fetching the report again.
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Slot)>>,
    /// Signalled when an entry is taken.
    room: tokio::sync::Notify,
    /// The last report key read (reads go in key order within a shard): a
    /// read-ahead that fell behind skips the keys already read.
    cursor: std::sync::Mutex<String>,
    /// Fetches under way, for every shard being fetched ahead (the merge
    /// lists a few shards ahead).
    permits: Arc<tokio::sync::Semaphore>,
}

impl Default for ReadAhead {
    fn default() -> ReadAhead {
        ReadAhead {
            entries: Default::default(),
            room: Default::default(),
            cursor: Default::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(READ_AHEAD_CONCURRENCY)),
        }
    }
}

/// Reports fetched at once by the read-ahead (all shards together).
const READ_AHEAD_CONCURRENCY: usize = 16;
/// Reports held at most by the read-ahead (each at most 64 KiB).
const READ_AHEAD_WINDOW: usize = 256;
/// A fetched report not taken within this time is dropped, and a
/// read-ahead whose window stays full this long stops.
const READ_AHEAD_EXPIRY: Duration = Duration::from_secs(30);

/// One report fetched ahead (`None` while fetching, or if the fetch failed).
type Slot = Arc<tokio::sync::Mutex<Option<Vec<u8>>>>;

impl ReadAhead {
    fn len(&self) -> usize {
        self.entries.lock().map_or(0, |m| m.len())
    }

    /// The report fetched ahead under `key`, waiting for its fetch if it is
    /// under way; `None` if there is none or the fetch failed.
    async fn take(&self, key: &str) -> Option<Vec<u8>> {
        if let Ok(mut c) = self.cursor.lock() {
            key.clone_into(&mut c);
        }
        let slot = self.entries.lock().ok()?.remove(key).map(|(_, s)| s)?;
        self.room.notify_waiters();
        slot.lock().await.take()
    }

    /// True if `key` was passed by the reader already (same shard, not
    /// after the last key read).
    fn passed(&self, key: &str) -> bool {
        let Ok(c) = self.cursor.lock() else {
            return false;
        };
        let shard = |k: &str| k.rsplit_once('/').map(|(d, _)| d.to_owned());
        shard(&c) == shard(key) && key <= c.as_str()
    }

    /// Forgets what was fetched ahead under `key` (after a write or a
    /// delete of it: the store stays read-after-write consistent).
    fn evict(&self, key: &str) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(key);
        }
    }

    fn insert(&self, key: String, slot: Slot) {
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= READ_AHEAD_WINDOW {
                m.retain(|_, (t, _)| t.elapsed() < READ_AHEAD_EXPIRY);
            }
            m.insert(key, (std::time::Instant::now(), slot));
        }
    }
}

/// True for `reports/<week>/<h2>/`, a shard of reports.
fn is_report_shard(prefix: &str) -> bool {
    prefix.starts_with("reports/") && prefix.matches('/').count() == 3
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let host = rest.split('/').next().unwrap_or("");
    let host = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl S3Store {
    /// Opens `s3://bucket/prefix` with the settings of the environment (see
    /// the [module documentation](self)), and checks that the bucket can be
    /// listed. Blocks for that check (at most about 15 s); may be called
    /// from inside or outside a tokio runtime.
    pub fn from_url(url: &str) -> io::Result<S3Store> {
        S3Store::from_url_with(url, std::iter::empty::<(&str, &str)>())
    }

    /// Like [`S3Store::from_url`], with settings that override the
    /// environment, named like the environment variables
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, ...; any case).
    pub fn from_url_with<K: AsRef<str>, V: AsRef<str>>(
        url: &str,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> io::Result<S3Store> {
        let location = S3Location::parse(url)?;
        let mut parsed = Vec::new();
        for (k, v) in settings {
            let key: AmazonS3ConfigKey = k.as_ref().to_ascii_lowercase().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unknown object-store setting {:?}", k.as_ref()),
                )
            })?;
            parsed.push((key, v.as_ref().to_owned()));
        }
        let store = S3Store::build(&location, &parsed, standard_retry())?;
        store.remove_stale_scratch();
        // The check uses its own client on its own runtime (in a thread of
        // its own, so that this works inside a runtime too), with few
        // retries: the store's pooled connections stay on the caller's
        // runtime.
        let probe = S3Store::build(&location, &parsed, probe_retry())?;
        let conditional = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| io::Error::other(format!("cannot start a runtime: {e}")))?;
                rt.block_on(async {
                    probe.check().await?;
                    probe.probe_conditional_writes().await
                })
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the bucket check failed")))
        })?;
        Ok(S3Store {
            conditional,
            ..store
        })
    }

    fn build(
        location: &S3Location,
        settings: &[(AmazonS3ConfigKey, String)],
        retry: object_store::RetryConfig,
    ) -> io::Result<S3Store> {
        let mut builder = AmazonS3Builder::from_env();
        for (k, v) in settings {
            builder = builder.with_config(*k, v);
        }
        builder = builder.with_bucket_name(&location.bucket);
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        if endpoint.as_deref().is_some_and(is_loopback_url) {
            builder = builder.with_allow_http(true);
        }
        let s3 = builder.with_retry(retry).build().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot set up {location}: {}", one_line(&e.to_string())),
            )
        })?;
        Ok(S3Store::with_object_store(Arc::new(s3), location.clone()))
    }

    /// A store over any [`ObjectStore`] (for example
    /// `object_store::memory::InMemory` in a test), with keys under
    /// `location.prefix`. No check is made.
    pub fn with_object_store(inner: Arc<dyn ObjectStore>, location: S3Location) -> S3Store {
        let scratch = std::env::temp_dir().join("clearcount-s3-scratch");
        S3Store {
            inner,
            location,
            scratch,
            read_ahead: Arc::default(),
            conditional: ConditionalWrites::HONOURED,
        }
    }

    /// Finds out whether the store honours conditional writes, on an
    /// object of its own (`probe/conditional-writes-<random>`, removed
    /// after): a second create-if-absent must be refused, and so must a
    /// replace naming a version the object does not have.
    pub async fn probe_conditional_writes(&self) -> io::Result<ConditionalWrites> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let key = format!("probe/conditional-writes-{hex}");
        let dest = self.full_key(&key)?;
        let put = |mode: PutMode| {
            let opts = PutOptions {
                mode,
                ..Default::default()
            };
            self.inner
                .put_opts(&dest, PutPayload::from_static(b"probe"), opts)
        };
        put(PutMode::Create)
            .await
            .map_err(|e| self.error(e, "put", &key))?;
        let refused = |r: object_store::Result<_>| match r {
            Ok(_) => Ok(false),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(true),
            Err(e) => Err(self.error(e, "put", &key)),
        };
        let if_none_match = refused(put(PutMode::Create).await);
        let stale = UpdateVersion {
            e_tag: Some("\"00000000000000000000000000000000\"".into()),
            version: None,
        };
        let if_match = refused(put(PutMode::Update(stale)).await);
        let _ = self.inner.delete(&dest).await;
        Ok(ConditionalWrites {
            if_none_match: if_none_match?,
            if_match: if_match?,
        })
    }

    /// On a store that ignores `If-None-Match` / `If-Match`: whether the
    /// object is what a conditional write expects, checked just before the
    /// write (the write still carries the condition, for stores that do
    /// honour it).
    async fn still_as_expected(&self, key: &str, expect: &Expect) -> io::Result<bool> {
        let current = self.version(key).await?;
        Ok(match (expect, current) {
            (Expect::Absent, None) => true,
            (Expect::Version(v), Some(c)) => *v == c,
            _ => false,
        })
    }

    /// Removes scratch files (merge output not yet uploaded) left by a
    /// process killed more than an hour ago.
    fn remove_stale_scratch(&self) {
        super::store::remove_stale_files(&self.scratch);
    }

    /// Lists the top level of the store once: a one-line error if the
    /// bucket is missing, the credentials are refused or the endpoint
    /// cannot be reached.
    pub async fn check(&self) -> io::Result<()> {
        let prefix = self.full_prefix("");
        self.inner
            .list_with_delimiter(prefix.as_ref())
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, "list", "/"))
    }

    fn full_key(&self, key: &str) -> io::Result<OsPath> {
        check_key(key)?;
        let full = if self.location.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.location.prefix)
        };
        OsPath::parse(&full).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid store key {key:?}: {}", one_line(&e.to_string())),
            )
        })
    }

    /// The object-store prefix of a store prefix (`""` or `a/b/`).
    fn full_prefix(&self, prefix: &str) -> Option<OsPath> {
        let p = prefix.trim_end_matches('/');
        let full = match (self.location.prefix.is_empty(), p.is_empty()) {
            (true, true) => return None,
            (true, false) => p.to_owned(),
            (false, true) => self.location.prefix.clone(),
            (false, false) => format!("{}/{p}", self.location.prefix),
        };
        Some(OsPath::from(full.as_str()))
    }

    /// The store key of an object-store path (`None` outside the prefix).
    fn store_key<'a>(&self, full: &'a str) -> Option<&'a str> {
        if self.location.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(self.location.prefix.as_str())?
                .strip_prefix('/')
        }
    }

    /// A one-line error naming the store, the operation and the key, with
    /// the common causes spelled out.
    fn error(&self, e: object_store::Error, op: &str, key: &str) -> io::Error {
        let text = one_line(&e.to_string());
        let (kind, msg) = match &e {
            object_store::Error::NotFound { .. } if text.contains("NoSuchBucket") || key == "/" => {
                (
                    io::ErrorKind::NotFound,
                    format!(
                        "bucket {} does not exist (or is not reachable under this endpoint): {text}",
                        self.location.bucket
                    ),
                )
            }
            object_store::Error::NotFound { .. } => (
                io::ErrorKind::NotFound,
                format!("{op} {key} in {}: not found", self.location),
            ),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => (
                io::ErrorKind::PermissionDenied,
                format!(
                    "credentials refused by {} ({op} {key}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: {text}",
                    self.location
                ),
            ),
            _ if text.contains("NoSuchBucket") => (
                io::ErrorKind::NotFound,
                format!("bucket {} does not exist: {text}", self.location.bucket),
            ),
            _ if text.contains("InvalidAccessKeyId")
                || text.contains("SignatureDoesNotMatch")
                || text.contains("AccessDenied") =>
            {
                (
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "credentials refused by {} ({op} {key}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: {text}",
                        self.location
                    ),
                )
            }
            _ => (
                io::ErrorKind::Other,
                format!("{op} {key} in {}: {text}", self.location),
            ),
        };
        io::Error::new(kind, msg)
    }

    /// Starts fetching the reports of a listed shard, in listing order (the
    /// merge's order), [`READ_AHEAD_CONCURRENCY`] at a time and at most
    /// [`READ_AHEAD_WINDOW`] ahead of what was taken. Errors are left for
    /// the `get` that comes after.
    fn start_read_ahead(&self, objects: &[ObjectMeta]) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let keys: Vec<(String, OsPath)> = objects
            .iter()
            .filter(|o| o.key.ends_with(".json") && o.size <= super::MAX_BODY as u64)
            .filter_map(|o| Some((o.key.clone(), self.full_key(&o.key).ok()?)))
            .collect();
        let inner = self.inner.clone();
        let ra = self.read_ahead.clone();
        rt.spawn(async move {
            let permits = ra.permits.clone();
            for (key, path) in keys {
                while ra.len() >= READ_AHEAD_WINDOW {
                    let room = ra.room.notified();
                    if ra.len() < READ_AHEAD_WINDOW {
                        break;
                    }
                    if tokio::time::timeout(READ_AHEAD_EXPIRY, room).await.is_err() {
                        return; // nobody is reading: stop
                    }
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                if ra.passed(&key) {
                    continue;
                }
                let slot: Slot = Arc::default();
                let mut fetched = slot.clone().lock_owned().await;
                ra.insert(key, slot);
                let inner = inner.clone();
                tokio::spawn(async move {
                    if let Ok(r) = inner.get(&path).await
                        && let Ok(b) = r.bytes().await
                    {
                        *fetched = Some(b.to_vec());
                    }
                    drop(fetched);
                    drop(permit);
                });
            }
        });
    }

    /// One conditional `PutObject` of the whole file, mapped into memory
    /// (file-backed pages, not a copy). S3 takes up to 5 GiB in one request.
    async fn put_file_if(&self, key: &str, path: &Path, mode: PutMode) -> io::Result<Replaced> {
        let dest = self.full_key(key)?;
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        if len > MAX_SINGLE_PUT {
            return Err(io::Error::other(format!(
                "{key} is {len} bytes: a conditional write takes at most {MAX_SINGLE_PUT}"
            )));
        }
        let payload = if len == 0 {
            PutPayload::new()
        } else {
            // SAFETY: the file is this process's scratch file, written and
            // closed before, and neither changed nor truncated while mapped
            // (it is removed only after the upload).
            let map = unsafe { memmap2::Mmap::map(&file)? };
            PutPayload::from_bytes(axum::body::Bytes::from_owner(map))
        };
        let opts = PutOptions {
            mode,
            attributes: attributes(key),
            ..Default::default()
        };
        match self.inner.put_opts(&dest, payload, opts).await {
            Ok(_) => {
                let _ = std::fs::remove_file(path);
                Ok(Replaced::Done)
            }
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Ok(Replaced::Conflict),
            Err(e) => Err(self.error(e, "put", key)),
        }
    }
}

/// The `Content-Type` an object is stored with (by its key's extension), so
/// that a web server or CDN publishing the bucket serves it right.
pub fn content_type(key: &str) -> &'static str {
    // The config log's files have no extension (`entries/0`, `log.vkey`).
    if key.starts_with(crate::config_log::STORE_PREFIX) {
        return "text/plain; charset=utf-8";
    }
    let ext = key.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "ndjson" => "application/x-ndjson",
        "parquet" => "application/vnd.apache.parquet",
        "csv" => "text/csv; charset=utf-8",
        "toml" | "minisig" | "key" | "txt" | "proof" | "tlog-proof" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn attributes(key: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert(Attribute::ContentType, content_type(key).into());
    a
}

fn standard_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

fn probe_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

/// A blocking reader over an object's body, streamed from the store.
struct StreamingReader {
    rt: tokio::runtime::Handle,
    body: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
}

impl io::Read for StreamingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = tokio::io::ReadBuf::new(buf);
        let body = &mut self.body;
        self.rt.block_on(std::future::poll_fn(|cx| {
            body.as_mut().poll_read(cx, &mut rb)
        }))?;
        Ok(rb.filled().len())
    }
}

impl Store for S3Store {
    fn put_if_absent<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, PutOutcome> {
        Box::pin(async move {
            let dest = self.full_key(key)?;
            if !self.conditional.if_none_match
                && !self.still_as_expected(key, &Expect::Absent).await?
            {
                return Ok(PutOutcome::Existed);
            }
            let opts = PutOptions {
                mode: PutMode::Create,
                attributes: attributes(key),
                ..Default::default()
            };
            match self
                .inner
                .put_opts(&dest, PutPayload::from(bytes), opts)
                .await
            {
                Ok(_) => Ok(PutOutcome::Created),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(PutOutcome::Existed),
                Err(e) => Err(self.error(e, "put", key)),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let dest = self.full_key(key)?;
            let opts = PutOptions {
                attributes: attributes(key),
                ..Default::default()
            };
            let r = self
                .inner
                .put_opts(&dest, PutPayload::from(bytes), opts)
                .await
                .map(|_| ())
                .map_err(|e| self.error(e, "put", key));
            self.read_ahead.evict(key);
            r
        })
    }

    fn replace_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        expect: Expect,
    ) -> BoxFuture<'a, Replaced> {
        Box::pin(async move {
            let checked = match &expect {
                Expect::Absent => !self.conditional.if_none_match,
                Expect::Version(_) => !self.conditional.if_match,
            };
            if checked && !self.still_as_expected(key, &expect).await? {
                return Ok(Replaced::Conflict);
            }
            let r = match expect {
                Expect::Absent => self.put_file_if(key, path, PutMode::Create).await,
                Expect::Version(e_tag) => {
                    let v = UpdateVersion {
                        e_tag: Some(e_tag),
                        version: None,
                    };
                    self.put_file_if(key, path, PutMode::Update(v)).await
                }
            };
            self.read_ahead.evict(key);
            r
        })
    }

    fn version<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let src = self.full_key(key)?;
            match self.inner.head(&src).await {
                Ok(meta) => meta.e_tag.map(Some).ok_or_else(|| {
                    io::Error::other(format!(
                        "{} returned no ETag for {key}: conditional writes need one",
                        self.location
                    ))
                }),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.error(e, "head", key)),
            }
        })
    }

    fn open_async<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<AsyncObjectReader>> {
        Box::pin(async move {
            let src = self.full_key(key)?;
            let r = match self.inner.get(&src).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.error(e, "get", key)),
            };
            let body = tokio_util::io::StreamReader::new(r.into_stream());
            Ok(Some(Box::pin(body) as AsyncObjectReader))
        })
    }

    fn open_sized<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Option<(AsyncObjectReader, Option<u64>)>> {
        Box::pin(async move {
            let src = self.full_key(key)?;
            let r = match self.inner.get(&src).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.error(e, "get", key)),
            };
            let size = r.meta.size;
            let body = tokio_util::io::StreamReader::new(r.into_stream());
            Ok(Some((Box::pin(body) as AsyncObjectReader, Some(size))))
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let src = self.full_key(key)?;
            if let Some(b) = self.read_ahead.take(key).await {
                return Ok(Some(b));
            }
            let r = match self.inner.get(&src).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.error(e, "get", key)),
            };
            match r.bytes().await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.error(e, "read", key)),
            }
        })
    }

    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<ObjectReader>> {
        Box::pin(async move {
            let src = self.full_key(key)?;
            let r = match self.inner.get(&src).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.error(e, "get", key)),
            };
            let reader = StreamingReader {
                rt: tokio::runtime::Handle::current(),
                body: Box::pin(tokio_util::io::StreamReader::new(r.into_stream())),
            };
            Ok(Some(Box::new(reader) as ObjectReader))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Listing> {
        Box::pin(async move {
            if !prefix.is_empty() {
                match prefix.strip_suffix('/') {
                    Some(p) => check_key(p)?,
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("store prefix {prefix:?} must end in '/'"),
                        ));
                    }
                }
            }
            let full = self.full_prefix(prefix);
            let r = self
                .inner
                .list_with_delimiter(full.as_ref())
                .await
                .map_err(|e| self.error(e, "list", if prefix.is_empty() { "/" } else { prefix }))?;
            let mut listing = Listing::default();
            for d in &r.common_prefixes {
                if let Some(k) = self.store_key(d.as_ref())
                    && check_key(k).is_ok()
                    && k.starts_with(prefix)
                {
                    listing.dirs.push(format!("{k}/"));
                }
            }
            for o in &r.objects {
                if let Some(k) = self.store_key(o.location.as_ref())
                    && check_key(k).is_ok()
                    && k.starts_with(prefix)
                {
                    listing.objects.push(ObjectMeta {
                        key: k.to_owned(),
                        size: o.size,
                    });
                }
            }
            listing.dirs.sort();
            listing.dirs.dedup();
            listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
            if is_report_shard(prefix) && !listing.objects.is_empty() {
                self.start_read_ahead(&listing.objects);
            }
            Ok(listing)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let dest = self.full_key(key)?;
            let r = match self.inner.delete(&dest).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.error(e, "delete", key)),
            };
            self.read_ahead.evict(key);
            r
        })
    }

    fn scratch_dir(&self) -> PathBuf {
        let _ = std::fs::create_dir_all(&self.scratch);
        self.scratch.clone()
    }

    fn describe(&self) -> String {
        self.location.to_string()
    }

    fn conditional_writes(&self) -> ConditionalWrites {
        self.conditional
    }
}

#[cfg(test)]
pub(crate) mod moto;

#[cfg(test)]
mod moto_tests;

#[cfg(test)]
pub(crate) mod strip_proxy;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints() {
        assert!(is_loopback_url("http://127.0.0.1:9000"));
        assert!(is_loopback_url("http://localhost:9000/"));
        assert!(is_loopback_url("http://[::1]:9000"));
        assert!(!is_loopback_url("http://s3.example.org"));
        assert!(!is_loopback_url("https://10.0.0.1:9000"));
    }

    #[test]
    fn contract_on_memory() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mem = Arc::new(object_store::memory::InMemory::new());
        let s = S3Store::with_object_store(mem, S3Location::parse("s3://test/p/q").unwrap());
        rt.block_on(async {
            let k = "reports/2026-11-16/ab/abcd.json";
            assert_eq!(
                s.put_if_absent(k, b"1".to_vec()).await.unwrap(),
                PutOutcome::Created
            );
            assert_eq!(
                s.put_if_absent(k, b"2".to_vec()).await.unwrap(),
                PutOutcome::Existed
            );
            assert_eq!(s.get(k).await.unwrap().unwrap(), b"1");
            let l = s.list("reports/2026-11-16/").await.unwrap();
            assert_eq!(l.dirs, vec!["reports/2026-11-16/ab/".to_string()]);
            let l = s.list("").await.unwrap();
            assert_eq!(l.dirs, vec!["reports/".to_string()]);
            s.delete(k).await.unwrap();
            s.delete(k).await.unwrap();
            assert!(s.get(k).await.unwrap().is_none());
            // Read-ahead: listing a shard fetches its reports; every get
            // returns the right bytes, whether fetched ahead or not.
            for n in 0..300u32 {
                let key = format!("reports/2026-11-16/ef/{n:04}.json");
                s.put_if_absent(&key, n.to_le_bytes().to_vec())
                    .await
                    .unwrap();
            }
            let shard = s.list("reports/2026-11-16/ef/").await.unwrap();
            assert_eq!(shard.objects.len(), 300);
            for (n, o) in shard.objects.iter().enumerate() {
                let b = s.get(&o.key).await.unwrap().unwrap();
                assert_eq!(b, (n as u32).to_le_bytes().to_vec(), "{}", o.key);
            }
            assert!(s.read_ahead.len() <= READ_AHEAD_CONCURRENCY);
            assert!(s.put("../x", vec![]).await.is_err());
            assert!(s.list("reports").await.is_err());
        });
    }

    #[test]
    fn locations_and_content_types() {
        let l = S3Location::parse("s3://telemetry/mytool/prod/").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("telemetry", "mytool/prod")
        );
        assert_eq!(l.to_string(), "s3://telemetry/mytool/prod");
        let l = S3Location::parse("s3://telemetry").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("telemetry", ""));
        for bad in ["s3://", "s3://telemetry/../x", "http://telemetry"] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(content_type("site/index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("archive/2026-11-16.ndjson"),
            "application/x-ndjson"
        );
        for text in [
            "config/log/entries/0",
            "config/log/log.vkey",
            "config/log/checkpoints/3",
            "site/config.toml.proof",
            "site/config.toml.tlog-proof",
        ] {
            assert_eq!(content_type(text), "text/plain; charset=utf-8", "{text}");
        }
    }
}
