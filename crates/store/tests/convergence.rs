//! Property tests of the master and clone state machines: random operations through the master
//! and through clones, while the network between them loses, delays and reorders messages (and
//! requests time out). After the network heals, every clone must hold exactly the master's
//! contents, and every write made through a clone must have been applied exactly once.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use yard_data::Value;
use yard_store::master::{MasterConfig, MasterCore, WriteBatch};
use yard_store::proto::{FromMaster, ToMaster};
use yard_store::replica::{Action, ReplicaConfig, ReplicaCore};
use yard_store::{BackendSpec, Effect, Entry, Mutation};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Sync,
    Write,
}

#[derive(Debug)]
enum Packet {
    ToMaster {
        from: usize,
        req: ToMaster,
        kind: Option<Kind>,
    },
    Reply {
        to: usize,
        kind: Kind,
        msg: FromMaster,
    },
    Publish {
        to: usize,
        msg: FromMaster,
    },
}

#[derive(Debug, Clone)]
enum Step {
    MasterWrite(u8, u8, u8),
    CloneWrite(usize, u8, u8, u8),
    CloneIncrement(usize),
    /// Deliver (or lose, when the flag is set) the pending packet at this index (modulo).
    Deliver(usize, bool),
    TickClone(usize),
    TickMaster,
    Advance(u16),
}

const CLONES: usize = 3;
const SEC: i64 = 1_000_000_000;

fn op(kind: u8, key: u8, val: u8, with_clear: bool) -> Mutation {
    let key = Value::String(format!("k{}", key % 6));
    let v = Value::Count(val as u64);
    match kind % 12 {
        0 | 1 => Mutation::Put {
            key,
            value: v,
            expiry: None,
        },
        2 => Mutation::Put {
            key,
            value: v,
            expiry: Some((val as i64 % 5 + 1) * SEC),
        },
        3 => Mutation::PutUnique {
            key,
            value: v,
            expiry: None,
        },
        4 => Mutation::Erase { key },
        5 => Mutation::Increment {
            key,
            amount: Value::Count(1),
            expiry: None,
        },
        6 => Mutation::Append {
            key,
            value: Value::String("x".into()),
            expiry: None,
        },
        7 => Mutation::InsertInto {
            key,
            index: v,
            value: None,
            expiry: None,
        },
        8 => Mutation::Push {
            key,
            value: v,
            expiry: None,
        },
        9 => Mutation::Pop { key, expiry: None },
        10 => Mutation::RemoveFrom {
            key,
            index: v,
            expiry: None,
        },
        _ if with_clear => Mutation::Clear,
        _ => Mutation::Decrement {
            key,
            amount: Value::Count(1),
            expiry: None,
        },
    }
}

struct Sim {
    now: i64,
    master: MasterCore,
    clones: Vec<ReplicaCore>,
    net: VecDeque<Packet>,
    increments: [u64; CLONES],
}

impl Sim {
    fn new(log_retain: usize) -> Sim {
        let config = MasterConfig {
            log_retain,
            page_size: 3,
            log_chunk: 5,
            ..MasterConfig::default()
        };
        let master =
            MasterCore::new("s", "m", BackendSpec::Memory.open("s").unwrap(), 42, config).unwrap();
        let rc = ReplicaConfig {
            stale_interval: None,
            buffer_interval: i64::MAX / 4,
            max_write_batch: 4,
            ..ReplicaConfig::default()
        };
        Sim {
            now: 1_000 * SEC,
            master,
            clones: (0..CLONES)
                .map(|i| ReplicaCore::new(&format!("c{i}"), "s", rc.clone()))
                .collect(),
            net: VecDeque::new(),
            increments: [0; CLONES],
        }
    }

    fn broadcast(&mut self, msg: Option<FromMaster>) {
        if let Some(msg) = msg {
            for to in 0..CLONES {
                self.net.push_back(Packet::Publish {
                    to,
                    msg: msg.clone(),
                });
            }
        }
    }

    fn drain(&mut self, i: usize) {
        for a in self.clones[i].take_actions() {
            match a {
                Action::Sync(req) => self.net.push_back(Packet::ToMaster {
                    from: i,
                    req,
                    kind: Some(Kind::Sync),
                }),
                Action::Write(req) => self.net.push_back(Packet::ToMaster {
                    from: i,
                    req,
                    kind: Some(Kind::Write),
                }),
                Action::Publish(req) => self.net.push_back(Packet::ToMaster {
                    from: i,
                    req,
                    kind: None,
                }),
                Action::Resolve { .. } => {}
            }
        }
    }

    fn fail(&mut self, to: usize, kind: Kind) {
        match kind {
            Kind::Sync => self.clones[to].on_sync(None, self.now),
            Kind::Write => self.clones[to].on_written(None, self.now),
        }
        self.drain(to);
    }

    fn deliver(&mut self, p: Packet, lose: bool) {
        match p {
            Packet::ToMaster { from, kind, .. } if lose => {
                if let Some(k) = kind {
                    self.fail(from, k);
                }
            }
            Packet::Reply { to, kind, .. } if lose => self.fail(to, kind),
            Packet::Publish { .. } if lose => {}
            Packet::ToMaster { from, req, kind } => {
                let now = self.now;
                let reply = match req {
                    ToMaster::Write {
                        writer,
                        first,
                        muts,
                    } => {
                        let (mut r, u) = self.master.write(
                            &[WriteBatch {
                                writer: Some(writer),
                                first,
                                muts,
                            }],
                            now,
                        );
                        self.broadcast(u);
                        Some(FromMaster::Written {
                            epoch: self.master.epoch(),
                            seq: self.master.seq(),
                            results: r.pop().unwrap(),
                        })
                    }
                    ToMaster::Fetch { clone, epoch, from } => {
                        Some(self.master.fetch(&clone, epoch, from, now))
                    }
                    ToMaster::Page {
                        clone,
                        epoch,
                        after,
                    } => Some(self.master.page(&clone, epoch, Some(&after), now)),
                    ToMaster::Ack { clone, epoch, seq } => {
                        self.master.ack(&clone, epoch, seq, now);
                        None
                    }
                    other => panic!("clones do not send {other:?}"),
                };
                if let (Some(msg), Some(kind)) = (reply, kind) {
                    self.net.push_back(Packet::Reply {
                        to: from,
                        kind,
                        msg,
                    });
                }
            }
            Packet::Reply { to, kind, msg } => {
                match kind {
                    Kind::Sync => self.clones[to].on_sync(Some(msg), self.now),
                    Kind::Write => self.clones[to].on_written(Some(msg), self.now),
                }
                self.drain(to);
            }
            Packet::Publish { to, msg } => {
                self.clones[to].on_published(msg, self.now);
                self.drain(to);
            }
        }
    }

    fn step(&mut self, s: &Step, with_clear: bool) {
        match *s {
            Step::MasterWrite(k, key, v) => {
                let (_, u) = self.master.write(
                    &[WriteBatch {
                        writer: None,
                        first: 0,
                        muts: vec![op(k, key, v, with_clear)],
                    }],
                    self.now,
                );
                self.broadcast(u);
            }
            Step::CloneWrite(c, k, key, v) => {
                let c = c % CLONES;
                self.clones[c]
                    .write(op(k, key, v, with_clear), Some(1), self.now)
                    .unwrap();
                self.drain(c);
            }
            Step::CloneIncrement(c) => {
                let c = c % CLONES;
                self.increments[c] += 1;
                let m = Mutation::Increment {
                    key: Value::String(format!("count-{c}")),
                    amount: Value::Count(1),
                    expiry: None,
                };
                self.clones[c].write(m, None, self.now).unwrap();
                self.drain(c);
            }
            Step::Deliver(i, lose) => {
                if !self.net.is_empty() {
                    let i = i % self.net.len();
                    let p = self.net.remove(i).unwrap();
                    self.deliver(p, lose);
                }
            }
            Step::TickClone(c) => {
                let c = c % CLONES;
                self.clones[c].tick(self.now);
                self.drain(c);
            }
            Step::TickMaster => {
                let u = self.master.expire(self.now);
                self.broadcast(u);
                let hb = self.master.heartbeat();
                self.broadcast(Some(hb));
            }
            Step::Advance(ms) => self.now += ms as i64 * 1_000_000,
        }
    }

    /// No more loss: run the timers and deliver everything until all are idle.
    fn heal(&mut self) {
        for _ in 0..2000 {
            self.now += 100_000_000;
            self.step(&Step::TickMaster, false);
            for c in 0..CLONES {
                self.step(&Step::TickClone(c), false);
            }
            let mut budget = 100_000;
            while let Some(p) = self.net.pop_front() {
                self.deliver(p, false);
                budget -= 1;
                assert!(budget > 0, "the network does not quiesce");
            }
            let now = self.now;
            if self.master.is_idle() && self.clones.iter().all(|c| c.is_idle(now)) {
                return;
            }
        }
        panic!(
            "not idle after healing: {:?}",
            self.clones
                .iter()
                .map(|c| (c.position(), c.is_synced(), c.buffered()))
                .collect::<Vec<_>>()
        );
    }

    fn master_contents(&mut self) -> BTreeMap<Value, Entry> {
        let mut out = BTreeMap::new();
        let mut after = None;
        loop {
            let page = self.master.backend().page(after.as_ref(), 100).unwrap();
            if page.is_empty() {
                return out;
            }
            after = Some(page.last().unwrap().0.clone());
            out.extend(page);
        }
    }
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| Step::MasterWrite(a, b, c)),
        3 => (0..CLONES, any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(i, a, b, c)| Step::CloneWrite(i, a, b, c)),
        2 => (0..CLONES).prop_map(Step::CloneIncrement),
        8 => (any::<usize>(), proptest::bool::weighted(0.25)).prop_map(|(i, l)| Step::Deliver(i, l)),
        2 => (0..CLONES).prop_map(Step::TickClone),
        1 => Just(Step::TickMaster),
        2 => (1u16..400).prop_map(Step::Advance),
    ]
}

fn run(steps: &[Step], log_retain: usize, with_clear: bool) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(log_retain);
    for s in steps {
        sim.step(s, with_clear);
    }
    sim.heal();
    let expected = sim.master_contents();
    for (i, c) in sim.clones.iter().enumerate() {
        prop_assert_eq!(c.map(), &expected, "clone {} differs from the master", i);
    }
    if !with_clear {
        for c in 0..CLONES {
            let got = expected
                .get(&Value::String(format!("count-{c}")))
                .map(|e| e.value.clone());
            let want = (sim.increments[c] > 0).then_some(Value::Count(sim.increments[c]));
            prop_assert_eq!(
                got,
                want,
                "increments through clone {} applied exactly once",
                c
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// A long log: gaps are filled from it.
    #[test]
    fn clones_converge_with_a_long_log(steps in proptest::collection::vec(step_strategy(), 1..400)) {
        run(&steps, 10_000, false)?;
    }

    /// A tiny log: clones that fall behind rebuild from paged snapshots taken while writes go on.
    #[test]
    fn clones_converge_from_snapshots_with_a_short_log(steps in proptest::collection::vec(step_strategy(), 1..400)) {
        run(&steps, 3, false)?;
    }

    /// With clear in the mix.
    #[test]
    fn clones_converge_with_clears(steps in proptest::collection::vec(step_strategy(), 1..300)) {
        run(&steps, 8, true)?;
    }
}

#[test]
fn effects_are_idempotent_so_replaying_covered_log_is_harmless() {
    let mut map = BTreeMap::new();
    let effects = [
        Effect::Put {
            key: Value::Count(1),
            value: Value::Count(2),
            expiry: None,
        },
        Effect::Erase {
            key: Value::Count(1),
        },
        Effect::Put {
            key: Value::Count(3),
            value: Value::Count(4),
            expiry: Some(9),
        },
    ];
    for e in &effects {
        yard_store::backend::apply_to_map(&mut map, e);
    }
    let once = map.clone();
    for e in &effects[1..] {
        yard_store::backend::apply_to_map(&mut map, e);
    }
    assert_eq!(map, once);
}
