//! One conformance suite, run against both backends through the master's state machine: every
//! operation's meaning, expiry, type clashes changing nothing, persistence across reopen
//! (SQLite), paging, snapshots and replace.

use std::collections::{BTreeMap, BTreeSet};

use yard_data::Value;
use yard_store::master::{MasterConfig, MasterCore, WriteBatch};
use yard_store::proto::{FromMaster, OpResult};
use yard_store::{BackendSpec, Effect, Entry, Mutation, Query, StoreError, Synchronous};

use yard_testkit::TempDir;

fn specs(dir: &TempDir) -> Vec<BackendSpec> {
    vec![
        BackendSpec::Memory,
        BackendSpec::Sqlite {
            path: dir.join("s.db"),
            synchronous: Synchronous::Normal,
            integrity_check: true,
        },
    ]
}

fn s(x: &str) -> Value {
    Value::String(x.into())
}

const NOW: i64 = 1_700_000_000_000_000_000;

fn master(spec: &BackendSpec) -> MasterCore {
    MasterCore::new(
        "users",
        "ep",
        spec.open("users").unwrap(),
        7,
        MasterConfig::default(),
    )
    .unwrap()
}

fn w(m: &mut MasterCore, op: Mutation) -> OpResult {
    w_at(m, op, NOW)
}

fn w_at(m: &mut MasterCore, op: Mutation, now: i64) -> OpResult {
    let (mut r, _) = m.write(
        &[WriteBatch {
            writer: None,
            first: 0,
            muts: vec![op],
        }],
        now,
    );
    r.pop().unwrap().pop().unwrap()
}

fn get(m: &mut MasterCore, key: Value) -> OpResult {
    m.read(&Query::Get { key }, NOW)
}

fn for_each_backend(tag: &str, f: impl Fn(&BackendSpec)) {
    let dir = TempDir::new(tag);
    for spec in specs(&dir) {
        f(&spec);
    }
}

#[test]
fn put_get_exists_erase_clear_keys() {
    for_each_backend("basic", |spec| {
        let mut m = master(spec);
        assert_eq!(
            w(
                &mut m,
                Mutation::Put {
                    key: s("a"),
                    value: Value::Count(1),
                    expiry: None
                }
            ),
            Ok(Value::None)
        );
        w(
            &mut m,
            Mutation::Put {
                key: Value::Count(2),
                value: s("two"),
                expiry: None,
            },
        )
        .unwrap();
        assert_eq!(get(&mut m, s("a")), Ok(Value::Count(1)), "{spec}");
        assert_eq!(
            m.read(&Query::Exists { key: s("a") }, NOW),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            m.read(&Query::Exists { key: s("zz") }, NOW),
            Ok(Value::Boolean(false))
        );
        assert_eq!(get(&mut m, s("zz")), Err(StoreError::NoSuchKey(s("zz"))));
        assert_eq!(
            m.read(&Query::Keys, NOW),
            Ok(Value::Set(BTreeSet::from([s("a"), Value::Count(2)])))
        );
        w(&mut m, Mutation::Erase { key: s("a") }).unwrap();
        assert!(matches!(get(&mut m, s("a")), Err(StoreError::NoSuchKey(_))));
        w(&mut m, Mutation::Clear).unwrap();
        assert_eq!(m.read(&Query::Keys, NOW), Ok(Value::Set(BTreeSet::new())));
        assert_eq!(m.count().unwrap(), 0);
    });
}

#[test]
fn put_unique_answers_whether_it_inserted() {
    for_each_backend("unique", |spec| {
        let mut m = master(spec);
        let pu = |v| Mutation::PutUnique {
            key: s("k"),
            value: Value::Count(v),
            expiry: None,
        };
        assert_eq!(w(&mut m, pu(1)), Ok(Value::Boolean(true)));
        assert_eq!(w(&mut m, pu(2)), Ok(Value::Boolean(false)));
        assert_eq!(get(&mut m, s("k")), Ok(Value::Count(1)));
    });
}

#[test]
fn increments_and_decrements_every_numeric_type() {
    for_each_backend("incr", |spec| {
        let mut m = master(spec);
        let inc = |k: &str, a| Mutation::Increment {
            key: s(k),
            amount: a,
            expiry: None,
        };
        let dec = |k: &str, a| Mutation::Decrement {
            key: s(k),
            amount: a,
            expiry: None,
        };
        // Missing keys start from zero of the amount's type.
        assert_eq!(w(&mut m, inc("c", Value::Count(5))), Ok(Value::Count(5)));
        assert_eq!(w(&mut m, dec("c", Value::Count(2))), Ok(Value::Count(3)));
        assert_eq!(
            w(&mut m, inc("i", Value::Integer(-4))),
            Ok(Value::Integer(-4))
        );
        assert_eq!(w(&mut m, inc("r", Value::Real(1.5))), Ok(Value::Real(1.5)));
        assert_eq!(w(&mut m, dec("r", Value::Real(0.5))), Ok(Value::Real(1.0)));
        assert_eq!(
            w(&mut m, inc("t", Value::Timespan(10))),
            Ok(Value::Timestamp(10))
        );
        w(
            &mut m,
            Mutation::Put {
                key: s("ts"),
                value: Value::Timestamp(100),
                expiry: None,
            },
        )
        .unwrap();
        assert_eq!(
            w(&mut m, dec("ts", Value::Timespan(40))),
            Ok(Value::Timestamp(60))
        );
        // Underflow of a count is refused and changes nothing.
        let e = w(&mut m, dec("c", Value::Count(9))).unwrap_err();
        assert_eq!(e.code(), "invalid_data");
        assert_eq!(get(&mut m, s("c")), Ok(Value::Count(3)));
    });
}

#[test]
fn type_clashes_answer_type_clash_and_change_nothing() {
    for_each_backend("clash", |spec| {
        let mut m = master(spec);
        w(
            &mut m,
            Mutation::Put {
                key: s("str"),
                value: s("x"),
                expiry: None,
            },
        )
        .unwrap();
        w(
            &mut m,
            Mutation::Put {
                key: s("n"),
                value: Value::Count(1),
                expiry: None,
            },
        )
        .unwrap();
        let seq = m.seq();
        let clashes = [
            Mutation::Increment {
                key: s("str"),
                amount: Value::Count(1),
                expiry: None,
            },
            Mutation::Increment {
                key: s("n"),
                amount: Value::Integer(1),
                expiry: None,
            },
            Mutation::Increment {
                key: s("new"),
                amount: s("x"),
                expiry: None,
            },
            Mutation::Append {
                key: s("n"),
                value: s("y"),
                expiry: None,
            },
            Mutation::Append {
                key: s("str"),
                value: Value::Count(1),
                expiry: None,
            },
            Mutation::Push {
                key: s("str"),
                value: Value::Count(1),
                expiry: None,
            },
            Mutation::Pop {
                key: s("n"),
                expiry: None,
            },
            Mutation::InsertInto {
                key: s("n"),
                index: Value::Count(1),
                value: None,
                expiry: None,
            },
            Mutation::RemoveFrom {
                key: s("str"),
                index: Value::Count(1),
                expiry: None,
            },
        ];
        for op in clashes {
            let name = op.name();
            assert_eq!(
                w(&mut m, op).unwrap_err().code(),
                "type_clash",
                "{name} on {spec}"
            );
        }
        assert_eq!(m.seq(), seq, "a clash must not produce an effect");
        assert_eq!(get(&mut m, s("str")), Ok(s("x")));
        assert_eq!(get(&mut m, s("n")), Ok(Value::Count(1)));
        assert!(matches!(
            get(&mut m, s("new")),
            Err(StoreError::NoSuchKey(_))
        ));
    });
}

#[test]
fn containers_append_insert_remove_push_pop_and_index_lookup() {
    for_each_backend("containers", |spec| {
        let mut m = master(spec);
        w(
            &mut m,
            Mutation::Append {
                key: s("log"),
                value: s("ab"),
                expiry: None,
            },
        )
        .unwrap();
        w(
            &mut m,
            Mutation::Append {
                key: s("log"),
                value: s("cd"),
                expiry: None,
            },
        )
        .unwrap();
        assert_eq!(get(&mut m, s("log")), Ok(s("abcd")));
        // Sets.
        let ins = |k: &str, i, v| Mutation::InsertInto {
            key: s(k),
            index: i,
            value: v,
            expiry: None,
        };
        w(&mut m, ins("set", Value::Count(1), None)).unwrap();
        w(&mut m, ins("set", Value::Count(2), None)).unwrap();
        w(
            &mut m,
            Mutation::RemoveFrom {
                key: s("set"),
                index: Value::Count(1),
                expiry: None,
            },
        )
        .unwrap();
        assert_eq!(
            get(&mut m, s("set")),
            Ok(Value::Set(BTreeSet::from([Value::Count(2)])))
        );
        let idx = |k: &str, i| Query::GetIndexFromValue {
            key: s(k),
            index: i,
        };
        assert_eq!(
            m.read(&idx("set", Value::Count(2)), NOW),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            m.read(&idx("set", Value::Count(1)), NOW),
            Ok(Value::Boolean(false))
        );
        // Tables.
        w(&mut m, ins("tab", s("a"), Some(Value::Count(1)))).unwrap();
        w(&mut m, ins("tab", s("b"), Some(Value::Count(2)))).unwrap();
        w(
            &mut m,
            Mutation::RemoveFrom {
                key: s("tab"),
                index: s("a"),
                expiry: None,
            },
        )
        .unwrap();
        assert_eq!(
            get(&mut m, s("tab")),
            Ok(Value::Table(BTreeMap::from([(s("b"), Value::Count(2))])))
        );
        assert_eq!(m.read(&idx("tab", s("b")), NOW), Ok(Value::Count(2)));
        assert!(matches!(
            m.read(&idx("tab", s("a")), NOW),
            Err(StoreError::NoSuchKey(_))
        ));
        // Vectors.
        w(
            &mut m,
            Mutation::Push {
                key: s("vec"),
                value: Value::Count(1),
                expiry: None,
            },
        )
        .unwrap();
        w(
            &mut m,
            Mutation::Push {
                key: s("vec"),
                value: Value::Count(3),
                expiry: None,
            },
        )
        .unwrap();
        w(&mut m, ins("vec", Value::Count(1), Some(Value::Count(2)))).unwrap();
        assert_eq!(
            get(&mut m, s("vec")),
            Ok(Value::Vector(vec![
                Value::Count(1),
                Value::Count(2),
                Value::Count(3)
            ]))
        );
        assert_eq!(
            m.read(&idx("vec", Value::Count(2)), NOW),
            Ok(Value::Count(3))
        );
        assert_eq!(
            w(
                &mut m,
                Mutation::Pop {
                    key: s("vec"),
                    expiry: None
                }
            ),
            Ok(Value::Count(3))
        );
        w(
            &mut m,
            Mutation::RemoveFrom {
                key: s("vec"),
                index: Value::Count(0),
                expiry: None,
            },
        )
        .unwrap();
        assert_eq!(
            get(&mut m, s("vec")),
            Ok(Value::Vector(vec![Value::Count(2)]))
        );
        assert_eq!(
            w(&mut m, ins("vec", Value::Count(9), Some(Value::Count(0))))
                .unwrap_err()
                .code(),
            "invalid_data"
        );
    });
}

#[test]
fn expiry_removes_keys_and_broadcasts_expire() {
    for_each_backend("expiry", |spec| {
        let mut m = master(spec);
        let sec = 1_000_000_000;
        w(
            &mut m,
            Mutation::Put {
                key: s("a"),
                value: Value::Count(1),
                expiry: Some(sec),
            },
        )
        .unwrap();
        w(
            &mut m,
            Mutation::Put {
                key: s("b"),
                value: Value::Count(1),
                expiry: Some(3 * sec),
            },
        )
        .unwrap();
        w(
            &mut m,
            Mutation::Put {
                key: s("keep"),
                value: Value::Count(1),
                expiry: None,
            },
        )
        .unwrap();
        // An increment without expiry keeps the key's; a put without one clears it.
        w(
            &mut m,
            Mutation::Increment {
                key: s("b"),
                amount: Value::Count(1),
                expiry: None,
            },
        )
        .unwrap();
        w(
            &mut m,
            Mutation::Put {
                key: s("a2"),
                value: Value::Count(1),
                expiry: Some(sec),
            },
        )
        .unwrap();
        w(
            &mut m,
            Mutation::Put {
                key: s("a2"),
                value: Value::Count(2),
                expiry: None,
            },
        )
        .unwrap();
        assert_eq!(m.expire(NOW + sec / 2), None);
        let Some(FromMaster::Update { effects, .. }) = m.expire(NOW + sec) else {
            panic!("a is due")
        };
        assert_eq!(effects, vec![Effect::Expire { key: s("a") }]);
        assert!(matches!(get(&mut m, s("a")), Err(StoreError::NoSuchKey(_))));
        assert_eq!(get(&mut m, s("a2")), Ok(Value::Count(2)));
        // A key past its expiry reads as absent even before the timer sweeps it.
        assert!(matches!(
            m.read(&Query::Get { key: s("b") }, NOW + 4 * sec),
            Err(StoreError::NoSuchKey(_))
        ));
        assert!(m.expire(NOW + 4 * sec).is_some());
        assert_eq!(
            m.read(&Query::Keys, NOW),
            Ok(Value::Set(BTreeSet::from([s("a2"), s("keep")])))
        );
    });
}

#[test]
fn sqlite_keeps_everything_across_reopen_and_refuses_another_stores_file() {
    let dir = TempDir::new("reopen");
    let path = dir.join("db.sqlite");
    let spec = BackendSpec::Sqlite {
        path: path.clone(),
        synchronous: Synchronous::Full,
        integrity_check: true,
    };
    {
        let mut m = master(&spec);
        for i in 0..100u64 {
            w(
                &mut m,
                Mutation::Put {
                    key: Value::Count(i),
                    value: Value::Count(i * i),
                    expiry: Some(3_600_000_000_000),
                },
            )
            .unwrap();
        }
    }
    let mut m = master(&spec);
    assert_eq!(m.count().unwrap(), 100);
    assert_eq!(get(&mut m, Value::Count(9)), Ok(Value::Count(81)));
    // Expiries survive too.
    assert!(m.expire(NOW + 3_600_000_000_001).is_some());
    assert_eq!(m.count().unwrap(), 0);
    let err = spec
        .open("other")
        .err()
        .expect("another store's file is refused");
    assert!(err.to_string().contains("holds store \"users\""), "{err}");
    std::fs::write(
        dir.join("junk.db"),
        b"this is not a database, just text, long enough to matter".repeat(100),
    )
    .unwrap();
    let junk = BackendSpec::Sqlite {
        path: dir.join("junk.db"),
        synchronous: Synchronous::Normal,
        integrity_check: true,
    };
    let err = junk.open("users").err().expect("junk is refused");
    assert!(err.to_string().contains("junk.db"), "{err}");
}

#[test]
fn a_retried_write_batch_is_applied_once() {
    for_each_backend("dedup", |spec| {
        let mut m = master(spec);
        let batch = WriteBatch {
            writer: Some("clone-1".into()),
            first: 1,
            muts: vec![
                Mutation::Increment {
                    key: s("n"),
                    amount: Value::Count(1),
                    expiry: None,
                },
                Mutation::PutUnique {
                    key: s("u"),
                    value: Value::Count(1),
                    expiry: None,
                },
            ],
        };
        let (r1, _) = m.write(std::slice::from_ref(&batch), NOW);
        let (r2, u2) = m.write(std::slice::from_ref(&batch), NOW);
        assert_eq!(r1, r2, "the retry gets the first answers");
        assert_eq!(u2, None, "and changes nothing");
        assert_eq!(get(&mut m, s("n")), Ok(Value::Count(1)));
    });
}

#[test]
fn pages_snapshots_and_replace_cover_everything() {
    for_each_backend("pages", |spec| {
        let mut backend = spec.open("pages").unwrap();
        backend.begin().unwrap();
        for i in 0..2500u64 {
            backend
                .apply(&Effect::Put {
                    key: Value::Count(i),
                    value: s("v"),
                    expiry: None,
                })
                .unwrap();
        }
        backend.commit().unwrap();
        let mut seen = BTreeSet::new();
        let mut after: Option<Value> = None;
        loop {
            let page = backend.page(after.as_ref(), 1000).unwrap();
            if page.is_empty() {
                break;
            }
            after = Some(page.last().unwrap().0.clone());
            for (k, _) in page {
                assert!(seen.insert(k), "a key appears twice");
            }
        }
        assert_eq!(seen.len(), 2500);
        // A snapshot does not see writes made after it.
        let mut snap = backend.snapshot().unwrap();
        backend.begin().unwrap();
        backend.apply(&Effect::Clear).unwrap();
        backend.commit().unwrap();
        let mut n = 0;
        loop {
            let p = snap.next_page(700).unwrap();
            if p.is_empty() {
                break;
            }
            n += p.len();
        }
        assert_eq!(n, 2500);
        backend
            .replace(vec![(
                s("x"),
                Entry {
                    value: Value::Count(1),
                    expiry: None,
                },
            )])
            .unwrap();
        assert_eq!(backend.count().unwrap(), 1);
    });
}
