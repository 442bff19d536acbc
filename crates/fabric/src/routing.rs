//! Mesh routing (no I/O, no clocks): who forwards a publication to whom.
//!
//! Every endpoint floods an [`Advert`]: its subscription prefixes and the endpoints it peers with,
//! under a version that only grows. Each endpoint keeps the newest advert of every origin and
//! computes from that same database, for every origin `O`, the breadth-first shortest-path tree
//! rooted at `O`, breaking ties by the smallest node id so that every endpoint computes the same
//! tree. A publication from `O` travels along `O`'s tree only: an endpoint forwards it to a
//! neighbour `N` when it is `N`'s parent in that tree and some endpoint in `N`'s subtree
//! subscribes to the topic. One path per (origin, subscriber) over FIFO links gives exactly-once,
//! per-publisher-ordered delivery, and a tree has no loops. While adverts are still converging
//! after a change the endpoint layer's per-origin sequence numbers and the TTL are the safety
//! net (see `endpoint`).
//!
//! An edge counts when both ends list each other, except edges at this endpoint, which are its
//! live connections. Reply addresses are ordinary prefixes: every endpoint advertises
//! `<$>/reply/<its id>/`, so an answer follows the same trees to the one requester.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::subs::{collapse, SubscriptionTable};

/// A node's index in this endpoint's interner.
pub type NodeIdx = u32;

/// The root of every reply address.
pub const REPLY_ROOT: &str = "<$>/reply/";

/// What follows a reply address when the answer is a failure (its value: the responder's code
/// and context, two strings).
pub const FAILURE_SUFFIX: &str = "!failed";

/// The topic prefix answers to requests made at endpoint `id` travel under.
pub fn reply_prefix(id: &str) -> String {
    format!("{REPLY_ROOT}{id}/")
}

/// One endpoint's advert, as flooded through the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub origin: String,
    pub version: u64,
    pub prefixes: Vec<String>,
    pub peers: Vec<String>,
}

#[derive(Debug, Default)]
struct Entry {
    version: u64,
    prefixes: Vec<String>,
    peers: BTreeSet<NodeIdx>,
}

/// What a recomputation changed in the set of endpoints this one can reach.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reachability {
    pub discovered: Vec<NodeIdx>,
    pub unreachable: Vec<NodeIdx>,
}

/// The routing database and the forwarding tables computed from it.
#[derive(Debug)]
pub struct Routes {
    me: NodeIdx,
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, NodeIdx>,
    /// Newest advert per origin, this endpoint's own included.
    db: HashMap<NodeIdx, Entry>,
    /// Live connections of this endpoint.
    live: BTreeSet<NodeIdx>,
    reachable: BTreeSet<NodeIdx>,
    /// The confirmed graph, as of the last recomputation.
    adj: HashMap<NodeIdx, Vec<NodeIdx>>,
    /// Per origin: which neighbours a publication from it goes to, by topic (built on demand).
    tables: HashMap<NodeIdx, SubscriptionTable<NodeIdx>>,
}

impl Routes {
    /// `start_version` should grow across restarts of the same id (a clock reading will do), so
    /// a restarted endpoint's adverts replace its old ones everywhere.
    pub fn new(me: &str, start_version: u64) -> Routes {
        let mut r = Routes {
            me: 0,
            names: Vec::new(),
            index: HashMap::new(),
            db: HashMap::new(),
            live: BTreeSet::new(),
            reachable: BTreeSet::new(),
            adj: HashMap::new(),
            tables: HashMap::new(),
        };
        r.me = r.intern(me);
        r.db.insert(
            r.me,
            Entry {
                version: start_version,
                prefixes: vec![reply_prefix(me)],
                peers: BTreeSet::new(),
            },
        );
        r.recompute();
        r
    }

    pub fn me(&self) -> NodeIdx {
        self.me
    }

    pub fn intern(&mut self, id: &str) -> NodeIdx {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.names.len() as NodeIdx;
        let name: Arc<str> = Arc::from(id);
        self.names.push(name.clone());
        self.index.insert(name, i);
        i
    }

    pub fn lookup(&self, id: &str) -> Option<NodeIdx> {
        self.index.get(id).copied()
    }

    pub fn name(&self, i: NodeIdx) -> &Arc<str> {
        &self.names[i as usize]
    }

    pub fn is_reachable(&self, i: NodeIdx) -> bool {
        self.reachable.contains(&i)
    }

    /// Endpoints reachable now, this one excluded.
    /// Whether `node`'s advert (its subscriptions and peers) has arrived.
    pub fn advertised(&self, node: NodeIdx) -> bool {
        node == self.me || self.db.contains_key(&node)
    }

    pub fn reachable(&self) -> impl Iterator<Item = NodeIdx> + '_ {
        self.reachable.iter().copied()
    }

    /// Sets this endpoint's subscriptions (reserved prefixes other than its reply prefix and the
    /// mesh-wide system topics are local and never advertised); covered prefixes are collapsed. Returns whether the advert
    /// changed; a change bumps the version.
    pub fn set_local_prefixes<'a>(&mut self, prefixes: impl IntoIterator<Item = &'a str>) -> bool {
        let me = self.names[self.me as usize].clone();
        let owned: Vec<String> = prefixes
            .into_iter()
            .filter(|p| {
                !p.starts_with(yard_data::topic::RESERVED)
                    || yard_data::topic::MESH_SYSTEM
                        .iter()
                        .any(|m| p.starts_with(m))
            })
            .map(str::to_string)
            .chain(std::iter::once(reply_prefix(&me)))
            .collect();
        let next: Vec<String> = collapse(&owned).into_iter().collect();
        let entry = self.db.get_mut(&self.me).expect("own entry");
        if entry.prefixes == next {
            return false;
        }
        entry.prefixes = next;
        entry.version += 1;
        true
    }

    /// A connection to `n` is up (`true`) or gone (`false`). Returns whether the advert changed.
    pub fn set_link(&mut self, n: NodeIdx, up: bool) -> bool {
        let changed = if up {
            self.live.insert(n)
        } else {
            self.live.remove(&n)
        };
        if changed {
            let entry = self.db.get_mut(&self.me).expect("own entry");
            entry.peers = self.live.clone();
            entry.version += 1;
        }
        changed
    }

    /// This endpoint's current advert.
    pub fn own_advert(&self) -> Advert {
        self.advert_of(self.me).expect("own entry")
    }

    fn advert_of(&self, i: NodeIdx) -> Option<Advert> {
        let e = self.db.get(&i)?;
        Some(Advert {
            origin: self.names[i as usize].to_string(),
            version: e.version,
            prefixes: e.prefixes.clone(),
            peers: e
                .peers
                .iter()
                .map(|p| self.names[*p as usize].to_string())
                .collect(),
        })
    }

    /// Every advert known, this endpoint's own first: what a new neighbour is sent.
    pub fn all_adverts(&self) -> Vec<Advert> {
        let mut ids: Vec<NodeIdx> = self.db.keys().copied().filter(|i| *i != self.me).collect();
        ids.sort_unstable();
        std::iter::once(self.me)
            .chain(ids)
            .filter_map(|i| self.advert_of(i))
            .collect()
    }

    /// Stores an advert from the mesh. Returns `true` when it is newer than the one known (then
    /// it should be flooded on and the tables recomputed). Adverts claiming to be this endpoint
    /// are ignored.
    pub fn receive(&mut self, a: &Advert) -> bool {
        let origin = self.intern(&a.origin);
        if origin == self.me {
            return false;
        }
        if self.db.get(&origin).is_some_and(|e| e.version >= a.version) {
            return false;
        }
        let peers = a.peers.iter().map(|p| self.intern(p)).collect();
        self.db.insert(
            origin,
            Entry {
                version: a.version,
                prefixes: collapse(&a.prefixes).into_iter().collect(),
                peers,
            },
        );
        true
    }

    fn edge(&self, a: NodeIdx, b: NodeIdx) -> bool {
        if a == self.me {
            return self.live.contains(&b);
        }
        if b == self.me {
            return self.live.contains(&a);
        }
        let lists = |x: NodeIdx, y: NodeIdx| self.db.get(&x).is_some_and(|e| e.peers.contains(&y));
        lists(a, b) && lists(b, a)
    }

    /// The confirmed neighbours of every node, each list sorted.
    fn graph(&self) -> HashMap<NodeIdx, Vec<NodeIdx>> {
        let mut adj: HashMap<NodeIdx, Vec<NodeIdx>> = HashMap::new();
        let mut consider = |a: NodeIdx, b: NodeIdx| {
            if a != b && self.edge(a, b) {
                adj.entry(a).or_default().push(b);
            }
        };
        for (&a, e) in &self.db {
            for &b in &e.peers {
                consider(a, b);
                consider(b, a);
            }
        }
        for &b in &self.live {
            consider(self.me, b);
            consider(b, self.me);
        }
        for list in adj.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        adj
    }

    /// Breadth-first distances from `root`; each node's parent is its neighbour one step closer
    /// to the root with the smallest endpoint id (ids, not this endpoint's interning order, so
    /// that every endpoint picks the same parent).
    fn tree(
        &self,
        adj: &HashMap<NodeIdx, Vec<NodeIdx>>,
        root: NodeIdx,
    ) -> HashMap<NodeIdx, NodeIdx> {
        let mut dist: HashMap<NodeIdx, u32> = HashMap::from([(root, 0)]);
        let mut order = vec![root];
        let mut queue = VecDeque::from([root]);
        while let Some(u) = queue.pop_front() {
            for &v in adj.get(&u).map(Vec::as_slice).unwrap_or(&[]) {
                if !dist.contains_key(&v) {
                    dist.insert(v, dist[&u] + 1);
                    order.push(v);
                    queue.push_back(v);
                }
            }
        }
        let mut parent = HashMap::new();
        for &v in &order[1..] {
            let p = adj[&v]
                .iter()
                .copied()
                .filter(|u| dist.get(u) == Some(&(dist[&v] - 1)))
                .min_by(|a, b| self.names[*a as usize].cmp(&self.names[*b as usize]))
                .expect("a BFS node has a parent");
            parent.insert(v, p);
        }
        parent
    }

    /// Recomputes reachability from the database; says who appeared and who became
    /// unreachable. Forwarding tables are rebuilt lazily, per origin, on first use.
    pub fn recompute(&mut self) -> Reachability {
        let adj = self.graph();
        let own_tree = self.tree(&adj, self.me);
        let reachable: BTreeSet<NodeIdx> = own_tree.keys().copied().collect();
        let change = Reachability {
            discovered: reachable.difference(&self.reachable).copied().collect(),
            unreachable: self.reachable.difference(&reachable).copied().collect(),
        };
        self.reachable = reachable;
        self.adj = adj;
        self.tables.clear();
        change
    }

    /// The forwarding table of publications from `origin`: each child of this endpoint in the
    /// origin's tree, with the prefixes of its whole subtree. Linear in the mesh size.
    fn build_table(&self, origin: NodeIdx) -> SubscriptionTable<NodeIdx> {
        let parent = self.tree(&self.adj, origin);
        let mut children: HashMap<NodeIdx, Vec<NodeIdx>> = HashMap::new();
        for (&child, &p) in &parent {
            children.entry(p).or_default().push(child);
        }
        let mut table = SubscriptionTable::new();
        for &child in children.get(&self.me).map(Vec::as_slice).unwrap_or(&[]) {
            // Everything under `child` in the origin's tree is reached through it.
            let mut prefixes: Vec<&String> = Vec::new();
            let mut stack = vec![child];
            while let Some(node) = stack.pop() {
                if let Some(e) = self.db.get(&node) {
                    prefixes.extend(e.prefixes.iter());
                }
                if let Some(cs) = children.get(&node) {
                    stack.extend(cs.iter().copied());
                }
            }
            let prefixes: Vec<String> = collapse(prefixes).into_iter().collect();
            table.subscribe(child, &prefixes);
        }
        table
    }

    /// The neighbours a publication from `origin` on `topic` goes to from here, never `except`
    /// (the neighbour it came from).
    pub fn next_hops(
        &mut self,
        origin: NodeIdx,
        topic: &str,
        except: Option<NodeIdx>,
        out: &mut Vec<NodeIdx>,
    ) {
        if origin != self.me && !self.reachable.contains(&origin) {
            return;
        }
        if !self.tables.contains_key(&origin) {
            let table = self.build_table(origin);
            self.tables.insert(origin, table);
        }
        self.tables[&origin].matches(topic, except, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A whole mesh simulated in memory: each node's `Routes`, adverts flooded to convergence.
    struct Mesh {
        nodes: BTreeMap<String, Routes>,
    }

    impl Mesh {
        fn new(n: usize, edges: &[(usize, usize)], subs: &[(usize, &str)]) -> Mesh {
            let name = |i: usize| format!("n{i}");
            let mut nodes: BTreeMap<String, Routes> = (0..n)
                .map(|i| (name(i), Routes::new(&name(i), 1)))
                .collect();
            for &(a, b) in edges {
                for (x, y) in [(a, b), (b, a)] {
                    let r = nodes.get_mut(&name(x)).unwrap();
                    let yi = r.intern(&name(y));
                    r.set_link(yi, true);
                }
            }
            for &(i, p) in subs {
                let r = nodes.get_mut(&name(i)).unwrap();
                let mut prefixes: Vec<String> = r.db[&r.me]
                    .prefixes
                    .iter()
                    .filter(|p| !p.starts_with("<$>"))
                    .cloned()
                    .collect();
                prefixes.push(p.to_string());
                r.set_local_prefixes(prefixes.iter().map(String::as_str));
            }
            let mut mesh = Mesh { nodes };
            mesh.converge();
            mesh
        }

        fn converge(&mut self) {
            loop {
                let all: Vec<Advert> = self.nodes.values().flat_map(|r| r.all_adverts()).collect();
                let mut changed = false;
                for r in self.nodes.values_mut() {
                    for a in &all {
                        changed |= r.receive(a);
                    }
                }
                if !changed {
                    break;
                }
            }
            for r in self.nodes.values_mut() {
                r.recompute();
            }
        }

        /// Delivers one publication hop by hop; returns how often each node received it.
        fn publish(&mut self, from: &str, topic: &str) -> BTreeMap<String, usize> {
            let mut got = BTreeMap::new();
            let mut queue = VecDeque::from([(from.to_string(), None::<String>)]);
            let mut hops = 0;
            while let Some((at, prev)) = queue.pop_front() {
                hops += 1;
                assert!(hops < 1000, "a loop");
                if prev.is_some() {
                    *got.entry(at.clone()).or_default() += 1;
                }
                let r = self.nodes.get_mut(&at).unwrap();
                let origin = r.lookup(from).unwrap();
                let except = prev.as_deref().and_then(|p| r.lookup(p));
                let mut out = Vec::new();
                r.next_hops(origin, topic, except, &mut out);
                for n in out {
                    queue.push_back((r.name(n).to_string(), Some(at.clone())));
                }
            }
            got
        }

        fn wants(&self, node: &str, topic: &str) -> bool {
            let r = &self.nodes[node];
            r.db[&r.me]
                .prefixes
                .iter()
                .any(|p| crate::subs::covers(p, topic))
        }
    }

    fn check_exactly_once(mesh: &mut Mesh, topic: &str) {
        let names: Vec<String> = mesh.nodes.keys().cloned().collect();
        for from in &names {
            let got = mesh.publish(from, topic);
            for node in &names {
                if node == from {
                    continue;
                }
                let n = got.get(node).copied().unwrap_or(0);
                // Nodes on the way may carry it without wanting it, but never twice.
                assert!(n <= 1, "{node} got {topic} from {from} {n} times");
                if mesh.wants(node, topic) {
                    assert_eq!(n, 1, "{node} wants {topic} from {from}");
                }
            }
        }
    }

    #[test]
    fn line_star_ring_and_full_mesh_deliver_exactly_once() {
        let subs = [(0, "/a"), (2, "/a/b"), (3, ""), (4, "/z")];
        let line = [(0, 1), (1, 2), (2, 3), (3, 4)];
        let star = [(0, 1), (0, 2), (0, 3), (0, 4)];
        let ring = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)];
        let full: Vec<(usize, usize)> = (0..5)
            .flat_map(|a| (a + 1..5).map(move |b| (a, b)))
            .collect();
        for edges in [&line[..], &star[..], &ring[..], &full[..]] {
            let mut mesh = Mesh::new(5, edges, &subs);
            for topic in ["/a/b/c", "/a/x", "/z", "/nothing"] {
                check_exactly_once(&mut mesh, topic);
            }
        }
    }

    #[test]
    fn traffic_only_goes_where_someone_subscribes() {
        let mut mesh = Mesh::new(4, &[(0, 1), (1, 2), (2, 3)], &[(3, "/x")]);
        let got = mesh.publish("n0", "/y");
        assert!(got.is_empty(), "{got:?}");
        let got = mesh.publish("n0", "/x/1");
        assert_eq!(got.values().sum::<usize>(), 3, "three hops along the line");
    }

    #[test]
    fn replies_reach_the_requester_alone() {
        let mut mesh = Mesh::new(5, &[(0, 1), (1, 2), (2, 0), (2, 3), (3, 4)], &[(4, "")]);
        let got = mesh.publish("n4", &format!("{}7", reply_prefix("n0")));
        assert_eq!(got.get("n0"), Some(&1));
        let path: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(path, ["n0", "n2", "n3"], "the shortest path only");
        // The "" subscriber on n4 does not attract anyone's replies.
        assert!(
            mesh.publish("n0", &format!("{}1", reply_prefix("n1")))
                .len()
                == 1
        );
    }

    #[test]
    fn losing_a_link_reports_unreachable_and_reroutes() {
        let mut mesh = Mesh::new(4, &[(0, 1), (1, 2), (2, 3), (3, 0)], &[(2, "/t")]);
        check_exactly_once(&mut mesh, "/t");
        // Cut 1-2: traffic from n1 now goes around through n0 and n3.
        for (x, y) in [("n1", "n2"), ("n2", "n1")] {
            let r = mesh.nodes.get_mut(x).unwrap();
            let yi = r.lookup(y).unwrap();
            r.set_link(yi, false);
        }
        mesh.converge();
        check_exactly_once(&mut mesh, "/t");
        assert_eq!(mesh.publish("n1", "/t").get("n2"), Some(&1));
        // Isolate n2 entirely: everyone else reports it unreachable.
        for (x, y) in [("n3", "n2"), ("n2", "n3")] {
            let r = mesh.nodes.get_mut(x).unwrap();
            let yi = r.lookup(y).unwrap();
            r.set_link(yi, false);
        }
        let r = mesh.nodes.get_mut("n0").unwrap();
        let before: Vec<NodeIdx> = r.reachable().collect();
        assert_eq!(before.len(), 3);
        mesh.converge();
        let r = &mesh.nodes["n0"];
        let n2 = r.lookup("n2").unwrap();
        assert!(!r.is_reachable(n2));
        assert!(mesh.publish("n0", "/t").is_empty());
    }

    #[test]
    fn recompute_reports_discovery_and_loss() {
        let mut r = Routes::new("me", 1);
        let a = r.intern("a");
        r.set_link(a, true);
        let change = r.recompute();
        assert_eq!(change.discovered, vec![a]);
        // b is behind a; it counts once a and b list each other.
        r.receive(&Advert {
            origin: "a".into(),
            version: 5,
            prefixes: vec![],
            peers: vec!["me".into(), "b".into()],
        });
        assert!(!r.receive(&Advert {
            origin: "a".into(),
            version: 4,
            prefixes: vec!["/old".into()],
            peers: vec![],
        }));
        r.receive(&Advert {
            origin: "b".into(),
            version: 1,
            prefixes: vec!["/b".into()],
            peers: vec!["a".into()],
        });
        let b = r.lookup("b").unwrap();
        assert_eq!(r.recompute().discovered, vec![b]);
        let mut hops = Vec::new();
        r.next_hops(r.me(), "/b/1", None, &mut hops);
        assert_eq!(hops, vec![a], "/b/1 goes to b through a");
        r.set_link(a, false);
        let change = r.recompute();
        assert_eq!(change.unreachable, vec![a, b]);
        hops.clear();
        r.next_hops(r.me(), "/b/1", None, &mut hops);
        assert!(hops.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 200,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(3),
            ..Default::default()
        })]
        /// Random connected graphs with cycles: exactly once to every subscriber, no loops.
        #[test]
        fn random_connected_graphs(
            n in 2usize..8,
            extra in proptest::collection::vec((0usize..8, 0usize..8), 0..12),
            tree in proptest::collection::vec(0usize..8, 7),
            subs in proptest::collection::vec((0usize..8, "[ab]{0,2}"), 0..8),
        ) {
            // A random spanning tree keeps the graph connected; extra edges add cycles.
            let mut edges: Vec<(usize, usize)> = (1..n).map(|i| (tree[i - 1] % i, i)).collect();
            edges.extend(extra.into_iter().map(|(a, b)| (a % n, b % n)).filter(|(a, b)| a != b));
            let subs: Vec<(usize, String)> = subs.into_iter().map(|(i, p)| (i % n, p)).collect();
            let subs_ref: Vec<(usize, &str)> = subs.iter().map(|(i, p)| (*i, p.as_str())).collect();
            let mut mesh = Mesh::new(n, &edges, &subs_ref);
            for topic in ["", "a", "ab", "b", "ba"] {
                check_exactly_once(&mut mesh, topic);
            }
        }
    }
}
