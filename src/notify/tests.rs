//! Notifications against a local receiver on 127.0.0.1.

use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::*;

/// What the receiver got, and how many tries it fails first.
#[derive(Default)]
struct Received {
    bodies: Mutex<Vec<serde_json::Value>>,
    fail_first: Mutex<u32>,
}

/// A receiver on 127.0.0.1: its address.
async fn receiver(received: Arc<Received>) -> std::net::SocketAddr {
    async fn take(
        State(received): State<Arc<Received>>,
        Json(body): Json<serde_json::Value>,
    ) -> StatusCode {
        let mut fail = received.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        received.bodies.lock().unwrap().push(body);
        StatusCode::NO_CONTENT
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(take))
        .with_state(received);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn target(to: &str, format: NotifyFormat, events: Vec<NotifyEvent>) -> NotifyTarget {
    NotifyTarget {
        to: to.into(),
        format,
        events,
    }
}

#[test]
fn the_urls_file_is_name_and_url_a_line_and_keeps_the_urls_out_of_debug() {
    let urls =
        Urls::parse("# ops\n\nops https://hooks.example/T1/secret\nci http://127.0.0.1:9/x\n")
            .expect("urls");
    assert_eq!(format!("{urls:?}"), r#"["ci", "ops"]"#);
    assert_eq!(
        Urls::parse("ops\n").err(),
        Some((1, "not `NAME URL`".into()))
    );
    assert!(Urls::parse("ops ftp://x\n").is_err());
}

#[tokio::test]
async fn a_notice_is_retried_until_delivered_and_one_given_up_is_counted() {
    let received = Arc::new(Received::default());
    *received.fail_first.lock().unwrap() = 2;
    let addr = receiver(Arc::clone(&received)).await;
    // A port nothing listens on: every try fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let urls = Urls::parse(&format!(
        "ops http://{addr}/hook\nchat http://{addr}/hook\ngone http://{closed}/hook\n"
    ))
    .expect("urls");
    let failures = NotifyFailureCounter::default();
    let tasks = tokio_util::task::TaskTracker::new();
    let notifier = Notifier::new(urls, failures.clone(), tasks.clone())
        .retrying(vec![Duration::from_millis(10); 3]);
    let mut notice = Notice::new(NotifyEvent::RolledBack, "shop 1a2b3c4d5e6f was rolled back");
    notice.app = Some("shop".into());
    notice.details = vec!["5xx 14.4% over 180 requests <!channel>".into()];
    let targets = [
        target("ops", NotifyFormat::Json, vec![]),
        target("chat", NotifyFormat::Slack, vec![NotifyEvent::RolledBack]),
        // Wants other events only: not sent.
        target("chat", NotifyFormat::Slack, vec![NotifyEvent::DriftFound]),
        target("gone", NotifyFormat::Json, vec![]),
        target("unknown", NotifyFormat::Json, vec![]),
    ];
    notifier.send(&targets, NotifyEvent::RolledBack, &notice);
    tasks.close();
    tokio::time::timeout(Duration::from_secs(20), tasks.wait())
        .await
        .expect("delivered or given up");

    let mut bodies = received.bodies.lock().unwrap().clone();
    bodies.sort_by_key(|b| b.get("text").is_some());
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0]["event"], "rolled-back");
    assert_eq!(bodies[0]["app"], "shop");
    assert_eq!(
        bodies[0]["details"][0],
        "5xx 14.4% over 180 requests <!channel>"
    );
    // What a server wrote cannot mention a channel in Slack.
    assert_eq!(
        bodies[1]["text"],
        "reconciler: shop 1a2b3c4d5e6f was rolled back\n• 5xx 14.4% over 180 requests &lt;!channel&gt;"
    );
    assert_eq!(*received.fail_first.lock().unwrap(), 0, "two 500s retried");
    assert_eq!(failures.get("gone"), 1);
    assert_eq!(failures.get("unknown"), 1);
    assert_eq!(failures.get("ops"), 0);
}
