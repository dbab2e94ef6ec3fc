//! WebSocket telemetry subscriptions as ThingsBoard serves them: `/api/ws` (first message carries
//! `authCmd`) and the legacy `/api/ws/plugins/telemetry?token=JWT`. One task reads commands and
//! live changes, one writes to the socket; both queues are bounded and a client that falls behind
//! is closed with 1008 and a reason. A connection ends with 1008 "Token has expired" when the
//! token it was opened with expires.

mod cmds;
mod subs;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::sync::{Notify, mpsc, oneshot};

use super::State as AppStateRef;
use super::auth::{AuthUser, TenantUser};
use super::error::ApiError;
use crate::bus::live::Subscriber;
use cmds::Wrapper;
use subs::Conn;

/// How long a closing frame may take to reach a client before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/ws", get(upgrade))
        .route("/api/ws/plugins/telemetry", get(upgrade_legacy))
}

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// `/api/ws`: the token may come in the URL; otherwise the first message's `authCmd` gives it.
async fn upgrade(
    State(state): State<AppStateRef>,
    Query(param): Query<TokenParam>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let user = match param.token.filter(|t| !t.is_empty()) {
        Some(token) => Some(TenantUser::of(AuthUser::from_token(&token, &state).await?)?),
        None => None,
    };
    Ok(accept(state, ws, user))
}

/// `/api/ws/plugins/telemetry?token=JWT`: refused before the upgrade without a valid token.
async fn upgrade_legacy(
    State(state): State<AppStateRef>,
    Query(param): Query<TokenParam>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let token = param
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::auth_failed)?;
    let user = TenantUser::of(AuthUser::from_token(&token, &state).await?)?;
    Ok(accept(state, ws, Some(user)))
}

fn accept(state: AppStateRef, ws: WebSocketUpgrade, user: Option<TenantUser>) -> Response {
    let max = state.config.ws.max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| run(state, socket, user))
}

/// Why the server ends a connection.
struct Closing {
    code: u16,
    reason: String,
}

impl Closing {
    fn policy(reason: impl Into<String>) -> Self {
        Self {
            code: close_code::POLICY,
            reason: reason.into(),
        }
    }
}

/// The socket's writer: sends queued messages until the queue ends or a close is asked for.
async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<String>,
    close: oneshot::Receiver<Closing>,
) {
    let mut close = std::pin::pin!(close);
    loop {
        let text = tokio::select! {
            biased;
            closing = &mut close => return send_close(&mut sink, closing.ok()).await,
            text = queue.recv() => match text {
                Some(text) => text,
                None => return,
            },
        };
        // A client that stopped reading blocks the send: the close still ends the connection.
        tokio::select! {
            closing = &mut close => return send_close(&mut sink, closing.ok()).await,
            sent = sink.send(Message::Text(text.into())) => if sent.is_err() { return },
        }
    }
}

async fn send_close(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    closing: Option<Closing>,
) {
    if let Some(c) = closing {
        let frame = CloseFrame {
            code: c.code,
            reason: Utf8Bytes::from(c.reason),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
}

async fn run(state: AppStateRef, socket: WebSocket, user: Option<TenantUser>) {
    let queue = state.config.ws.queue;
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel::<String>(queue);
    let (close_tx, close_rx) = oneshot::channel();
    let writer = tokio::spawn(write_loop(sink, out_rx, close_rx));
    metrics::gauge!("ferroboard_ws_connections").increment(1.0);
    let closing = serve(&state, &mut stream, out_tx, user).await;
    metrics::gauge!("ferroboard_ws_connections").decrement(1.0);
    if let Some(closing) = closing {
        tracing::debug!(code = closing.code, reason = %closing.reason, "closing WebSocket");
        let _ = close_tx.send(closing);
    } else {
        drop(close_tx);
    }
    let _ = writer.await;
}

/// Authenticates (when the URL did not) and serves commands and live updates until the client
/// leaves (None) or the server closes the connection (Some).
async fn serve(
    state: &AppStateRef,
    stream: &mut futures::stream::SplitStream<WebSocket>,
    out: mpsc::Sender<String>,
    user: Option<TenantUser>,
) -> Option<Closing> {
    let mut first = None;
    let user = match user {
        Some(user) => user,
        None => match first_message_auth(state, stream).await {
            Ok((user, wrapper)) => {
                first = Some(wrapper);
                user
            }
            Err(closing) => return closing,
        },
    };
    let hub = state.services.live.clone();
    let (tx, mut changes) = mpsc::channel(state.config.ws.queue);
    let overflow = Arc::new(Notify::new());
    let sub = Subscriber {
        conn: hub.next_conn_id(),
        tx,
        overflow: overflow.clone(),
    };
    // The token's expiry ends the connection, as it would end the next REST request.
    let left_ms = user
        .user
        .expires_at
        .saturating_mul(1000)
        .saturating_sub(crate::domain::now_ms());
    let expiry = tokio::time::sleep(Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)));
    let mut conn = Conn::new(state.clone(), user, sub, out);
    let result = async {
        tokio::pin!(expiry);
        if let Some(wrapper) = first {
            conn.handle(wrapper).await?;
        }
        loop {
            tokio::select! {
                () = &mut expiry => return Err(Some(Closing::policy(ApiError::TokenExpired.to_string()))),
                _ = overflow.notified() => return Err(Some(slow(state))),
                change = changes.recv() => {
                    let Some(change) = change else { return Ok(()) };
                    conn.push(&change)?;
                }
                msg = stream.next() => match msg {
                    None | Some(Err(_) | Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(Message::Text(text))) => conn.handle_text(text.as_str()).await?,
                    Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                        Ok(text) => conn.handle_text(text).await?,
                        Err(_) => conn.reply_parse_error("binary frame is not UTF-8")?,
                    },
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    .await;
    conn.close();
    result.err().map(|e| e.unwrap_or_else(|| slow(state)))
}

fn slow(state: &AppStateRef) -> Closing {
    metrics::counter!("ferroboard_ws_closed_slow_total").increment(1);
    Closing::policy(format!(
        "client too slow: more than {} updates waiting (ws.queue)",
        state.config.ws.queue
    ))
}

/// `/api/ws` without a token: the first message must carry `authCmd` within `ws.auth_timeout_ms`.
async fn first_message_auth(
    state: &AppStateRef,
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> Result<(TenantUser, Wrapper), Option<Closing>> {
    let limit = Duration::from_millis(state.config.ws.auth_timeout_ms);
    let text = loop {
        match tokio::time::timeout(limit, stream.next()).await {
            Err(_) => {
                return Err(Some(Closing::policy(format!(
                    "Auth command not received within {} ms (ws.auth_timeout_ms)",
                    limit.as_millis()
                ))));
            }
            Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => return Err(None),
            Ok(Some(Ok(Message::Text(text)))) => break text.as_str().to_owned(),
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                break String::from_utf8_lossy(&bytes).into_owned();
            }
            Ok(Some(Ok(_))) => {}
        }
    };
    let mut wrapper: Wrapper = serde_json::from_str(&text)
        .map_err(|_| Some(Closing::policy("Failed to parse the auth command")))?;
    let auth = wrapper.auth_cmd.take().ok_or_else(|| {
        Some(Closing::policy(
            "Auth command is required as the first message",
        ))
    })?;
    let user = AuthUser::from_token(&auth.token, state)
        .await
        .and_then(TenantUser::of)
        .map_err(|e| Some(Closing::policy(format!("Unauthorized: {e}"))))?;
    Ok((user, wrapper))
}
