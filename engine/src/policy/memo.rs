//! Remembered decisions: a tree of the values scripts read, with the
//! decision at the end of each path.
//!
//! INVARIANT: `authorize` is a pure function of the answers to the probes
//! it makes. A script's only input is `req`, every value it can learn
//! from `req` comes through one [`Probe`] (see [`super::request`]), and
//! nothing else can differ between two calls: there is no clock, random
//! number, file, module, global variable or other state a script can read,
//! and rhai evaluates deterministically. So the first probe of every call
//! is the same, the next one depends only on the answers so far, and two
//! requests that answer every probe of a path alike get the same decision.
//! A path is stored only for a call that did not fault (a time-limit fault
//! depends on the machine, not the request) and whose every read was
//! recorded.
//!
//! The engine asks about many customers for one principal; their
//! decisions mostly differ only in values the policy never reads, so after
//! the first few, most calls are answered here without running rhai.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;

use super::Decision;
use super::request::{Answer, AnswerRef, Live, Probe};

/// Most nodes the tree may hold; when a new path would not fit, the tree
/// is emptied and starts again. Bounds the memory a policy can use for
/// this, whatever its scripts read.
pub(crate) const MAX_MEMO_NODES: usize = 20_000;

/// Up to this many answers of one probe are searched one by one; more are
/// indexed by hash (a probe such as the customer's owner may have
/// thousands).
const FEW_BRANCHES: usize = 16;

enum Node {
    /// Not reached by any remembered path yet (only the root, at first).
    Open,
    /// The decision of the path that ends here.
    Decided(Decision),
    /// The path continues with `probe`; each branch is one answer.
    Ask { probe: Probe, branches: Branches },
}

/// The answers seen for one probe, each with the node it leads to.
enum Branches {
    Few(Vec<(Answer, usize)>),
    Many(HashMap<u64, Vec<(Answer, usize)>>),
}

impl Branches {
    fn find(&self, answer: AnswerRef<'_>, hasher: &RandomState) -> Option<usize> {
        let candidates = match self {
            Branches::Few(list) => list.as_slice(),
            Branches::Many(map) => map.get(&hash(hasher, answer))?.as_slice(),
        };
        candidates
            .iter()
            .find(|(a, _)| a.as_ref().same(answer))
            .map(|&(_, child)| child)
    }

    fn add(&mut self, answer: Answer, child: usize, hasher: &RandomState) {
        match self {
            Branches::Few(list) if list.len() < FEW_BRANCHES => list.push((answer, child)),
            Branches::Few(list) => {
                let mut map: HashMap<u64, Vec<(Answer, usize)>> = HashMap::new();
                for (a, c) in std::mem::take(list).into_iter().chain([(answer, child)]) {
                    map.entry(hash(hasher, a.as_ref()))
                        .or_default()
                        .push((a, c));
                }
                *self = Branches::Many(map);
            }
            Branches::Many(map) => map
                .entry(hash(hasher, answer.as_ref()))
                .or_default()
                .push((answer, child)),
        }
    }
}

fn hash(hasher: &RandomState, answer: AnswerRef<'_>) -> u64 {
    let mut state = hasher.build_hasher();
    answer.hash_value(&mut state);
    std::hash::Hasher::finish(&state)
}

/// The tree of one policy; shared between threads.
pub(super) struct Memo {
    nodes: RwLock<Vec<Node>>,
    /// Keyed per policy, so that answers (names of principals, say) cannot
    /// be chosen to collide.
    hasher: RandomState,
}

impl Memo {
    pub(super) fn new() -> Memo {
        Memo {
            nodes: RwLock::new(vec![Node::Open]),
            hasher: RandomState::new(),
        }
    }

    /// The remembered decision for `live`, if its path is known.
    pub(super) fn get(&self, live: &Live<'_>) -> Option<Decision> {
        let nodes = self.nodes.read().ok()?;
        let mut at = 0;
        loop {
            match nodes.get(at)? {
                Node::Open => return None,
                Node::Decided(decision) => return Some(decision.clone()),
                Node::Ask { probe, branches } => {
                    at = branches.find(live.answer(probe), &self.hasher)?;
                }
            }
        }
    }

    /// Remembers `decision` for the path `reads`.
    pub(super) fn insert(&self, reads: &[(Probe, Answer)], decision: &Decision) {
        let Ok(mut nodes) = self.nodes.write() else {
            return;
        };
        if nodes.len() + reads.len() + 1 > MAX_MEMO_NODES {
            nodes.clear();
            nodes.push(Node::Open);
        }
        let mut at = 0;
        for (probe, answer) in reads {
            let next = nodes.len();
            let child = {
                let Some(node) = nodes.get_mut(at) else {
                    return;
                };
                if let Node::Open = node {
                    *node = Node::Ask {
                        probe: probe.clone(),
                        branches: Branches::Few(Vec::new()),
                    };
                }
                let Node::Ask {
                    probe: asked,
                    branches,
                } = node
                else {
                    // A decision where this path reads on: impossible for a
                    // deterministic policy. Remember nothing rather than guess.
                    return;
                };
                if asked != probe {
                    return;
                }
                match branches.find(answer.as_ref(), &self.hasher) {
                    Some(child) => child,
                    None => {
                        branches.add(answer.clone(), next, &self.hasher);
                        next
                    }
                }
            };
            if child == next {
                nodes.push(Node::Open);
            }
            at = child;
        }
        if let Some(node) = nodes.get_mut(at)
            && let Node::Open = node
        {
            *node = Node::Decided(decision.clone());
        }
    }

    /// How many nodes the tree holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.nodes.read().map_or(0, |n| n.len())
    }
}
