//! The subscription table: which subscribers a topic reaches (no I/O, no clocks).
//!
//! Matching is Broker's raw string prefix (`/foo` matches `/foobar`; the empty prefix matches
//! everything). Each subscriber's prefixes are collapsed to the ones not covered by another of its
//! own (subscribing `/a` and `/a/b` keeps only `/a` in the table, and unsubscribing `/a` brings
//! `/a/b` back), so a topic matches at most one entry per subscriber and every recipient list is
//! exactly-once without a dedup pass.
//!
//! Reserved topics (starting with `<$>`) are matched only by prefixes that start with `<$>`
//! themselves: subscribing to everything (`""`) means every user topic, not the system's replies
//! and statuses. [`covers`] is the one definition of that rule.
//!
//! Lookup cost is one hash probe per distinct prefix *length* in the table, not per prefix.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

use yard_data::topic::RESERVED;

/// Whether subscribing to `prefix` receives `topic`: raw prefix matching, except that reserved
/// topics need a prefix at least as long as the `<$>` marker.
pub fn covers(prefix: &str, topic: &str) -> bool {
    topic.starts_with(prefix) && (prefix.len() >= RESERVED.len() || !topic.starts_with(RESERVED))
}

/// A subscription table keyed by subscriber `K`.
#[derive(Debug)]
pub struct SubscriptionTable<K> {
    /// Effective prefix -> subscribers holding it.
    by_prefix: HashMap<Box<str>, Vec<K>>,
    /// Prefix length -> number of distinct effective prefixes of that length.
    lengths: BTreeMap<usize, usize>,
    /// Per subscriber: every prefix it asked for (raw) and the collapsed set in the table.
    subscribers: HashMap<K, Subscriber>,
}

#[derive(Debug, Default)]
struct Subscriber {
    raw: BTreeSet<String>,
    effective: BTreeSet<String>,
}

/// The minimal prefixes of `raw`: those no other member [`covers`].
pub fn collapse<'a>(raw: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    let sorted: BTreeSet<&String> = raw.into_iter().collect();
    let mut out: BTreeSet<String> = BTreeSet::new();
    // In sorted order a prefix comes before everything it covers; `chain` holds the kept entries
    // that are prefixes of the current one.
    let mut chain: Vec<&String> = Vec::new();
    for p in sorted {
        while chain.last().is_some_and(|l| !p.starts_with(l.as_str())) {
            chain.pop();
        }
        if chain.iter().any(|l| covers(l, p)) {
            continue;
        }
        out.insert(p.clone());
        chain.push(p);
    }
    out
}

impl<K: Copy + Eq + Hash> Default for SubscriptionTable<K> {
    fn default() -> Self {
        SubscriptionTable {
            by_prefix: HashMap::new(),
            lengths: BTreeMap::new(),
            subscribers: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> SubscriptionTable<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds prefixes for `who`.
    pub fn subscribe<S: AsRef<str>>(&mut self, who: K, prefixes: &[S]) {
        let sub = self.subscribers.entry(who).or_default();
        for p in prefixes {
            sub.raw.insert(p.as_ref().to_string());
        }
        self.refresh(who);
    }

    /// How many prefixes `who` would hold with `more` added.
    pub fn count_with<S: AsRef<str>>(&self, who: K, more: &[S]) -> usize {
        let held = self.subscribers.get(&who).map(|s| &s.raw);
        let new = more
            .iter()
            .filter(|p| held.is_none_or(|h| !h.contains(p.as_ref())))
            .map(|p| p.as_ref())
            .collect::<std::collections::HashSet<&str>>()
            .len();
        held.map_or(0, |h| h.len()) + new
    }

    /// Removes prefixes of `who` (ones it does not hold are ignored).
    pub fn unsubscribe<S: AsRef<str>>(&mut self, who: K, prefixes: &[S]) {
        if let Some(sub) = self.subscribers.get_mut(&who) {
            for p in prefixes {
                sub.raw.remove(p.as_ref());
            }
            self.refresh(who);
        }
    }

    /// Forgets `who` entirely.
    pub fn remove(&mut self, who: K) {
        if let Some(sub) = self.subscribers.get_mut(&who) {
            sub.raw.clear();
            self.refresh(who);
        }
    }

    /// The prefixes `who` asked for, in order.
    pub fn prefixes_of(&self, who: K) -> impl Iterator<Item = &str> {
        self.subscribers
            .get(&who)
            .into_iter()
            .flat_map(|s| s.raw.iter().map(String::as_str))
    }

    /// Every distinct effective prefix in the table.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.by_prefix.keys().map(|p| &**p)
    }

    /// The number of distinct prefixes in the table.
    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// Appends every subscriber whose prefix matches `topic`, each once, skipping `except`.
    pub fn matches(&self, topic: &str, except: Option<K>, out: &mut Vec<K>) {
        let shortest = if topic.starts_with(RESERVED) {
            RESERVED.len()
        } else {
            0
        };
        for &len in self.lengths.range(shortest..).map(|(l, _)| l) {
            if len > topic.len() {
                break;
            }
            if !topic.is_char_boundary(len) {
                continue;
            }
            if let Some(subs) = self.by_prefix.get(&topic[..len]) {
                out.extend(subs.iter().copied().filter(|s| Some(*s) != except));
            }
        }
    }

    fn refresh(&mut self, who: K) {
        let Some(sub) = self.subscribers.get_mut(&who) else {
            return;
        };
        let next = collapse(&sub.raw);
        let removed: Vec<String> = sub.effective.difference(&next).cloned().collect();
        let added: Vec<String> = next.difference(&sub.effective).cloned().collect();
        sub.effective = next;
        if sub.raw.is_empty() {
            self.subscribers.remove(&who);
        }
        for p in removed {
            let now_empty = match self.by_prefix.get_mut(p.as_str()) {
                Some(list) => {
                    list.retain(|s| *s != who);
                    list.is_empty()
                }
                None => false,
            };
            if now_empty {
                self.by_prefix.remove(p.as_str());
                if let Some(n) = self.lengths.get_mut(&p.len()) {
                    *n -= 1;
                    if *n == 0 {
                        self.lengths.remove(&p.len());
                    }
                }
            }
        }
        for p in added {
            let len = p.len();
            let list = self.by_prefix.entry(p.into_boxed_str()).or_default();
            if list.is_empty() {
                *self.lengths.entry(len).or_default() += 1;
            }
            list.push(who);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(t: &SubscriptionTable<u32>, topic: &str, except: Option<u32>) -> Vec<u32> {
        let mut out = Vec::new();
        t.matches(topic, except, &mut out);
        out.sort();
        out
    }

    #[test]
    fn raw_prefix_semantics() {
        let mut t = SubscriptionTable::new();
        t.subscribe(1, &["/foo"]);
        t.subscribe(2, &[""]);
        t.subscribe(3, &["/foo/bar/baz"]);
        assert_eq!(hits(&t, "/foobar", None), [1, 2]);
        assert_eq!(hits(&t, "/fo", None), [2]);
        assert_eq!(hits(&t, "/foo/bar/baz/q", None), [1, 2, 3]);
        assert_eq!(hits(&t, "/foo/bar/baz/q", Some(2)), [1, 3]);
    }

    #[test]
    fn covered_prefixes_collapse_and_come_back() {
        let mut t = SubscriptionTable::new();
        t.subscribe(1, &["/a/b", "/a", "/a/c"]);
        assert_eq!(t.len(), 1);
        assert_eq!(hits(&t, "/a/b/x", None), [1], "exactly once");
        t.unsubscribe(1, &["/a"]);
        assert_eq!(t.len(), 2);
        assert_eq!(hits(&t, "/a/b/x", None), [1]);
        assert_eq!(hits(&t, "/a/x", None), Vec::<u32>::new());
        t.remove(1);
        assert!(t.is_empty());
        assert!(t.lengths.is_empty());
        assert!(t.subscribers.is_empty());
    }

    #[test]
    fn shared_prefixes_keep_other_subscribers() {
        let mut t = SubscriptionTable::new();
        t.subscribe(1, &["/x"]);
        t.subscribe(2, &["/x"]);
        t.unsubscribe(1, &["/x"]);
        assert_eq!(hits(&t, "/x", None), [2]);
        assert_eq!(t.prefixes_of(2).collect::<Vec<_>>(), ["/x"]);
    }

    #[test]
    fn reserved_topics_need_a_reserved_prefix() {
        let mut t = SubscriptionTable::new();
        t.subscribe(1, &[""]);
        t.subscribe(2, &["<$>/local/data/", "<"]);
        t.subscribe(3, &["", "<$>/reply/"]);
        assert_eq!(hits(&t, "<$>/local/data/statuses", None), [2]);
        assert_eq!(hits(&t, "<$>/reply/e/1", None), [3]);
        assert_eq!(hits(&t, "/user", None), [1, 3]);
        assert_eq!(hits(&t, "<x", None), [1, 2, 3]);
    }

    #[test]
    fn multibyte_topics_do_not_split_characters() {
        let mut t = SubscriptionTable::new();
        t.subscribe(1, &["é"]);
        t.subscribe(2, &["x"]);
        assert_eq!(hits(&t, "é/1", None), [1]);
        assert_eq!(hits(&t, "ü", None), Vec::<u32>::new());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 1024,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(7),
            ..Default::default()
        })]
        /// The table agrees with the definition: a subscriber gets a topic once when any of its
        /// prefixes is a prefix of the topic.
        #[test]
        fn agrees_with_the_definition(
            subs in proptest::collection::vec((0u32..5, "(<\\$>)?[ab/]{0,4}"), 0..20),
            unsubs in proptest::collection::vec((0u32..5, "(<\\$>)?[ab/]{0,4}"), 0..10),
            topic in "(<\\$>)?[ab/]{0,6}",
        ) {
            let mut t = SubscriptionTable::new();
            let mut model: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
            for (who, p) in &subs {
                t.subscribe(*who, &[p]);
                model.entry(*who).or_default().insert(p.clone());
            }
            for (who, p) in &unsubs {
                t.unsubscribe(*who, &[p]);
                if let Some(m) = model.get_mut(who) { m.remove(p); }
            }
            let expected: Vec<u32> = model.iter()
                .filter(|(_, ps)| ps.iter().any(|p| {
                    topic.starts_with(p.as_str())
                        && (p.starts_with("<$>") || !topic.starts_with("<$>"))
                }))
                .map(|(w, _)| *w).collect();
            let mut got = Vec::new();
            t.matches(&topic, None, &mut got);
            let mut sorted = got.clone();
            sorted.sort();
            proptest::prop_assert_eq!(got.len(), sorted.len());
            proptest::prop_assert_eq!(sorted, expected);
        }
    }
}
