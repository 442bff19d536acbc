//! Property tests: arbitrary nested values survive the JSON (at nanosecond precision) and binary
//! encodings unchanged, and the literal syntax too.

use proptest::prelude::*;
use yard_data::json::{self, JsonOptions};
use yard_data::time::TimestampPrecision;
use yard_data::{binary, literal, Address, Port, Protocol, Subnet, Value};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Boolean),
        any::<u64>().prop_map(Value::Count),
        any::<i64>().prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Real),
        any::<String>().prop_map(Value::String),
        any::<[u8; 16]>().prop_map(|b| Value::Address(Address(b))),
        any::<[u8; 4]>().prop_map(|b| Value::Address(Address::from(std::net::IpAddr::from(b)))),
        (any::<[u8; 16]>(), 0u8..=128)
            .prop_map(|(b, l)| Value::Subnet(Subnet::from_raw(Address(b), l))),
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(b, l)| Value::Subnet(
            Subnet::new(Address::from(std::net::IpAddr::from(b)), l).unwrap()
        )),
        (any::<u16>(), 0u8..4).prop_map(|(n, p)| Value::Port(Port {
            number: n,
            protocol: Protocol::from_code(p).unwrap()
        })),
        // The whole i64 nanosecond range (years 1677 to 2262), less one second at each end.
        (-9_223_372_035i64..9_223_372_035)
            .prop_flat_map(|s| (Just(s), 0i64..1_000_000_000))
            .prop_map(|(s, f)| Value::Timestamp(s * 1_000_000_000 + f)),
        any::<i64>().prop_map(Value::Timespan),
        "[A-Za-z_][A-Za-z0-9_]{0,8}(::[A-Za-z_][A-Za-z0-9_]{0,8})?".prop_map(Value::Enum),
        any::<String>().prop_map(Value::Enum),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Vector),
            prop::collection::btree_set(inner.clone(), 0..8).prop_map(Value::Set),
            prop::collection::btree_map(inner.clone(), inner, 0..8).prop_map(Value::Table),
        ]
    })
}

fn seed() -> proptest::test_runner::RngSeed {
    match std::env::var("PROPTEST_RNG_SEED").as_deref() {
        Ok("random") => proptest::test_runner::RngSeed::Random,
        _ => proptest::test_runner::RngSeed::Fixed(0x5917_c4a2_d00d),
    }
}

const NANOS: JsonOptions = JsonOptions {
    timestamp_precision: TimestampPrecision::Nanos,
};

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        // Deterministic in CI; explore with PROPTEST_RNG_SEED=random and more PROPTEST_CASES.
        rng_seed: seed(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn json_round_trip(v in value()) {
        let text = json::encode_value(&v, NANOS);
        serde_json::from_str::<serde_json::Value>(&text).expect("always valid JSON");
        prop_assert_eq!(json::decode_value_bytes(text.as_bytes()).unwrap(), v);
    }

    #[test]
    fn binary_round_trip(v in value()) {
        prop_assert_eq!(binary::decode(&binary::encode(&v)).unwrap(), v);
    }

    #[test]
    fn literal_round_trip(v in value()) {
        let text = literal::format(&v);
        let back = literal::parse(&text).map_err(|e| TestCaseError::fail(e.render(&text)))?;
        prop_assert_eq!(back, v);
    }

    /// Whatever the streaming decoder accepts, the reference decoder decodes identically; here on
    /// valid encodings and on random corruptions of them.
    #[test]
    fn fast_decoder_agrees_with_the_reference(
        v in value(),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut bytes = json::encode_data_message("/t", &v, NANOS).into_bytes();
        prop_assert_eq!(json::fast_decode_data_message(&bytes).map(|m| m.value), Some(v));
        for (at, b) in cuts {
            let i = at.index(bytes.len());
            const SUBST: &[u8] = br#" {}[],:\"0123456789.-eE@atdnruflsTx"#;
            bytes[i] = SUBST[b as usize % SUBST.len()];
        }
        if let Some(fast) = json::fast_decode_data_message(&bytes) {
            prop_assert_eq!(json::reference_decode_data_message(&bytes).ok(), Some(fast));
        }
    }

    #[test]
    fn binary_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = binary::decode(&bytes);
    }

    #[test]
    fn json_decoder_never_panics(s in ".{0,64}") {
        let _ = json::decode_data_message(s.as_bytes());
    }
}
