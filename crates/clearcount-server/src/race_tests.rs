//! Two merges of one week racing while uploads continue, in every order of
//! their steps that the test can force, on the S3 store (moto) and on the
//! directory store.
//!
//! A merge is three steps: read the archive's version, list the reports,
//! commit (see [`crate::merge`]). The test holds each merge before each step
//! of its first attempt (a [`Watch`]) and lets the two go one step at a time
//! in each of the 20 orders of A's three steps and B's three, waiting after
//! every step until the uploader (a client of the real server, sending one
//! report after another) has had two more reports accepted: so every
//! listing sees reports the other did not. A merge whose commit is refused
//! starts over on its own. After both merges of an order:
//!
//! - every line of the archive is a report the uploader sent, once;
//! - every report accepted before either merge began to list is there (no
//!   merge replaced a newer archive: no lost update).
//!
//! The same order with commits that replace whatever is there (the
//! version read just before the commit) loses reports: the check above
//! fails, which shows the test sees a lost update. At the end, uploads
//! stopped, one more merge holds every accepted report exactly once.

use crate::merge::{self, Step, Watch};
use crate::store::{self, Expect, Store};
use crate::{Limits, ServerOptions};
use clearcount_protocol::report::{ProgramReport, Report};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
version = 1
sample_rate = 1.0

[[program]]
name = "tool"
versions = ["1.*"]
os = ["linux"]
arch = ["x86_64"]

[[program.counter]]
name = "tool/command:{build,test,run}"
rate = 1.0
"#;

#[path = "../tests/common/publish.rs"]
mod publish;

const STEPS: [Step; 3] = [Step::Read, Step::List, Step::Commit];

fn week() -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(7))
        .format("%Y-%m-%d")
        .to_string()
}

/// Report `n`, which the config keeps as it is (so the archive holds the
/// bytes sent).
fn report(n: u64) -> Vec<u8> {
    let mut p = ProgramReport::new("tool", "1.2.0", "linux", "x86_64");
    p.counters.insert("tool/command:build".into(), 1 + n % 9);
    Report {
        week: week(),
        x: (n % 1_000_000) as f64 / 1e6,
        config: 1,
        programs: vec![p],
    }
    .to_bytes()
}

/// Reports sent, and those answered 201, in order.
#[derive(Default)]
struct Log {
    sent: Mutex<Vec<Vec<u8>>>,
    accepted: Mutex<Vec<Vec<u8>>>,
}

impl Log {
    fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// Waits until `n` more reports were accepted.
    fn wait_for(&self, n: usize) {
        let want = self.accepted() + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.accepted() < want {
            assert!(Instant::now() < deadline, "uploads stopped");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Holds each step of a merge's first attempt until the test lets it go.
struct Gate {
    events: mpsc::Sender<(Step, bool)>,
    go: Mutex<mpsc::Receiver<()>>,
    log: Arc<Log>,
    /// Reports accepted when the first listing began.
    listed_after: Mutex<Option<usize>>,
    /// Replace whatever is there at commit time (no condition), to show
    /// what that loses.
    blind: Option<(tokio::runtime::Handle, Arc<dyn Store>)>,
    /// With `blind`: the archive right after this merge's first commit.
    after_commit: Mutex<Option<Vec<u8>>>,
}

impl Watch for Gate {
    fn before(&self, _week: &str, attempt: u32, step: Step) {
        if attempt > 0 {
            return;
        }
        if step == Step::List {
            *self.listed_after.lock().unwrap() = Some(self.log.accepted());
        }
        let _ = self.events.send((step, false));
        let _ = self.go.lock().unwrap().recv();
    }

    fn after(&self, _week: &str, attempt: u32, step: Step) {
        if attempt == 0 {
            if let (Step::Commit, Some((rt, s))) = (step, &self.blind) {
                let archive = rt.block_on(s.get(&store::archive_key(&week())));
                *self.after_commit.lock().unwrap() = archive.ok().flatten();
            }
            let _ = self.events.send((step, true));
        }
    }

    fn expect(&self, read: Option<String>) -> Expect {
        match &self.blind {
            None => read.map_or(Expect::Absent, Expect::Version),
            Some((rt, s)) => match rt.block_on(s.version(&store::archive_key(&week()))) {
                Ok(Some(v)) => Expect::Version(v),
                _ => Expect::Absent,
            },
        }
    }
}

/// The archive after one race.
struct Outcome {
    lines: Vec<Vec<u8>>,
    /// Reports accepted when each merge began to list.
    listed_after: [usize; 2],
    retries: u64,
    /// Weeks left for the next merge (a store that ignores conditions).
    unsettled: u64,
    /// The archive right after the last first commit (with `blind`).
    after_last_commit: Vec<Vec<u8>>,
}

/// The lines of an archive.
fn lines_of(archive: &[u8]) -> Vec<Vec<u8>> {
    archive
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Runs merges A (0) and B (1) of the week on `store`, their first
/// attempts' steps in `order`.
fn race(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn Store>,
    log: &Arc<Log>,
    order: &[usize],
    blind: bool,
) -> Outcome {
    let mut events = Vec::new();
    let mut go = Vec::new();
    let mut gates = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (ev_tx, ev_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        let gate = Arc::new(Gate {
            events: ev_tx,
            go: Mutex::new(go_rx),
            log: log.clone(),
            listed_after: Mutex::new(None),
            blind: blind.then(|| (rt.handle().clone(), store.clone())),
            after_commit: Mutex::new(None),
        });
        tasks.push(rt.spawn(merge::merge_week_watched(
            store.clone(),
            week(),
            gate.clone(),
        )));
        events.push(ev_rx);
        go.push(go_tx);
        gates.push(gate);
    }
    let mut next = [0usize; 2];
    for &who in order {
        let timeout = Duration::from_secs(60);
        let step = STEPS[next[who]];
        assert_eq!(events[who].recv_timeout(timeout).unwrap(), (step, false));
        go[who].send(()).unwrap();
        assert_eq!(events[who].recv_timeout(timeout).unwrap(), (step, true));
        next[who] += 1;
        // The second report accepted from now was sent after this step
        // ended: no listing before it has it.
        log.wait_for(2);
    }
    let (mut retries, mut unsettled) = (0, 0);
    for t in tasks {
        let stats = rt.block_on(t).unwrap().unwrap();
        retries += stats.retries;
        unsettled += stats.unsettled;
    }
    let last = *order.last().unwrap();
    let after_last_commit = gates[last]
        .after_commit
        .lock()
        .unwrap()
        .as_deref()
        .map(lines_of)
        .unwrap_or_default();
    let archive = rt
        .block_on(store.get(&store::archive_key(&week())))
        .unwrap()
        .unwrap_or_default();
    let listed = |g: &Gate| g.listed_after.lock().unwrap().unwrap();
    Outcome {
        lines: lines_of(&archive),
        listed_after: [listed(&gates[0]), listed(&gates[1])],
        retries,
        unsettled,
        after_last_commit,
    }
}

/// The reports accepted before either merge listed that the archive lacks.
fn lost(o: &Outcome, log: &Log) -> usize {
    lost_from(&o.lines, o, log)
}

/// The reports accepted before either merge listed that `lines` lack.
fn lost_from(lines: &[Vec<u8>], o: &Outcome, log: &Log) -> usize {
    let have: BTreeSet<&Vec<u8>> = lines.iter().collect();
    let accepted = log.accepted.lock().unwrap();
    let before = o.listed_after[0].max(o.listed_after[1]);
    accepted[..before]
        .iter()
        .filter(|r| !have.contains(r))
        .count()
}

/// Every order of A's three steps and B's three (20).
fn orders() -> Vec<Vec<usize>> {
    (0u32..64)
        .filter(|m| m.count_ones() == 3)
        .map(|m| (0..6).map(|i| ((m >> i) & 1) as usize).collect())
        .collect()
}

/// The whole race test on the stores `open` gives (the server's and the
/// merges', on one place: a fresh one per call, named by the call's
/// number).
fn race_every_order(open: impl Fn(usize) -> (Arc<dyn Store>, Arc<dyn Store>)) {
    race_every_order_on(open, false);
}

/// [`race_every_order`]; with `ignoring`, on a store that ignores
/// conditional writes, every commit made as a blind one (the version there
/// at commit time: what such a store does when another merge writes
/// between the check before the write and the write). Then no merge may
/// leave a lost report unless it says the week is unsettled, and the next
/// merge (the server's, one interval later) brings every report back.
fn race_every_order_on(open: impl Fn(usize) -> (Arc<dyn Store>, Arc<dyn Store>), ignoring: bool) {
    let dir = tempfile::tempdir().unwrap();
    let published = publish::publish(dir.path(), CONFIG);
    let config = published.config.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = |n: usize, order: &[usize], blind: bool| {
        let (server_store, store) = open(n);
        // The real server on loopback, on its own store handle.
        let opts = ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            config: Some(config.clone()),
            public_key: Some(published.public_key.clone()),
            merge_interval: Duration::from_secs(3600),
            limits: Limits {
                uploads_per_minute: 0,
                ..Limits::default()
            },
            ..ServerOptions::default()
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(crate::serve_store(
            opts,
            server_store,
            Some(ready_tx),
            async {
                let _ = stop_rx.await;
            },
        ));
        let addr = rt.block_on(ready_rx).unwrap();
        // The uploader: one report after another until stopped.
        let log = Arc::new(Log::default());
        let stop = Arc::new(AtomicBool::new(false));
        let uploader = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let url = format!("http://{addr}/upload");
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = report(n);
                    log.sent.lock().unwrap().push(body.clone());
                    let r = agent.post(&url).send(&body[..]).unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                    log.accepted.lock().unwrap().push(body);
                    // About 50 reports a second: every step sees new ones,
                    // and a listing stays short.
                    std::thread::sleep(Duration::from_millis(15));
                }
            })
        };
        log.wait_for(3);
        let o = race(&rt, &store, &log, order, blind);
        stop.store(true, Ordering::Relaxed);
        uploader.join().unwrap();
        (o, log, store, stop_tx, server)
    };

    let mut retries = 0;
    let mut clobbered = 0;
    for (n, order) in orders().iter().enumerate() {
        let (o, log, store, stop_tx, server) = run(n, order, ignoring);
        let name: String = order.iter().map(|&w| ["A", "B"][w]).collect();
        let unique: BTreeSet<&Vec<u8>> = o.lines.iter().collect();
        assert_eq!(unique.len(), o.lines.len(), "{name}: a report twice");
        let sent: BTreeSet<Vec<u8>> = log.sent.lock().unwrap().iter().cloned().collect();
        assert!(
            unique.iter().all(|l| sent.contains(*l)),
            "{name}: a line never sent"
        );
        if ignoring {
            // The store let the last first commit replace a newer archive
            // (a lost update, for now)...
            if lost_from(&o.after_last_commit, &o, &log) > 0 {
                clobbered += 1;
            }
            // ...which the merges repaired, or left for the next merge.
            assert!(
                lost(&o, &log) == 0 || o.unsettled > 0,
                "{name}: a lost update nobody will merge again"
            );
            // The next merge (uploads stopped): every accepted report,
            // exactly once.
            rt.block_on(merge::merge_week(store.clone(), week()))
                .unwrap();
            let archive = rt
                .block_on(store.get(&store::archive_key(&week())))
                .unwrap()
                .unwrap();
            let lines = lines_of(&archive);
            let accepted: BTreeSet<Vec<u8>> =
                log.accepted.lock().unwrap().iter().cloned().collect();
            assert_eq!(lines.len(), accepted.len(), "{name}");
            assert_eq!(lines.into_iter().collect::<BTreeSet<_>>(), accepted);
            let _ = stop_tx.send(());
            let _ = rt.block_on(server);
            continue;
        }
        assert_eq!(lost(&o, &log), 0, "{name}: a lost update");
        retries += o.retries;
        if n == 0 {
            // Uploads stopped: one more merge holds every accepted report
            // exactly once.
            rt.block_on(merge::merge_week(store.clone(), week()))
                .unwrap();
            let archive = rt
                .block_on(store.get(&store::archive_key(&week())))
                .unwrap()
                .unwrap();
            let lines: Vec<&[u8]> = archive
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            let accepted = log.accepted.lock().unwrap();
            let want: BTreeSet<&[u8]> = accepted.iter().map(Vec::as_slice).collect();
            assert_eq!(lines.len(), want.len());
            assert_eq!(lines.into_iter().collect::<BTreeSet<_>>(), want);
        }
        let _ = stop_tx.send(());
        let _ = rt.block_on(server);
    }
    if ignoring {
        assert!(
            clobbered >= 1,
            "no order lost an update at its commit: the store honours the conditions, or the test cannot see it"
        );
        eprintln!(
            "20 orders on a store that ignores conditional writes: {clobbered} lost an update at a commit, every one repaired"
        );
        return;
    }
    // Orders where B commits between A's read and A's commit make A start
    // over: there were conflicts.
    assert!(retries >= 5, "only {retries} merges started over");

    // The lost update, with commits that replace whatever is there: A
    // lists, B lists later and commits, A commits its older listing.
    let (o, log, _, stop_tx, server) = run(orders().len(), &[0, 0, 1, 1, 1, 0], true);
    let lost = lost(&o, &log);
    assert!(
        lost >= 1,
        "unconditional commits lost nothing: the test cannot see a lost update"
    );
    eprintln!(
        "20 orders: no lost update, {retries} merges started over; unconditional commits lost {lost} reports"
    );
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
}

#[test]
fn racing_merges_lose_no_report_on_the_directory_store() {
    let root = tempfile::tempdir().unwrap();
    race_every_order(|n| {
        let dir = root.path().join(format!("race-{n}"));
        let a: Arc<dyn Store> = Arc::new(store::DirStore::open(&dir).unwrap());
        let b: Arc<dyn Store> = Arc::new(store::DirStore::open(&dir).unwrap());
        (a, b)
    });
}

#[cfg(feature = "s3")]
#[test]
fn racing_merges_lose_no_report_on_s3() {
    use crate::s3::S3Store;
    let moto = crate::s3::moto::Moto::start();
    race_every_order(|n| {
        // A bucket per run: moto lists by scanning the whole bucket.
        let bucket = format!("race-{n}");
        moto.bucket(&bucket);
        let url = format!("s3://{bucket}/p");
        let a: Arc<dyn Store> = Arc::new(S3Store::from_url_with(&url, moto.env()).unwrap());
        let b: Arc<dyn Store> = Arc::new(S3Store::from_url_with(&url, moto.env()).unwrap());
        (a, b)
    });
}

/// A store that ignores conditional writes, as some S3 stores do (Garage
/// 2.5 answers 200 to both): a directory store whose conditional writes
/// replace whatever is there, and which says it ignores them (as the probe
/// of such a store finds).
struct IgnoresConditions(store::DirStore);

impl Store for IgnoresConditions {
    fn put_if_absent<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
    ) -> store::BoxFuture<'a, store::PutOutcome> {
        Box::pin(async move {
            self.0.put(key, bytes).await?;
            Ok(store::PutOutcome::Created)
        })
    }
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> store::BoxFuture<'a, ()> {
        self.0.put(key, bytes)
    }
    fn replace_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a std::path::Path,
        _expect: Expect,
    ) -> store::BoxFuture<'a, store::Replaced> {
        Box::pin(async move {
            loop {
                let now = match self.0.version(key).await? {
                    Some(v) => Expect::Version(v),
                    None => Expect::Absent,
                };
                if self.0.replace_file(key, path, now).await? == store::Replaced::Done {
                    return Ok(store::Replaced::Done);
                }
            }
        })
    }
    fn version<'a>(&'a self, key: &'a str) -> store::BoxFuture<'a, Option<String>> {
        self.0.version(key)
    }
    fn get<'a>(&'a self, key: &'a str) -> store::BoxFuture<'a, Option<Vec<u8>>> {
        self.0.get(key)
    }
    fn open<'a>(&'a self, key: &'a str) -> store::BoxFuture<'a, Option<store::ObjectReader>> {
        self.0.open(key)
    }
    fn open_async<'a>(
        &'a self,
        key: &'a str,
    ) -> store::BoxFuture<'a, Option<store::AsyncObjectReader>> {
        self.0.open_async(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> store::BoxFuture<'a, store::Listing> {
        self.0.list(prefix)
    }
    fn delete<'a>(&'a self, key: &'a str) -> store::BoxFuture<'a, ()> {
        self.0.delete(key)
    }
    fn scratch_dir(&self) -> std::path::PathBuf {
        self.0.scratch_dir()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn conditional_writes(&self) -> store::ConditionalWrites {
        store::ConditionalWrites {
            if_none_match: false,
            if_match: false,
        }
    }
}

/// The races of every order on a store whose conditional writes replace
/// whatever is there: every commit may replace a newer archive. No report
/// is lost for longer than one merge: the merge that replaced a newer
/// archive sees, listing again after its write, that reports are missing,
/// and merges again or leaves the week to the next merge.
#[test]
fn racing_merges_lose_no_report_on_a_store_that_ignores_conditional_writes() {
    let root = tempfile::tempdir().unwrap();
    race_every_order_on(
        |n| {
            let dir = root.path().join(format!("ignoring-{n}"));
            let open = || -> Arc<dyn Store> {
                Arc::new(IgnoresConditions(store::DirStore::open(&dir).unwrap()))
            };
            (open(), open())
        },
        true,
    );
}
