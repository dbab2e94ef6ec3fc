//! Worker mailboxes: the MQTT sessions of one worker thread share one queue for their commands
//! instead of a channel, a close signal and a task each. Every session keeps its own bound
//! (`mqtt.outbound_queue`) and its close request, which a full queue cannot hold back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::{CloseReason, SessionCmd};

/// What a worker's mailbox carries: a command or a close request for one of its sessions.
#[derive(Debug)]
pub struct Letter {
    pub session: u64,
    pub kind: LetterKind,
}

#[derive(Debug)]
pub enum LetterKind {
    Cmd(SessionCmd),
    /// The session's close reason was set (read it from its `SessionFlags`).
    Close,
}

/// The sending side of one worker's mailbox. Its queue has no bound of its own: every session
/// holds at most its bound of commands in it, plus one close request.
#[derive(Clone, Debug)]
pub struct Mailbox {
    tx: mpsc::UnboundedSender<Letter>,
}

impl Mailbox {
    /// A new mailbox and the receiver its worker reads.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Letter>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// The address of a new session of this worker, holding at most `bound` commands queued.
    pub fn address(&self, bound: usize) -> Address {
        Address {
            tx: self.tx.clone(),
            flags: Arc::new(SessionFlags {
                queued: AtomicUsize::new(0),
                bound: bound.max(1),
                close: AtomicU8::new(0),
            }),
        }
    }
}

/// What a session and the registry share: its queued commands and its close reason.
#[derive(Debug)]
pub struct SessionFlags {
    queued: AtomicUsize,
    bound: usize,
    /// 0: open; else `CloseReason` as `code`.
    close: AtomicU8,
}

impl SessionFlags {
    /// The worker took one of the session's commands out of the mailbox.
    pub fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }

    /// The first close reason set, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        reason(self.close.load(Ordering::Acquire))
    }

    /// Commands of the session in the mailbox.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// Where the registry sends one session's commands.
#[derive(Debug)]
pub struct Address {
    tx: mpsc::UnboundedSender<Letter>,
    flags: Arc<SessionFlags>,
}

impl Address {
    /// The flags the session keeps.
    pub fn flags(&self) -> Arc<SessionFlags> {
        self.flags.clone()
    }

    /// Queues a command for `session`; false when its bound is reached or the worker is gone.
    pub fn offer(&self, session: u64, cmd: SessionCmd) -> bool {
        let flags = &self.flags;
        if flags.queued.fetch_add(1, Ordering::AcqRel) >= flags.bound {
            flags.queued.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let letter = Letter {
            session,
            kind: LetterKind::Cmd(cmd),
        };
        if self.tx.send(letter).is_err() {
            flags.queued.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Asks `session` to close; a reason set earlier stays (and only the first is sent).
    pub fn close(&self, session: u64, why: CloseReason) {
        let set = self
            .flags
            .close
            .compare_exchange(0, code(why), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if set {
            let _ = self.tx.send(Letter {
                session,
                kind: LetterKind::Close,
            });
        }
    }

    /// The close reason set, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.flags.close_reason()
    }
}

fn code(reason: CloseReason) -> u8 {
    match reason {
        CloseReason::ServerShutdown => 1,
        CloseReason::TakenOver => 2,
        CloseReason::Administrative => 3,
        CloseReason::ProfileChanged => 4,
    }
}

fn reason(code: u8) -> Option<CloseReason> {
    match code {
        1 => Some(CloseReason::ServerShutdown),
        2 => Some(CloseReason::TakenOver),
        3 => Some(CloseReason::Administrative),
        4 => Some(CloseReason::ProfileChanged),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_at_most_its_bound() {
        let (mailbox, mut rx) = Mailbox::new();
        let (a, b) = (mailbox.address(2), mailbox.address(2));
        assert!(a.offer(1, SessionCmd::PendingRpc));
        assert!(a.offer(1, SessionCmd::PendingRpc));
        assert!(!a.offer(1, SessionCmd::PendingRpc), "session 1 is full");
        assert!(
            b.offer(2, SessionCmd::PendingRpc),
            "session 2 has its own bound"
        );
        let first = rx.try_recv().expect("queued");
        assert_eq!(first.session, 1);
        a.flags().taken();
        assert_eq!(a.flags().queued(), 1);
        assert!(a.offer(1, SessionCmd::PendingRpc), "room again once taken");
    }

    #[test]
    fn close_gets_through_a_full_queue_once_with_the_first_reason() {
        let (mailbox, mut rx) = Mailbox::new();
        let a = mailbox.address(1);
        assert!(a.offer(7, SessionCmd::PendingRpc));
        assert!(!a.offer(7, SessionCmd::PendingRpc));
        a.close(7, CloseReason::Administrative);
        a.close(7, CloseReason::TakenOver);
        assert_eq!(a.close_reason(), Some(CloseReason::Administrative));
        let kinds: Vec<LetterKind> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|l| l.kind)
            .collect();
        assert!(matches!(
            kinds.as_slice(),
            [LetterKind::Cmd(_), LetterKind::Close]
        ));
    }

    #[test]
    fn every_reason_round_trips() {
        for why in [
            CloseReason::ServerShutdown,
            CloseReason::TakenOver,
            CloseReason::Administrative,
            CloseReason::ProfileChanged,
        ] {
            assert_eq!(reason(code(why)), Some(why));
        }
        assert_eq!(reason(0), None);
    }

    #[test]
    fn a_gone_worker_takes_nothing() {
        let (mailbox, rx) = Mailbox::new();
        let a = mailbox.address(4);
        drop(rx);
        assert!(!a.offer(1, SessionCmd::PendingRpc));
        assert_eq!(a.flags().queued(), 0);
    }
}
