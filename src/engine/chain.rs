//! The chain graph and routing: nodes by index, connections precomputed per node, a work list that
//! carries each message (and its copies) from node to node until no relation matches.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use metrics::{Counter, Histogram};
use tracing::Instrument as _;
use uuid::Uuid;

use super::EngineError;
use super::debug::DebugSlot;
use super::loader::ChainDoc;
use super::nodes::{EngineServices, Node, Outcome, Relation};
use crate::domain::Msg;

/// Longest path one message may take; a cycle ends here.
pub const MAX_HOPS: u32 = 64;
/// Most node runs one incoming message may cause, copies included (a fan-out cycle ends here).
pub const MAX_RUNS: u32 = 1024;

/// One connection out of a node.
pub struct Route {
    /// Relation name, lower-cased at load.
    relation: Box<str>,
    target: usize,
}

impl Route {
    pub fn new(relation: &str, target: usize) -> Self {
        Self {
            relation: relation.to_lowercase().into_boxed_str(),
            target,
        }
    }

    fn matches(&self, emitted: &str) -> bool {
        emitted.eq_ignore_ascii_case(&self.relation)
            || (!emitted.is_ascii() && emitted.to_lowercase() == *self.relation)
    }
}

/// A node with its outgoing connections and metric handles.
pub struct Slot {
    pub id: String,
    pub node: Node,
    pub routes: Vec<Route>,
    /// Stable id (from the chain file's name and the node's id).
    pub uuid: Uuid,
    pub debug: Arc<DebugSlot>,
    runs: OnceLock<Counter>,
    failures: OnceLock<Counter>,
    seconds: OnceLock<Histogram>,
}

impl Slot {
    pub fn new(id: String, node: Node, uuid: Uuid, debug: Arc<DebugSlot>) -> Self {
        Self {
            id,
            node,
            routes: Vec::new(),
            uuid,
            debug,
            runs: OnceLock::new(),
            failures: OnceLock::new(),
            seconds: OnceLock::new(),
        }
    }

    // Resolved on first use: the metrics recorder may be installed after the rules are loaded.
    fn runs(&self) -> &Counter {
        self.runs.get_or_init(
            || metrics::counter!("ferroboard_rule_node_runs_total", "node" => self.id.clone()),
        )
    }

    fn seconds(&self) -> &Histogram {
        self.seconds.get_or_init(
            || metrics::histogram!("ferroboard_rule_node_seconds", "node" => self.id.clone()),
        )
    }

    fn failures(&self) -> &Counter {
        self.failures.get_or_init(
            || metrics::counter!("ferroboard_rule_node_failures_total", "node" => self.id.clone()),
        )
    }
}

/// A loaded chain.
pub struct Chain {
    pub name: String,
    pub root: bool,
    pub entry: usize,
    pub slots: Vec<Slot>,
    /// The chain file's name in the rules directory.
    pub file: String,
    /// Stable id (from the file name).
    pub id: Uuid,
    /// The file as parsed, and its text.
    pub doc: ChainDoc,
    pub text: String,
}

struct Item {
    node: usize,
    msg: Msg,
    hops: u32,
}

/// Pending messages; a straight path never touches the vector (no allocation).
struct Work {
    head: Option<Item>,
    rest: Vec<Item>,
}

impl Work {
    fn push(&mut self, item: Item) {
        match self.head {
            None => self.head = Some(item),
            Some(_) => self.rest.push(item),
        }
    }

    fn pop(&mut self) -> Option<Item> {
        self.head.take().or_else(|| self.rest.pop())
    }
}

/// What happened to one incoming message (for tests and tracing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Node runs, copies included.
    pub runs: u32,
    /// Messages (or copies) dropped: no matching connection (a leaf's Success excepted), an
    /// unconnected Failure, or past the hop limits.
    pub dropped: u32,
}

impl Chain {
    /// Runs one message from the entry node until every copy is routed nowhere.
    /// Branches run one after another; a storage error ends the message at once.
    pub async fn run<S: EngineServices>(
        &self,
        msg: Msg,
        services: &S,
        dropped: &Counter,
    ) -> Result<RunStats, EngineError> {
        let head = Item {
            node: self.entry,
            msg,
            hops: 0,
        };
        let mut work = Work {
            head: Some(head),
            rest: Vec::new(),
        };
        let mut stats = RunStats::default();
        while let Some(item) = work.pop() {
            if item.hops >= MAX_HOPS || stats.runs >= MAX_RUNS {
                self.drop_runaway(&item, stats.runs);
                stats.dropped += 1;
                continue;
            }
            stats.runs += 1;
            let slot = &self.slots[item.node];
            slot.runs().increment(1);
            // Two atomic loads when debugging is off; the input is copied only when it is on.
            let debug = slot.debug.active().then(|| item.msg.clone());
            let started = Instant::now();
            let span = crate::trace_child!(
                "rule.node",
                otel.name = %format_args!("rule node {}", slot.id),
                rule.chain = %self.name,
                rule.node = %slot.id,
            );
            let result = slot.node.process(item.msg, services).instrument(span).await;
            slot.seconds().record(started.elapsed().as_secs_f64());
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(e) => {
                    slot.failures().increment(1);
                    return Err(e);
                }
            };
            if outcome.is_failure() {
                slot.failures().increment(1);
            }
            if let Some(input) = debug {
                capture(slot, &input, &outcome);
            }
            services.visited(&self.name, &slot.id, &outcome);
            let hops = item.hops + 1;
            let unrouted = match outcome {
                Outcome::One(msg, rels) => {
                    u32::from(!self.route(slot, msg, rels.as_slice(), hops, &mut work))
                }
                Outcome::Many(msgs) => msgs
                    .into_iter()
                    .map(|msg| {
                        u32::from(!self.route(slot, msg, &[Relation::Success], hops, &mut work))
                    })
                    .sum(),
            };
            stats.dropped += unrouted;
        }
        dropped.increment(u64::from(stats.dropped));
        Ok(stats)
    }

    /// Sends `msg` along every connection whose type matches one of `rels` (copies for all but one);
    /// false when the message was dropped: no connection matched although the node has some, or the
    /// unmatched relation was `Failure`.
    fn route(&self, slot: &Slot, msg: Msg, rels: &[Relation], hops: u32, work: &mut Work) -> bool {
        let mut targets = slot
            .routes
            .iter()
            .filter(|r| rels.iter().any(|rel| r.matches(rel.name())))
            .map(|r| r.target);
        let Some(first) = targets.next() else {
            let failed = rels.contains(&Relation::Failure);
            // A leaf node's Success is the normal end of a path, not a drop.
            if !failed && slot.routes.is_empty() {
                return true;
            }
            self.drop_unrouted(slot, &msg, rels, failed);
            return false;
        };
        for node in targets {
            let msg = msg.clone();
            work.push(Item { node, msg, hops });
        }
        work.push(Item {
            node: first,
            msg,
            hops,
        });
        true
    }

    fn drop_unrouted(&self, slot: &Slot, msg: &Msg, rels: &[Relation], failed: bool) {
        if failed {
            tracing::warn!(
                chain = %self.name,
                node = %slot.id,
                msg_id = %msg.id,
                msg_type = msg.msg_type.as_str(),
                error = msg.metadata.get("error").map(String::as_str).unwrap_or(""),
                "rule node failed and its Failure relation is not connected; message dropped"
            );
        } else {
            tracing::debug!(
                chain = %self.name,
                node = %slot.id,
                msg_id = %msg.id,
                relations = ?rels.iter().map(Relation::name).collect::<Vec<_>>(),
                "no connection for the emitted relations; message dropped"
            );
        }
    }

    fn drop_runaway(&self, item: &Item, runs: u32) {
        tracing::warn!(
            chain = %self.name,
            node = %self.slots[item.node].id,
            msg_id = %item.msg.id,
            hops = item.hops,
            runs,
            "message exceeded {MAX_HOPS} hops or {MAX_RUNS} node runs (a cycle in the chain?); dropped"
        );
    }
}

/// IN and OUT events of a node in debug mode: all of them while `all` lasts, else failures only.
fn capture(slot: &Slot, input: &Msg, outcome: &Outcome) {
    let all = slot.debug.all();
    if !all && !outcome.is_failure() {
        return;
    }
    slot.debug.record("IN", input, None);
    match outcome {
        Outcome::One(msg, rels) => {
            let names: Vec<&str> = rels.as_slice().iter().map(Relation::name).collect();
            slot.debug.record("OUT", msg, Some(names.join(",")));
        }
        Outcome::Many(msgs) => {
            for msg in msgs {
                slot.debug.record("OUT", msg, Some("Success".to_owned()));
            }
        }
    }
}

/// Every chain of a rules directory; one of them is the root.
pub struct Chains {
    pub chains: Vec<Chain>,
    pub root: usize,
    /// Script files read by the chains (path relative to the rules directory -> text).
    pub scripts: BTreeMap<String, String>,
    dropped: OnceLock<Counter>,
}

impl Chains {
    pub fn new(chains: Vec<Chain>, root: usize, scripts: BTreeMap<String, String>) -> Self {
        Self {
            chains,
            root,
            scripts,
            dropped: OnceLock::new(),
        }
    }

    pub fn by_id(&self, id: Uuid) -> Option<&Chain> {
        self.chains.iter().find(|c| c.id == id)
    }

    pub fn root(&self) -> &Chain {
        &self.chains[self.root]
    }

    pub fn dropped(&self) -> &Counter {
        self.dropped
            .get_or_init(|| metrics::counter!("ferroboard_rule_messages_dropped_total"))
    }

    /// One line for `rules check`.
    pub fn summary(&self) -> String {
        let nodes: usize = self.chains.iter().map(|c| c.slots.len()).sum();
        format!(
            "ok: {} chain(s), {nodes} node(s); root chain '{}'",
            self.chains.len(),
            self.root().name
        )
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
