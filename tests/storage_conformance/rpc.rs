//! Persistent RPC cases: create and read (tenant-scoped), conditional transitions, paging by device
//! and status, pending lists (QUEUED, SENT, TIMEOUT) oldest first, expiry, and removal with the device.

use ferroboard::domain::TenantId;
use ferroboard::storage::{Device, Rpc, RpcStatus, RpcTransition, SortOrder, Store};
use serde_json::json;
use uuid::Uuid;

use crate::fixtures::{default_profile, new_device, page, tenant};

fn rpc(device: &Device, created: i64, expires: i64, oneway: bool) -> Rpc {
    Rpc {
        id: Uuid::new_v4(),
        tenant_id: device.tenant_id,
        device_id: device.id,
        created_time: created,
        expiration_time: expires,
        request: json!({"method": "setGpio", "params": "{\"pin\":7}", "oneway": oneway, "retries": null}),
        response: None,
        status: RpcStatus::Queued,
        retries: 0,
        additional_info: Some(json!({"source": "ui"})),
    }
}

async fn setup(store: &dyn Store) -> (TenantId, Device) {
    let t = tenant(store).await;
    let p = default_profile(store, t).await;
    let d = new_device(store, t, &p, "rpc-dev", 10).await;
    (t, d)
}

pub async fn rpc_create_get_and_transitions(store: &dyn Store) {
    let (t, d) = setup(store).await;
    let r = rpc(&d, 100, i64::MAX, false);
    store.create_rpc(&r).await.expect("create");
    assert_eq!(store.get_rpc(Some(t), r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(store.get_rpc(None, r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(
        store.get_rpc(Some(TenantId::new()), r.id).await.unwrap(),
        None
    );

    let step = |from, to, response, retries| RpcTransition {
        from,
        to,
        response,
        retries,
    };
    let open = [RpcStatus::Queued, RpcStatus::Sent];
    let moved = step(&open, RpcStatus::Queued, None, Some(2));
    assert!(store.transition_rpc(r.id, &moved).await.unwrap());
    let delivered = step(&open, RpcStatus::Delivered, None, None);
    assert!(store.transition_rpc(r.id, &delivered).await.unwrap());
    assert!(
        !store.transition_rpc(r.id, &delivered).await.unwrap(),
        "not from DELIVERED"
    );
    let answer = json!({"ok": true, "n": 1.5});
    let done = step(
        &[RpcStatus::Delivered],
        RpcStatus::Successful,
        Some(&answer),
        None,
    );
    assert!(store.transition_rpc(r.id, &done).await.unwrap());
    let got = store.get_rpc(Some(t), r.id).await.unwrap().expect("stored");
    assert_eq!(got.status, RpcStatus::Successful);
    assert_eq!(got.response.as_ref(), Some(&answer));
    assert_eq!(got.retries, 2);
    assert!(
        !store
            .transition_rpc(Uuid::new_v4(), &delivered)
            .await
            .unwrap()
    );

    assert!(!store.delete_rpc(TenantId::new(), r.id).await.unwrap());
    assert!(store.delete_rpc(t, r.id).await.unwrap());
    assert_eq!(store.get_rpc(None, r.id).await.unwrap(), None);
}

pub async fn rpc_paging_pending_and_expiry(store: &dyn Store) {
    let (t, d) = setup(store).await;
    let late = rpc(&d, 300, i64::MAX, false);
    let early = rpc(&d, 100, 1_000, false);
    let oneway_done = rpc(&d, 200, 1_000, true);
    let twoway_delivered = rpc(&d, 250, 1_000, false);
    for r in [&late, &early, &oneway_done, &twoway_delivered] {
        store.create_rpc(r).await.expect("create");
    }
    let to = |status| RpcTransition {
        from: &[RpcStatus::Queued],
        to: status,
        response: None,
        retries: None,
    };
    store
        .transition_rpc(oneway_done.id, &to(RpcStatus::Delivered))
        .await
        .unwrap();
    store
        .transition_rpc(twoway_delivered.id, &to(RpcStatus::Delivered))
        .await
        .unwrap();

    let pending: Vec<Uuid> = store
        .pending_rpcs(d.id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        pending,
        vec![early.id, late.id],
        "QUEUED ones, oldest first"
    );

    let all = store
        .page_rpcs(t, d.id, None, &page(3, 0, None, None, SortOrder::Desc))
        .await
        .unwrap();
    assert_eq!(all.total_elements, 4);
    let ids: Vec<Uuid> = all.data.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![late.id, twoway_delivered.id, oneway_done.id]);
    let delivered = store
        .page_rpcs(
            t,
            d.id,
            Some(RpcStatus::Delivered),
            &page(10, 0, None, Some("expirationTime"), SortOrder::Asc),
        )
        .await
        .unwrap();
    assert_eq!(delivered.total_elements, 2);
    let other = store
        .page_rpcs(
            TenantId::new(),
            d.id,
            None,
            &page(10, 0, None, None, SortOrder::Asc),
        )
        .await
        .unwrap();
    assert_eq!(other.total_elements, 0);

    // Expired: the QUEUED one and the delivered two-way one; a delivered one-way RPC is finished.
    assert_eq!(store.expire_rpcs(1_000).await.unwrap(), 2);
    let status = |id| async move { store.get_rpc(None, id).await.unwrap().map(|r| r.status) };
    assert_eq!(status(early.id).await, Some(RpcStatus::Expired));
    assert_eq!(status(twoway_delivered.id).await, Some(RpcStatus::Expired));
    assert_eq!(status(oneway_done.id).await, Some(RpcStatus::Delivered));
    assert_eq!(status(late.id).await, Some(RpcStatus::Queued));
    assert_eq!(store.expire_rpcs(1_000).await.unwrap(), 0);

    assert!(store.delete_device(t, d.id).await.unwrap());
    assert_eq!(
        store.get_rpc(None, late.id).await.unwrap(),
        None,
        "gone with the device"
    );
}

/// SENT (waiting for PUBACK) and TIMEOUT (retry pending) are open like QUEUED: listed as pending
/// and swept by expiry; FAILED and SUCCESSFUL are finished.
pub async fn rpc_sent_and_timeout_are_open(store: &dyn Store) {
    let (_, d) = setup(store).await;
    let sent = rpc(&d, 100, 1_000, true);
    let timed_out = rpc(&d, 200, 1_000, false);
    let failed = rpc(&d, 300, 1_000, false);
    let answered = rpc(&d, 400, 1_000, false);
    let queued = rpc(&d, 500, i64::MAX, false);
    for r in [&sent, &timed_out, &failed, &answered, &queued] {
        store.create_rpc(r).await.expect("create");
    }
    let move_to = |from: &'static [RpcStatus], to, retries| RpcTransition {
        from,
        to,
        response: None,
        retries,
    };
    let queued_only: &'static [RpcStatus] = &[RpcStatus::Queued];
    let steps = [
        (sent.id, move_to(queued_only, RpcStatus::Sent, None)),
        (timed_out.id, move_to(queued_only, RpcStatus::Sent, None)),
        (
            timed_out.id,
            move_to(&[RpcStatus::Sent], RpcStatus::Timeout, Some(1)),
        ),
        (failed.id, move_to(queued_only, RpcStatus::Failed, None)),
        (
            answered.id,
            move_to(queued_only, RpcStatus::Delivered, None),
        ),
        (
            answered.id,
            move_to(&[RpcStatus::Delivered], RpcStatus::Successful, None),
        ),
    ];
    for (id, step) in &steps {
        assert!(store.transition_rpc(*id, step).await.unwrap(), "{step:?}");
    }
    // A late SENT cannot undo a later state.
    let late_sent = move_to(
        &[RpcStatus::Queued, RpcStatus::Timeout],
        RpcStatus::Sent,
        None,
    );
    assert!(!store.transition_rpc(answered.id, &late_sent).await.unwrap());
    assert!(!store.transition_rpc(failed.id, &late_sent).await.unwrap());

    let pending: Vec<(Uuid, RpcStatus, i32)> = store
        .pending_rpcs(d.id)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.id, r.status, r.retries))
        .collect();
    assert_eq!(
        pending,
        vec![
            (sent.id, RpcStatus::Sent, 0),
            (timed_out.id, RpcStatus::Timeout, 1),
            (queued.id, RpcStatus::Queued, 0),
        ],
        "QUEUED, SENT and TIMEOUT ones, oldest first"
    );

    assert_eq!(store.expire_rpcs(1_000).await.unwrap(), 2);
    let status = |id| async move { store.get_rpc(None, id).await.unwrap().map(|r| r.status) };
    assert_eq!(status(sent.id).await, Some(RpcStatus::Expired));
    assert_eq!(status(timed_out.id).await, Some(RpcStatus::Expired));
    assert_eq!(status(failed.id).await, Some(RpcStatus::Failed));
    assert_eq!(status(answered.id).await, Some(RpcStatus::Successful));
    assert_eq!(status(queued.id).await, Some(RpcStatus::Queued));
    let retried = store.get_rpc(None, timed_out.id).await.unwrap().unwrap();
    assert_eq!(retried.retries, 1, "expiry keeps the retry count");
}
