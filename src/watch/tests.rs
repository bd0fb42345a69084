//! The loop with a paused clock, a source of prepared commits and fake
//! servers: interval, commits, rejections, backoff, windows, shutdown.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::definitions::DefinitionFiles;
use crate::transport::Output;
use crate::transport::fake::{FakeConnector, FakeTransport};

fn ok(stdout: Vec<u8>) -> Output {
    Output {
        status: Some(0),
        stdout,
        stderr: Vec::new(),
    }
}

/// A server that answers every gather and every apply.
fn server(name: &str) -> FakeTransport {
    FakeTransport::new(name)
        .on_every("'gather_main'", ok(crate::facts::bare_server()))
        .on_every(
            "'apply_main'",
            ok(crate::remote::protocol::encode_text("done", &["-", ""])),
        )
}

fn cluster(windows: &str) -> String {
    format!(
        "name: c\nphp: [\"8.2\"]\n{windows}servers:\n  - {{ name: web-1, address: 192.0.2.1, web_server: true }}\n  - {{ name: web-2, address: 192.0.2.2, web_server: true }}\n"
    )
}

const APP: &str = "name: shop\ncluster: c\nrepo: /srv/shop.git\nphp: \"8.2\"\ndomains: [shop.test]\nservers: [{ name: web-1, web: {} }, { name: web-2, web: {} }]\n";

fn files(cluster: &str, app: &str) -> DefinitionFiles {
    let mut files = DefinitionFiles::new("repo");
    files.insert("clusters/c.yaml", cluster.as_bytes().to_vec());
    files.insert("apps/shop.yaml", app.as_bytes().to_vec());
    files
}

/// Hands out a prepared head on each poll; `None` repeats the last.
#[derive(Clone, Default)]
struct Commits {
    heads: Arc<Mutex<VecDeque<(String, DefinitionFiles)>>>,
    polls: Arc<Mutex<usize>>,
}

impl Commits {
    fn push(&self, commit: &str, files: DefinitionFiles) {
        let mut heads = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        heads.push_back((commit.to_owned(), files));
    }

    fn polls(&self) -> usize {
        *self
            .polls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Source for Commits {
    async fn poll(&mut self, known: Option<&str>) -> Result<Option<Head>, PollError> {
        *self
            .polls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        let mut heads = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match heads.pop_front() {
            Some((commit, files)) if Some(commit.as_str()) != known => {
                Ok(Some(Head { commit, files }))
            }
            _ => Ok(None),
        }
    }

    async fn files_of(&mut self, commit: &str) -> Result<DefinitionFiles, String> {
        Err(format!("no {commit}"))
    }
}

struct Running {
    board: Arc<Board>,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

/// Starts the loop with a clock at 2026-11-22 00:00 UTC that moves with
/// tokio's (paused) time.
fn start(
    commits: &Commits,
    connector: FakeConnector,
    options: WatchOptions,
) -> (Running, Arc<FakeConnector>) {
    let board = Arc::new(Board::new("repo", "main", None));
    let connector = Arc::new(connector);
    let base: DateTime<Utc> = "2026-11-22T00:00:00Z".parse().expect("time");
    let origin = Instant::now();
    let watch = Watch {
        notifier: None,
        source: Box::new(commits.clone()),
        connector: Arc::clone(&connector) as Arc<dyn Connector>,
        options,
        board: Arc::clone(&board),
        clock: Arc::new(move || {
            base + chrono::Duration::from_std(origin.elapsed()).unwrap_or_default()
        }),
        fetch_now: Arc::new(Notify::new()),
        stop: release::Stop::new(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(watch.run(async move {
        let _ = stopped.await;
    }));
    (Running { board, stop, done }, connector)
}

fn options() -> WatchOptions {
    WatchOptions {
        interval: Duration::from_secs(30),
        drift_interval: Duration::from_secs(600),
        traffic_interval: None,
        drift: Drift::Correct,
        parallel: 4,
        holder: "test".into(),
        backoff: Backoff::default(),
        resume: None,
        apps_cache: None,
        members: None,
    }
}

fn applies(connector: &FakeConnector, server: &str) -> usize {
    connector.transport(server).map_or(0, |t| {
        t.sent().iter().filter(|s| s.contains("apply_main")).count()
    })
}

fn gathers(connector: &FakeConnector, server: &str) -> usize {
    connector.transport(server).map_or(0, |t| {
        t.sent()
            .iter()
            .filter(|s| s.contains("'gather_main'"))
            .count()
    })
}

/// Lets the loop run for `seconds` of paused time.
async fn pass(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn the_branch_is_fetched_every_interval() {
    let commits = Commits::default();
    let (running, _) = start(&commits, FakeConnector::default(), options());
    pass(95).await;
    assert_eq!(commits.polls(), 4, "at 0, 30, 60 and 90 s");
    let _ = running.stop.send(());
    running.done.await.expect("stops");
}

#[tokio::test(start_paused = true)]
async fn an_invalid_commit_is_rejected_whole_and_a_fix_applies() {
    let commits = Commits::default();
    commits.push("aaaa", files(&cluster(""), APP));
    let connector = FakeConnector::default()
        .with(server("web-1"))
        .with(server("web-2"));
    let (running, connector) = start(&commits, connector, options());
    pass(5).await;
    assert_eq!(
        (applies(&connector, "web-1"), applies(&connector, "web-2")),
        (1, 1)
    );
    let status = running.board.snapshot();
    assert_eq!(status.last_good.map(|g| g.commit).as_deref(), Some("aaaa"));
    assert_eq!(
        status.hosts["web-1"].last_applied_commit.as_deref(),
        Some("aaaa")
    );

    commits.push("bbbb", files(&cluster(""), "name: shop\ncluster: [\n"));
    pass(30).await;
    let status = running.board.snapshot();
    let rejected = status.last_rejected.expect("rejected");
    assert_eq!(rejected.commit, "bbbb");
    assert!(
        rejected.errors[0].starts_with("repo/apps/shop.yaml:"),
        "{:?}",
        rejected.errors
    );
    assert_eq!(status.last_good.map(|g| g.commit).as_deref(), Some("aaaa"));
    assert_eq!(applies(&connector, "web-1"), 1, "nothing of it is applied");

    commits.push(
        "cccc",
        files(
            &cluster(""),
            APP.replace("web: {}", "web: { max_workers: 9 }").as_str(),
        ),
    );
    pass(30).await;
    let status = running.board.snapshot();
    assert_eq!(status.last_good.map(|g| g.commit).as_deref(), Some("cccc"));
    assert_eq!(
        status.hosts["web-2"].last_applied_commit.as_deref(),
        Some("cccc")
    );
    assert_eq!(applies(&connector, "web-2"), 2);
    let _ = running.stop.send(());
    running.done.await.expect("stops");
}

#[tokio::test(start_paused = true)]
async fn a_failing_host_backs_off_and_does_not_hold_back_the_others() {
    let commits = Commits::default();
    commits.push("aaaa", files(&cluster(""), APP));
    // web-2 has no fake: it is refused like a stopped server.
    let connector = FakeConnector::default().with(server("web-1"));
    let mut options = options();
    options.drift_interval = Duration::from_secs(100_000);
    let (running, connector) = start(&commits, connector, options);
    // The first retry comes 2.5 to 5 s after the first failure.
    pass(1).await;
    assert_eq!(applies(&connector, "web-1"), 1);
    let status = running.board.snapshot();
    assert_eq!(status.hosts["web-2"].failures, 1);
    assert!(status.hosts["web-2"].retry_at.is_some());
    // Backoff: each delay within the upper half of 5 s doubling to 300 s.
    // In 20 minutes that is 9 tries (all delays longest) to 13 (all
    // shortest), not one per poll (40).
    pass(1200).await;
    let failures = running.board.snapshot().hosts["web-2"].failures;
    assert!((9..=13).contains(&failures), "{failures} tries");
    assert_eq!(
        applies(&connector, "web-1"),
        1,
        "web-1 was not held back nor redone"
    );
    let _ = running.stop.send(());
    running.done.await.expect("stops");
}

#[tokio::test(start_paused = true)]
async fn a_window_opening_wakes_its_hosts() {
    let commits = Commits::default();
    // 01:00 UTC for an hour; the clock starts at 00:00.
    let windows = "reload_windows: [{ schedule: \"0 0 1 * * *\", duration: 1h }]\n";
    commits.push("aaaa", files(&cluster(windows), APP));
    let connector = FakeConnector::default()
        .with(server("web-1"))
        .with(server("web-2"));
    let mut options = options();
    options.drift_interval = Duration::from_secs(100_000);
    let (running, connector) = start(&commits, connector, options);
    pass(5).await;
    assert_eq!(gathers(&connector, "web-1"), 1);
    pass(3500).await;
    assert_eq!(gathers(&connector, "web-1"), 1, "nothing before the window");
    pass(200).await;
    assert_eq!(
        gathers(&connector, "web-1"),
        2,
        "woken when the window opened"
    );
    assert_eq!(gathers(&connector, "web-2"), 2);
    let _ = running.stop.send(());
    running.done.await.expect("stops");
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_the_hosts_in_flight_finish() {
    let commits = Commits::default();
    commits.push("aaaa", files(&cluster(""), APP));
    let slow = |name: &str| server(name).with_delay(Duration::from_secs(20));
    let connector = FakeConnector::default()
        .with(slow("web-1"))
        .with(slow("web-2"));
    let (running, connector) = start(&commits, connector, options());
    pass(25).await; // gathered (20 s); the applies are under way
    assert_eq!(applies(&connector, "web-1"), 1);
    let _ = running.stop.send(());
    running.done.await.expect("stops");
    let status = running.board.snapshot();
    assert_eq!(
        status.hosts["web-1"].last_result.as_deref(),
        Some("applied")
    );
    assert_eq!(
        status.hosts["web-2"].last_result.as_deref(),
        Some("applied")
    );
}

#[tokio::test(start_paused = true)]
async fn a_commit_that_comes_while_a_host_is_busy_is_applied_after() {
    let commits = Commits::default();
    commits.push("aaaa", files(&cluster(""), APP));
    let slow = |name: &str| server(name).with_delay(Duration::from_secs(20));
    let connector = FakeConnector::default()
        .with(slow("web-1"))
        .with(slow("web-2"));
    let mut options = options();
    options.interval = Duration::from_secs(5);
    let (running, connector) = start(&commits, connector, options);
    pass(1).await;
    let changed = APP.replace("web: {}", "web: { max_workers: 9 }");
    commits.push("bbbb", files(&cluster(""), &changed));
    // aaaa: gathered at 20 s, applied by 40 s on web-1 and by 60 s on
    // web-2 (its new pool reloads after web-1's: one host at a time);
    // bbbb is due at once after each and takes 40 s more.
    pass(104).await;
    let status = running.board.snapshot();
    assert_eq!(status.last_good.map(|g| g.commit).as_deref(), Some("bbbb"));
    for server in ["web-1", "web-2"] {
        assert_eq!(applies(&connector, server), 2, "{server}");
        assert_eq!(
            status.hosts[server].last_applied_commit.as_deref(),
            Some("bbbb"),
            "{server}"
        );
    }
    let _ = running.stop.send(());
    running.done.await.expect("stops");
}
