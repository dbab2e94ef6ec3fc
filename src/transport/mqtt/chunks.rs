//! Firmware and software chunk requests of a session (`v2/fw/request/{id}/chunk/{n}`): the
//! chunk sizes remembered per request id, and the answers of requests sent back to back
//! (pipelined) of one request id published in the order of their chunk indices, at most
//! `MAX_CHUNKS_IN_FLIGHT` of them unanswered at once.
//!
//! The MQTT dispatcher may start the handlers of pipelined PUBLISHes out of order, so the order
//! is that of the indices: an answer waits while a request of the same id for a smaller index is
//! unanswered. A request whose handler starts only after a later one's answer went out is not
//! waited for: the order is a best effort, and devices match answers by the index in the topic.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use ntex_bytes::Bytes;
use tokio::sync::Notify;

use super::session::DeviceSession;
use super::uplink::Outcome;
use crate::domain::ota::OtaPackageType;
use crate::transport::ota::ChunkRequest;

/// Request ids whose chunk size a session remembers, at most.
const MAX_CHUNK_REQUESTS: usize = 16;
/// Chunk requests of a session whose answer is not yet acknowledged (QoS 1) or written (QoS 0),
/// at most; one more is refused on `v2/fw/error`. As many as the answers the server sends
/// before waiting for a PUBACK, so a device pipelining that many is always served.
pub const MAX_CHUNKS_IN_FLIGHT: usize = 16;
/// A PUBLISH's fixed header, topic length, packet id and MQTT 5 properties length, at most.
const PUBLISH_OVERHEAD: u64 = 16;
/// The digits of the largest chunk index (a u64).
const MAX_INDEX_DIGITS: usize = 20;
/// The MQTT 5 user property that tells a device its chunks were cut smaller than it asked.
const CHUNK_SIZE_PROPERTY: &str = "chunk_size";
/// That property encoded, at most: identifier, two length prefixes, key and a u64 in decimal.
const CHUNK_SIZE_PROPERTY_BYTES: u64 = 1 + 2 + CHUNK_SIZE_PROPERTY.len() as u64 + 2 + 20;
/// Where refusals go, software too (as ThingsBoard).
const ERROR_TOPIC: &str = "v2/fw/error";

/// A session's chunk requests.
#[derive(Default)]
pub struct Chunks {
    /// Chunk sizes by request id (at most `MAX_CHUNK_REQUESTS`; the oldest is forgotten first).
    sizes: RefCell<VecDeque<(String, u64)>>,
    /// Requests taken and not yet answered (see `MAX_CHUNKS_IN_FLIGHT`).
    in_flight: Rc<Cell<usize>>,
    /// Requests whose answer is not handed to the connection yet: (turn, family and request
    /// id, chunk index).
    unsent: RefCell<Vec<(u64, String, u64)>>,
    next_turn: Cell<u64>,
    /// Signalled whenever an answer was handed to the connection.
    sent: Notify,
}

/// Counts one request in flight until dropped.
pub struct Slot(Rc<Cell<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl Chunks {
    /// A slot for one more request, or None when `MAX_CHUNKS_IN_FLIGHT` are unanswered.
    fn take_slot(&self) -> Option<Slot> {
        let n = self.in_flight.get();
        if n >= MAX_CHUNKS_IN_FLIGHT {
            return None;
        }
        self.in_flight.set(n + 1);
        Some(Slot(self.in_flight.clone()))
    }

    /// Registers an unsent answer of `request` (its family and id) at `index`; returns its turn.
    fn enter(&self, request: String, index: u64) -> u64 {
        let turn = self.next_turn.get();
        self.next_turn.set(turn.wrapping_add(1));
        self.unsent.borrow_mut().push((turn, request, index));
        turn
    }

    /// Whether an answer of the same request for a smaller index (or the same one, taken
    /// earlier) is still unsent.
    fn behind(&self, turn: u64, request: &str, index: u64) -> bool {
        self.unsent
            .borrow()
            .iter()
            .any(|(t, r, i)| r == request && (*i, *t) < (index, turn))
    }

    fn leave(&self, turn: u64) {
        self.unsent.borrow_mut().retain(|(t, _, _)| *t != turn);
        self.sent.notify_waiters();
    }

    fn size_of(&self, request: &str) -> Option<u64> {
        let sizes = self.sizes.borrow();
        sizes.iter().find(|(id, _)| id == request).map(|(_, s)| *s)
    }

    /// Remembers the chunk size of a request id (the oldest id is forgotten past
    /// `MAX_CHUNK_REQUESTS`).
    fn remember(&self, request: &str, size: u64) {
        let mut sizes = self.sizes.borrow_mut();
        sizes.retain(|(id, _)| id != request);
        if sizes.len() >= MAX_CHUNK_REQUESTS {
            sizes.pop_front();
        }
        sizes.push_back((request.to_owned(), size));
    }
}

/// Leaves the unsent answers when dropped (answered, or the request abandoned).
struct Unsent<'a> {
    chunks: &'a Chunks,
    turn: u64,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        self.chunks.leave(self.turn);
    }
}

/// What a chunk request is answered with.
enum Answer {
    Chunk {
        topic: String,
        bytes: Vec<u8>,
        property: Option<(&'static str, String)>,
    },
    Error(String),
}

impl DeviceSession {
    /// `v2/fw/request/{id}/chunk/{n}` (or `v2/sw/...`): the chunk on `v2/fw/response/{id}/chunk/{n}`,
    /// or an error text on `v2/fw/error` (software too, as ThingsBoard). The session stays open;
    /// answers of one request id go out in the order of their indices.
    pub(super) async fn package_chunk(
        self: &Rc<Self>,
        request: &str,
        chunk: &str,
        software: bool,
        payload: &[u8],
    ) -> Outcome {
        let Some(slot) = self.chunks.take_slot() else {
            tracing::info!(
                device = %self.device.id,
                request,
                chunk,
                limit = MAX_CHUNKS_IN_FLIGHT,
                "package chunk refused: {MAX_CHUNKS_IN_FLIGHT} chunk requests of the session wait for their answer already"
            );
            // At QoS 0: a QoS 1 publish would queue behind the unacknowledged answers.
            let text = format!(
                "Too many chunk requests waiting for their answer (at most {MAX_CHUNKS_IN_FLIGHT})"
            );
            if let Err(e) = self
                .sink
                .publish_at_most_once(ERROR_TOPIC, Bytes::from(text))
            {
                tracing::debug!(device = %self.device.id, error = %e, "chunk refusal not sent");
            }
            return Outcome::Accepted;
        };
        let family = if software { "sw" } else { "fw" };
        // An unparsable index goes after every other answer of the request.
        let index = chunk.parse::<u64>().unwrap_or(u64::MAX);
        let key = format!("{family}/{request}");
        let unsent = Unsent {
            chunks: &self.chunks,
            turn: self.chunks.enter(key.clone(), index),
        };
        let answer = self.chunk_answer(request, chunk, software, payload).await;
        // Handlers queued meanwhile get to register first; answers before this one go first.
        tokio::task::yield_now().await;
        loop {
            let sent = self.chunks.sent.notified();
            if !self.chunks.behind(unsent.turn, &key, index) {
                break;
            }
            sent.await;
        }
        // Written in order: a publish waiting for the connection's window would be overtaken
        // by one that finds the window open.
        if !self.sink.ready().await {
            return Outcome::Accepted;
        }
        match answer {
            Answer::Chunk {
                topic,
                bytes,
                property,
            } => {
                let qos1 = self.response_qos(&topic);
                self.spawn_publish_with(topic, Bytes::from(bytes), qos1, property, slot);
            }
            Answer::Error(text) => {
                tracing::info!(device = %self.device.id, request, chunk, error = %text, "package chunk refused");
                let qos1 = self.response_qos(ERROR_TOPIC);
                self.spawn_publish_with(
                    ERROR_TOPIC.to_owned(),
                    Bytes::from(text),
                    qos1,
                    None,
                    slot,
                );
            }
        }
        // The publish task runs before the next answer's (both queued in order).
        drop(unsent);
        Outcome::Accepted
    }

    async fn chunk_answer(
        self: &Rc<Self>,
        request: &str,
        chunk: &str,
        software: bool,
        payload: &[u8],
    ) -> Answer {
        let (kind, family) = if software {
            (OtaPackageType::Software, "sw")
        } else {
            (OtaPackageType::Firmware, "fw")
        };
        let Ok(index) = chunk.parse::<u64>() else {
            return Answer::Error(format!("Invalid chunk index: {chunk}"));
        };
        let text = String::from_utf8_lossy(payload);
        let size = match text.trim() {
            "" => self.chunks.size_of(request).unwrap_or(0),
            given => match given.parse::<u64>() {
                Ok(size) => {
                    self.chunks.remember(request, size);
                    size
                }
                Err(_) => return Answer::Error(format!("Invalid chunk size: {given}")),
            },
        };
        let topic = format!("v2/{family}/response/{request}/chunk/{chunk}");
        // The same for every index of the request, so shrunk chunks line up.
        let topic_bytes = topic.len() - chunk.len() + MAX_INDEX_DIGITS;
        let req = ChunkRequest {
            kind,
            size,
            chunk: index,
            max: self.max_chunk(topic_bytes),
            shrink: true,
        };
        match self.link().package_chunk(req, None).await {
            Ok(answer) => {
                let property = answer.shrunk.then(|| {
                    // Later chunks of this request are cut the same way, so they line up.
                    self.chunks.remember(request, answer.size);
                    if !self.sink.is_v5() {
                        tracing::info!(
                            device = %self.device.id,
                            request,
                            asked = size,
                            chunk_size = answer.size,
                            "package chunk larger than the connection allows: answered with chunks of chunk_size bytes"
                        );
                    }
                    (CHUNK_SIZE_PROPERTY, answer.size.to_string())
                });
                Answer::Chunk {
                    topic,
                    bytes: answer.bytes,
                    property: property.filter(|_| self.sink.is_v5()),
                }
            }
            Err(e) => Answer::Error(e.to_string()),
        }
    }

    /// The largest chunk one PUBLISH with a topic of `topic_bytes` can carry on this
    /// connection: within the server's `mqtt.max_packet_size` and the Maximum Packet Size the
    /// device announced (MQTT 5), beside the topic, the header and a `chunk_size` user property.
    fn max_chunk(&self, topic_bytes: usize) -> u64 {
        let server = u64::from(self.state.config.mqtt.max_packet_size);
        let device = self.peer_max_packet.get().map_or(u64::MAX, u64::from);
        let property = if self.sink.is_v5() {
            CHUNK_SIZE_PROPERTY_BYTES
        } else {
            0
        };
        server
            .min(device)
            .saturating_sub(topic_bytes as u64 + PUBLISH_OVERHEAD + property)
    }
}
