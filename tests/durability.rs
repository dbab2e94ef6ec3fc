//! Acknowledged means committed: devices publish QoS 1 telemetry while the node is killed with
//! SIGKILL (both backends) or while its PostgreSQL server crashes and comes back; afterwards every
//! PUBACKed value is in the database. During the database outage health says DOWN, and the node
//! serves again within 5 s of the database's return.

mod common;
#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/private_pg.rs"]
mod private_pg;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Backend;
use harness::{Cluster, Device, Rest, WAIT, health};
use private_pg::PrivatePostgres;
use serde_json::json;
use tokio::sync::Mutex;

const DEVICES: usize = 12;
/// The first value's timestamp; value `n` is stored at `T0 + n`, so every value has its own row.
const T0: i64 = 1_700_000_000_000;

/// Devices publishing `{"seq": n}` at QoS 1, one message in flight each, recording what was
/// acknowledged. A device whose connection fails reconnects (to the node's current port) until
/// the load is stopped.
struct Load {
    acked: Vec<Arc<Mutex<BTreeSet<i64>>>>,
    total: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(tokens: &[String], port: Arc<AtomicUsize>) -> Self {
        let total = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut acked = Vec::new();
        let mut tasks = Vec::new();
        for token in tokens {
            let mine = Arc::new(Mutex::new(BTreeSet::new()));
            acked.push(mine.clone());
            let (token, port, total, stop) =
                (token.clone(), port.clone(), total.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut seq = 0i64;
                while !stop.load(Ordering::SeqCst) {
                    let mqtt_port = port.load(Ordering::SeqCst) as u16;
                    let Ok(mut device) = Device::try_connect(mqtt_port, &token).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    while !stop.load(Ordering::SeqCst) {
                        let payload = json!({"ts": T0 + seq, "values": {"seq": seq}});
                        let sent = seq;
                        seq += 1;
                        if device.try_telemetry(payload).await.is_err() {
                            break;
                        }
                        mine.lock().await.insert(sent);
                        total.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        Self {
            acked,
            total,
            stop,
            tasks,
        }
    }

    async fn wait_for_more(&self, more: usize, what: &str) {
        let target = self.total.load(Ordering::SeqCst) + more;
        let total = self.total.clone();
        common::eventually(what, Duration::from_secs(60), || {
            let total = total.clone();
            async move { (total.load(Ordering::SeqCst) >= target).then_some(()) }
        })
        .await;
    }

    async fn finish(self) -> Vec<BTreeSet<i64>> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let mut acked = Vec::new();
        for set in self.acked {
            acked.push(set.lock().await.clone());
        }
        acked
    }
}

async fn devices(rest: &Rest) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..DEVICES {
        let (id, token) = rest.device().await;
        ids.push(id);
        tokens.push(token);
    }
    (ids, tokens)
}

/// Every acknowledged value of every device is stored.
async fn assert_all_stored(rest: &Rest, ids: &[String], acked: &[BTreeSet<i64>]) {
    let mut checked = 0;
    for (id, acked) in ids.iter().zip(acked) {
        let Some(last) = acked.last() else { continue };
        let path = format!(
            "/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=seq&startTs={T0}&endTs={}&limit={}",
            T0 + last + 1,
            last + 1
        );
        let (status, body) = rest.get(&path).await;
        assert_eq!(status, 200, "history of {id}: {body}");
        let stored: BTreeSet<i64> = body["seq"]
            .as_array()
            .map(|points| {
                points
                    .iter()
                    .filter_map(|p| {
                        let value = &p["value"];
                        value
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .or(value.as_i64())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let missing: Vec<_> = acked.difference(&stored).collect();
        assert!(
            missing.is_empty(),
            "device {id}: {} acknowledged values missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        checked += acked.len();
    }
    assert!(checked > 0, "no message was acknowledged at all");
    eprintln!("{checked} acknowledged values checked, all stored");
}

async fn killed_node_loses_no_acknowledged_message(backend: Backend) {
    let mut cluster = Cluster::single(backend, None).await;
    let rest = Rest::login(cluster.a()).await;
    let (ids, tokens) = devices(&rest).await;
    let port = Arc::new(AtomicUsize::new(cluster.a().mqtt_port as usize));
    let load = Load::start(&tokens, port.clone());
    load.wait_for_more(300, "300 messages acknowledged before the kill")
        .await;
    cluster.kill(0);
    cluster.restart(0).await;
    port.store(cluster.a().mqtt_port as usize, Ordering::SeqCst);
    load.wait_for_more(100, "100 more messages acknowledged after the restart")
        .await;
    let acked = load.finish().await;
    let rest = Rest::login(cluster.a()).await;
    assert_all_stored(&rest, &ids, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_loses_no_acknowledged_message_sqlite() {
    killed_node_loses_no_acknowledged_message(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_loses_no_acknowledged_message_postgres() {
    killed_node_loses_no_acknowledged_message(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_under_load_loses_no_acknowledged_message() {
    let pg = PrivatePostgres::start().await;
    let cluster = Cluster::single(Backend::Postgres, Some(pg.url())).await;
    let rest = Rest::login(cluster.a()).await;
    let (ids, tokens) = devices(&rest).await;
    let port = Arc::new(AtomicUsize::new(cluster.a().mqtt_port as usize));
    let load = Load::start(&tokens, port);
    load.wait_for_more(300, "300 messages acknowledged before the crash")
        .await;

    pg.stop_server();
    let base = cluster.a().http.clone();
    common::eventually("health DOWN while the database is gone", WAIT, || {
        let base = base.clone();
        async move {
            let (code, body) = health(&base).await?;
            (code == 503 && body["status"] == "DOWN" && body["components"]["database"] == "DOWN")
                .then_some(())
        }
    })
    .await;

    pg.start_server().await;
    let back = Instant::now();
    let base = cluster.a().http.clone();
    common::eventually(
        "health UP within 5 s of the database's return",
        Duration::from_secs(5),
        || {
            let base = base.clone();
            async move {
                let (code, body) = health(&base).await?;
                (code == 200 && body["status"] == "UP").then_some(())
            }
        },
    )
    .await;
    load.wait_for_more(
        100,
        "100 more messages acknowledged after the database is back",
    )
    .await;
    eprintln!(
        "serving again {:?} after the database came back",
        back.elapsed()
    );
    let acked = load.finish().await;
    assert_all_stored(&rest, &ids, &acked).await;
}
