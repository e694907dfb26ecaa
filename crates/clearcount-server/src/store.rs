//! Storage for the server: a small key/value interface over a local
//! directory (and, later, S3-compatible object storage).
//!
//! Keys are `/`-separated relative paths. The layout is chosen so that the
//! public part of the store can be published as static files by any web
//! server or CDN:
//!
//! | key | what |
//! |---|---|
//! | `reports/<week>/<h2>/<hash>.json` | one kept report; `<hash>` is the SHA-256 (hex) of the report's canonical bytes as received, `<h2>` its first two hex digits (a shard) |
//! | `archive/<week>.ndjson` | every kept report of the week, one per line, in key order |
//! | `archive/<week>.parquet`, `archive/<week>.csv` | the week's tidy tables, rebuilt from its archive file (see [`crate::tables`]) |
//! | `config/current.toml`, `config/current.toml.minisig`, `config/public.key` | the config being served, its signature, the key |
//! | `config/current.toml.tlog-proof` | the config's C2SP tlog-proof (its inclusion in the config log, the signed checkpoint) |
//! | `config/history/v<version>.toml` (+ `.minisig`) | every config version the server has used |
//! | `config/log/…` | a copy of the config log directory (`log.vkey`, `policy`, `entries/<i>`, `checkpoints/<size>`, `checkpoint`), so a static server serves the auditor's endpoints |
//!
//! Every write is atomic: readers see the old object or the new one, never
//! part of one. [`Store::put_if_absent`] is the primitive behind dedup: the
//! same report sent twice (or sent to two server instances at once) is
//! stored once, without any lock. [`Store::replace_file`] is the primitive
//! behind the archive: a conditional replace (`If-Match` on the version read
//! before the merge listed the reports), so no merge replaces a newer
//! archive.
//!
//! # No arrival times
//!
//! The directory store gives every report file, and the directories above
//! it, the modification time of the report's week start (00:00 UTC), so a
//! store published as it is (a web server's `Last-Modified`, `ls -l`, a
//! copy with `rsync -t`) shows no arrival time. What a file system keeps
//! besides (the inode change time, a birth time) cannot be set: publish
//! through a web server or a copy that carries the modification time only
//! (`rsync -rt`, not `tar --format=posix`, which records change times), or
//! publish `archive/`, `site/` and `config/` only, which hold every report.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A boxed future, so that [`Store`] can be used as `Arc<dyn Store>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// A blocking reader over one stored object (read it inside
/// `tokio::task::spawn_blocking`).
pub type ObjectReader = Box<dyn io::Read + Send>;

/// An async reader over one stored object.
pub type AsyncObjectReader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// What [`Store::replace_file`] may replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Only if there is no object under the key (`If-None-Match: *`).
    Absent,
    /// Only if the object is still this version (`If-Match`), as returned
    /// by [`Store::version`].
    Version(String),
}

/// What [`Store::replace_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// The object now holds the file.
    Done,
    /// The object was not what was expected (another writer came first);
    /// nothing was written and the file is left where it was.
    Conflict,
}

/// What [`Store::put_if_absent`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object did not exist and was written.
    Created,
    /// An object already existed under the key; nothing was written.
    Existed,
}

/// Whether a store honours conditional writes, as probed when it was
/// opened: `If-None-Match: *` (create only if absent) and `If-Match` (replace
/// only the version read). Some self-hosted S3 stores answer 200 to both,
/// whatever is there; the server then checks before each write and
/// verifies after each merge (see [`crate::merge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConditionalWrites {
    /// A second create of one key is refused.
    pub if_none_match: bool,
    /// A replace naming a stale version is refused.
    pub if_match: bool,
}

impl ConditionalWrites {
    /// Both honoured.
    pub const HONOURED: ConditionalWrites = ConditionalWrites {
        if_none_match: true,
        if_match: true,
    };

    /// True when both are honoured.
    pub fn honoured(self) -> bool {
        self.if_none_match && self.if_match
    }

    /// One line for the log and the `/config` page.
    pub fn describe(self) -> String {
        if self.honoured() {
            return "conditional writes honoured (If-None-Match: *, If-Match): racing merges cannot lose a report".into();
        }
        let mut ignored = Vec::new();
        if !self.if_none_match {
            ignored.push("If-None-Match: *");
        }
        if !self.if_match {
            ignored.push("If-Match");
        }
        format!(
            "conditional writes NOT honoured (ignores {}): every write is checked just before it, and every merge lists the week again after writing and merges again if the listing moved, so no report is missing from the archive for longer than one merge interval",
            ignored.join(" and ")
        )
    }
}

/// One object in a [`Listing`]./// One object in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

impl ObjectMeta {
    /// The last component of the key.
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

/// One level of the key space under a prefix (like a directory listing, or
/// an object-store listing with delimiter `/`). Both lists are sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Child "directories": full prefixes ending in `/`.
    pub dirs: Vec<String>,
    /// Objects directly under the prefix.
    pub objects: Vec<ObjectMeta>,
}

/// The storage interface of the server.
///
/// Object safe (`Arc<dyn Store>`); every method is atomic per object. The
/// operations map one to one onto S3-style object storage: conditional put
/// (`If-None-Match: *`), put, get, list with delimiter, delete, and a
/// streaming (multipart) upload of a local file.
pub trait Store: Send + Sync + 'static {
    /// Writes `bytes` under `key` unless an object already exists there.
    fn put_if_absent<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, PutOutcome>;
    /// Writes (or replaces) the object under `key`, atomically.
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, ()>;
    /// Moves the local file `path` (written by the caller in
    /// [`Store::scratch_dir`]) into the store under `key`, atomically, if the
    /// object there is what `expect` says; else [`Replaced::Conflict`] and
    /// the file stays. Used for large objects (the archive) so that they are
    /// never held in memory.
    fn replace_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        expect: Expect,
    ) -> BoxFuture<'a, Replaced>;
    /// The version of the object under `key` (an opaque token that changes
    /// whenever the object is replaced: the S3 `ETag`, or the directory
    /// store's file identity), or `None` if there is none.
    fn version<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<String>>;
    /// The whole object, or `None` if there is none.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>>;
    /// A blocking reader over the object, for streaming large ones.
    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<ObjectReader>>;
    /// An async reader over the object, for sending it to a client: it
    /// reads only as fast as it is polled, and holds no thread in between.
    fn open_async<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<AsyncObjectReader>>;
    /// [`Store::open_async`], with the size of the object opened when the
    /// store knows it (a response's `Content-Length`).
    fn open_sized<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Option<(AsyncObjectReader, Option<u64>)>> {
        Box::pin(async move { Ok(self.open_async(key).await?.map(|r| (r, None))) })
    }
    /// One level of keys under `prefix` (which is empty or ends in `/`).
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Listing>;
    /// Removes the object; no error if there is none.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()>;
    /// A local directory for temporary files passed to [`Store::put_file`].
    fn scratch_dir(&self) -> PathBuf;
    /// A short description for logs (`dir:/path`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
    /// Whether the store honours conditional writes (probed when it was
    /// opened; the directory store always does). No default: a store that
    /// wraps another must say what the inner one does, or merges would skip
    /// the checks a store that ignores them needs.
    fn conditional_writes(&self) -> ConditionalWrites;
}

/// Checks that a key is a safe relative path: non-empty `/`-separated
/// components of `[A-Za-z0-9._-]`, none starting with `.`.
pub fn check_key(key: &str) -> io::Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid store key {key:?}"),
        ))
    }
}

fn check_prefix(prefix: &str) -> io::Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    match prefix.strip_suffix('/') {
        Some(p) => check_key(p),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("store prefix {prefix:?} must end in '/'"),
        )),
    }
}

/// The local-directory store, the embedded default.
///
/// Keys map to files under the root. Writes go to a temporary file in
/// `<root>/.tmp/` (same file system) and are then renamed into place (put)
/// or hard-linked (put-if-absent: the link fails if the key exists, which
/// detects duplicates without a lock, also across processes). A process
/// killed mid-write leaves at most a file in `.tmp/`, never a partial
/// object; stale temporary files are removed when a store is opened.
///
/// A conditional replace ([`Store::replace_file`]) compares and renames
/// under an exclusive lock on `<root>/.lock`, so it holds across processes
/// on one machine. Report files and their directories get the week's start
/// as modification time (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    tmp: PathBuf,
    /// This process's id, in temporary file names.
    pid: u32,
}

/// Sequence number of temporary files, unique within the process (the
/// process id makes the names unique across processes).
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the files in `dir` last modified more than [`STALE_TMP`] ago:
/// temporary files left by a process killed mid-write (younger ones may
/// belong to a live process sharing the directory).
pub(crate) fn remove_stale_files(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TMP);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl DirStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> io::Result<DirStore> {
        let root = root.as_ref().to_path_buf();
        let tmp = root.join(".tmp");
        std::fs::create_dir_all(&tmp)?;
        // Remove temporary files left by a crashed process (old ones only:
        // another live process may share the directory).
        remove_stale_files(&tmp);
        Ok(DirStore {
            root,
            tmp,
            pid: std::process::id(),
        })
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn tmp_path(&self) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("w-{}-{}", self.pid, n))
    }

    /// Writes `bytes` to a new temporary file, with modification and
    /// access times `times` if given.
    fn write_tmp(&self, bytes: &[u8], times: Option<SystemTime>) -> io::Result<PathBuf> {
        let tmp = self.tmp_path();
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            io::Write::write_all(&mut f, bytes)?;
            if let Some(t) = times {
                f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    /// Nine system calls for a new report (create, write, time and close
    /// the temporary file, link, unlink, then open, time and close the
    /// shard's directory), more only when the week's or the shard's
    /// directory is new. A duplicate costs about the same and leaves
    /// nothing: the link fails.
    fn put_if_absent_sync(&self, key: &str, bytes: &[u8]) -> io::Result<PutOutcome> {
        let dest = self.path(key)?;
        // A report carries its week's start as its times, never its arrival.
        let week_start = report_week_start(key);
        let tmp = self.write_tmp(bytes, week_start)?;
        let mut res = std::fs::hard_link(&tmp, &dest);
        let mut made_dirs = false;
        if matches!(&res, Err(e) if e.kind() == io::ErrorKind::NotFound)
            && let Some(parent) = dest.parent()
        {
            made_dirs = true;
            res = std::fs::create_dir_all(parent).and_then(|()| std::fs::hard_link(&tmp, &dest));
        }
        let _ = std::fs::remove_file(&tmp);
        let created = match res {
            Ok(()) => PutOutcome::Created,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(PutOutcome::Existed),
            Err(e) => return Err(e),
        };
        if let Some(t) = week_start {
            // The shard's directory has a new entry: its times go back to
            // the week's start; so do those above it up to `reports/` when
            // they gained a directory.
            let mut dir = dest.parent();
            while let Some(d) = dir {
                set_dir_times(d, t);
                if !made_dirs || d.parent() == Some(self.root.as_path()) {
                    break;
                }
                dir = d.parent();
            }
        }
        Ok(created)
    }

    /// The version token of a file: its identity and change time, which a
    /// replace (a rename of a new file) always changes.
    fn version_sync(&self, key: &str) -> io::Result<Option<String>> {
        let meta = match std::fs::metadata(self.path(key)?) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(file_version(&meta)))
    }

    fn replace_file_sync(&self, key: &str, path: &Path, expect: &Expect) -> io::Result<Replaced> {
        self.path(key)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(".lock"))?;
        lock.lock()?;
        let current = self.version_sync(key)?;
        let ok = match (expect, &current) {
            (Expect::Absent, None) => true,
            (Expect::Version(v), Some(c)) => v == c,
            _ => false,
        };
        if !ok {
            return Ok(Replaced::Conflict);
        }
        self.rename_into(path, key)?;
        drop(lock);
        Ok(Replaced::Done)
    }

    fn rename_into(&self, tmp: &Path, key: &str) -> io::Result<()> {
        let dest = self.path(key)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::rename(tmp, &dest) {
            Ok(()) => Ok(()),
            Err(_) => {
                // Different file system (a scratch file from elsewhere):
                // copy into our temporary directory first, then rename.
                let own = self.tmp_path();
                std::fs::copy(tmp, &own)?;
                let r = std::fs::rename(&own, &dest);
                if r.is_err() {
                    let _ = std::fs::remove_file(&own);
                }
                let _ = std::fs::remove_file(tmp);
                r
            }
        }
    }

    fn list_sync(&self, prefix: &str) -> io::Result<Listing> {
        check_prefix(prefix)?;
        let dir = self.root.join(prefix);
        let mut listing = Listing::default();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') || check_key(&name).is_err() {
                continue;
            }
            let meta = e.metadata()?;
            if meta.is_dir() {
                listing.dirs.push(format!("{prefix}{name}/"));
            } else if meta.is_file() {
                listing.objects.push(ObjectMeta {
                    key: format!("{prefix}{name}"),
                    size: meta.len(),
                });
            }
        }
        listing.dirs.sort();
        listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listing)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("storage task failed: {e}")))?
}

impl Store for DirStore {
    fn put_if_absent<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, PutOutcome> {
        // On the calling thread: these few calls on a local directory cost
        // less than handing them to another thread and back (see the crate
        // documentation, "Who runs what").
        Box::pin(async move { self.put_if_absent_sync(key, &bytes) })
    }

    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, ()> {
        let h = self.clone();
        let key = key.to_owned();
        Box::pin(blocking(move || {
            h.path(&key)?;
            let tmp = h.write_tmp(&bytes, None)?;
            let r = h.rename_into(&tmp, &key);
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        }))
    }

    fn replace_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        expect: Expect,
    ) -> BoxFuture<'a, Replaced> {
        let h = self.clone();
        let key = key.to_owned();
        let path = path.to_path_buf();
        Box::pin(blocking(move || h.replace_file_sync(&key, &path, &expect)))
    }

    fn version<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<String>> {
        let h = self.clone();
        let key = key.to_owned();
        Box::pin(blocking(move || h.version_sync(&key)))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        let p = self.path(key);
        Box::pin(blocking(move || match std::fs::read(p?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }))
    }

    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<ObjectReader>> {
        let p = self.path(key);
        Box::pin(blocking(move || match std::fs::File::open(p?) {
            Ok(f) => Ok(Some(Box::new(f) as ObjectReader)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }))
    }

    fn open_async<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<AsyncObjectReader>> {
        let p = self.path(key);
        Box::pin(async move {
            // tokio's file reads one buffer per poll on a blocking thread,
            // and holds none while the client does not read.
            match tokio::fs::File::open(p?).await {
                Ok(f) => Ok(Some(Box::pin(f) as AsyncObjectReader)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn open_sized<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Option<(AsyncObjectReader, Option<u64>)>> {
        let p = self.path(key);
        Box::pin(async move {
            match tokio::fs::File::open(p?).await {
                Ok(f) => {
                    // The size of the file opened: a replace renames a new
                    // file into place and leaves this one as it is.
                    let size = f.metadata().await?.len();
                    Ok(Some((Box::pin(f) as AsyncObjectReader, Some(size))))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Listing> {
        let h = self.clone();
        let prefix = prefix.to_owned();
        Box::pin(blocking(move || h.list_sync(&prefix)))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        let p = self.path(key);
        Box::pin(blocking(move || match std::fs::remove_file(p?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }))
    }

    fn scratch_dir(&self) -> PathBuf {
        self.tmp.clone()
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    fn conditional_writes(&self) -> ConditionalWrites {
        // Conditions are checked under the directory's lock (replace) or by
        // a hard link that fails if the key exists (create).
        ConditionalWrites::HONOURED
    }
}

/// The start (00:00 UTC) of the week of a report key
/// (`reports/<week>/...`), or `None` for any other key.
fn report_week_start(key: &str) -> Option<SystemTime> {
    let week = key.strip_prefix("reports/")?.split('/').next()?;
    let date = chrono::NaiveDate::parse_from_str(week, "%Y-%m-%d").ok()?;
    let secs = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Sets a directory's modification and access times (best effort).
fn set_dir_times(dir: &Path, t: SystemTime) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t));
    }
}

#[cfg(unix)]
fn file_version(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{:x}-{:x}-{}.{:09}-{}",
        meta.dev(),
        meta.ino(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.len()
    )
}

#[cfg(not(unix))]
fn file_version(meta: &std::fs::Metadata) -> String {
    let m = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default();
    format!("{}.{:09}-{}", m.as_secs(), m.subsec_nanos(), meta.len())
}

/// Opens the store named by `data`: a local directory path, or
/// `s3://bucket/prefix` (feature `s3`, settings from the `AWS_*`
/// environment variables).
pub fn open_store(data: &str) -> io::Result<std::sync::Arc<dyn Store>> {
    if data.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return Ok(std::sync::Arc::new(super::s3::S3Store::from_url(data)?));
        #[cfg(not(feature = "s3"))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "s3:// storage needs clearcount built with the `s3` feature",
        ));
    }
    Ok(std::sync::Arc::new(DirStore::open(data)?))
}

/// The SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The key of a kept report: `reports/<week>/<h2>/<hash>.json`.
pub fn report_key(week: &str, hash: &str) -> String {
    format!("reports/{week}/{}/{hash}.json", &hash[..2.min(hash.len())])
}

/// The key of a week's archive file: `archive/<week>.ndjson`.
pub fn archive_key(week: &str) -> String {
    format!("archive/{week}.ndjson")
}

/// The weekly archive files (`archive/<week>.ndjson`), in key order (oldest
/// week first).
pub async fn archive_files(store: &dyn Store) -> io::Result<Vec<ObjectMeta>> {
    Ok(archive_and_tables(store).await?.0)
}

/// The weekly archive files and, apart, their tables
/// (`archive/<week>.parquet`, `archive/<week>.csv`, see
/// [`crate::tables`]), each in key order, from one listing.
pub async fn archive_and_tables(
    store: &dyn Store,
) -> io::Result<(Vec<ObjectMeta>, Vec<ObjectMeta>)> {
    let (mut archive, mut tables) = (Vec::new(), Vec::new());
    for o in store.list("archive/").await?.objects {
        if o.key.ends_with(".ndjson") {
            archive.push(o);
        } else if o.key.ends_with(".parquet") || o.key.ends_with(".csv") {
            tables.push(o);
        }
    }
    Ok((archive, tables))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are safe relative paths, laid out by week and hash.
    #[test]
    fn keys_are_safe_and_laid_out_by_week() {
        assert!(check_key("reports/2026-11-16/ab/ab12.json").is_ok());
        for bad in ["", "../etc/passwd", "a//b", "/a", "a/.hidden", "a b"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(&sha256_hex(b"")[..8], "e3b0c442");
        assert_eq!(sha256_hex(b"").len(), 64);
        assert_eq!(
            report_key("2026-11-16", "abcdef"),
            "reports/2026-11-16/ab/abcdef.json"
        );
        assert_eq!(archive_key("2026-11-16"), "archive/2026-11-16.ndjson");
        let m = ObjectMeta {
            key: "archive/2026-11-16.ndjson".into(),
            size: 10,
        };
        assert_eq!(m.name(), "2026-11-16.ndjson");
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A report file, and every directory above it up to `reports/`, shows
    /// its week's start as its times, never the time it arrived.
    #[test]
    fn report_files_carry_their_weeks_start_not_their_arrival() {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStore::open(dir.path()).unwrap();
        let rt = runtime();
        let key = report_key("2026-11-16", &sha256_hex(b"r"));
        assert_eq!(
            rt.block_on(s.put_if_absent(&key, b"r".to_vec())).unwrap(),
            PutOutcome::Created
        );
        let week = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_794_787_200);
        assert_eq!(report_week_start(&key), Some(week));
        let file = dir.path().join(&key);
        let mut p = file.as_path();
        let mut checked = 0;
        while p != dir.path() {
            let m = std::fs::metadata(p).unwrap();
            assert_eq!(m.modified().unwrap(), week, "{}", p.display());
            assert_eq!(m.accessed().unwrap(), week, "{}", p.display());
            checked += 1;
            p = p.parent().unwrap();
        }
        assert_eq!(checked, 4, "file, shard, week and reports/");
        // A second report in the same shard and one in a new shard of the
        // same week: every file and directory still shows the week's start.
        let hash = |s: &str| sha256_hex(s.as_bytes());
        let same_shard = (0..)
            .map(|i| hash(&format!("s{i}")))
            .find(|h| h[..2] == key["reports/2026-11-16/".len()..][..2])
            .unwrap();
        let other_shard = (0..)
            .map(|i| hash(&format!("o{i}")))
            .find(|h| h[..2] != same_shard[..2])
            .unwrap();
        for h in [&same_shard, &other_shard] {
            let k = report_key("2026-11-16", h);
            assert_eq!(
                rt.block_on(s.put_if_absent(&k, b"r".to_vec())).unwrap(),
                PutOutcome::Created
            );
        }
        let mut stack = vec![dir.path().join("reports")];
        let mut seen = 0;
        while let Some(p) = stack.pop() {
            let m = std::fs::metadata(&p).unwrap();
            assert_eq!(m.modified().unwrap(), week, "{}", p.display());
            assert_eq!(m.accessed().unwrap(), week, "{}", p.display());
            seen += 1;
            if m.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
        }
        assert_eq!(seen, 1 + 1 + 2 + 3, "reports/, the week, 2 shards, 3 files");
        // Other objects keep their real times: written after `before` (less
        // a second: file times come from a coarser clock).
        let before = SystemTime::now() - std::time::Duration::from_secs(1);
        rt.block_on(s.put("config/current.toml", b"x".to_vec()))
            .unwrap();
        let m = std::fs::metadata(dir.path().join("config/current.toml")).unwrap();
        assert!(m.modified().unwrap() >= before);
        assert_eq!(report_week_start("archive/2026-11-16.ndjson"), None);
    }

    /// `replace_file` replaces only the version it was told, and a replace
    /// changes the version.
    #[test]
    fn replace_file_is_conditional() {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStore::open(dir.path()).unwrap();
        let rt = runtime();
        let key = "archive/2026-11-16.ndjson";
        let file = |text: &str| {
            let p = s
                .scratch_dir()
                .join(format!("t-{}", TMP_SEQ.fetch_add(1, Ordering::Relaxed)));
            std::fs::write(&p, text).unwrap();
            p
        };
        rt.block_on(async {
            assert_eq!(s.version(key).await.unwrap(), None);
            let a = file("a\n");
            let v0 = Expect::Version("nothing".into());
            assert_eq!(
                s.replace_file(key, &a, v0).await.unwrap(),
                Replaced::Conflict
            );
            assert!(a.exists());
            assert_eq!(
                s.replace_file(key, &a, Expect::Absent).await.unwrap(),
                Replaced::Done
            );
            let v1 = s.version(key).await.unwrap().unwrap();
            let b = file("b\n");
            assert_eq!(
                s.replace_file(key, &b, Expect::Absent).await.unwrap(),
                Replaced::Conflict
            );
            assert_eq!(
                s.replace_file(key, &b, Expect::Version(v1.clone()))
                    .await
                    .unwrap(),
                Replaced::Done
            );
            let v2 = s.version(key).await.unwrap().unwrap();
            assert_ne!(v1, v2);
            // The same size and content again: still a new version.
            let c = file("b\n");
            assert_eq!(
                s.replace_file(key, &c, Expect::Version(v1)).await.unwrap(),
                Replaced::Conflict
            );
            assert_eq!(
                s.replace_file(key, &c, Expect::Version(v2.clone()))
                    .await
                    .unwrap(),
                Replaced::Done
            );
            assert_ne!(s.version(key).await.unwrap().unwrap(), v2);
            assert_eq!(s.get(key).await.unwrap().unwrap(), b"b\n");
        });
    }
}
