//! Golden vectors from Broker and Zeek: decode, then re-encode byte for byte (reals excepted,
//! where Broker's `%f` output is the bug we fix).

use yard_data::json::{self, JsonOptions};
use yard_data::zeek::Event;
use yard_data::{binary, Value};

/// zeek `Serializer.cc` TEST "roundtrip": `Supervisor::node_status("TEST", 42)` with a network
/// timestamp of 0 in its metadata.
const NODE_STATUS: &str = r#"{"@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"Supervisor::node_status"},{"@data-type":"vector","data":[{"@data-type":"string","data":"TEST"},{"@data-type":"count","data":42}]},{"@data-type":"vector","data":[{"@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"timestamp","data":"1970-01-01T00:00:00.000"}]}]}]}]}"#;

#[test]
fn node_status_event_decodes_and_reencodes_byte_for_byte() {
    let v = json::decode_value_bytes(NODE_STATUS.as_bytes()).unwrap();
    let ev = Event::from_value(&v).expect("event layout");
    assert_eq!(ev.name, "Supervisor::node_status");
    assert_eq!(ev.args, vec![Value::string("TEST"), Value::Count(42)]);
    assert_eq!(ev.metadata, Some(vec![(1, Value::Timestamp(0))]));
    assert_eq!(json::encode_value(&v, JsonOptions::default()), NODE_STATUS);
    assert_eq!(
        json::encode_value(&ev.to_value(), JsonOptions::default()),
        NODE_STATUS
    );
    assert_eq!(binary::decode(&binary::encode(&v)).unwrap(), v);
}

/// The vector of Broker's `web-socket/unencrypted` test, as a data message. Broker writes the
/// real as `-7.500000`; we write `-7.5`. The `\u003c` escapes in the input come out as `<`.
#[test]
fn broker_round_trip_vector() {
    let input = r#"{"type":"data-message","topic":"/test","@data-type":"vector","data":[{"@data-type":"integer","data":-9223372036854775808},{"@data-type":"integer","data":9223372036854775807},{"@data-type":"count","data":18446744073709551615},{"@data-type":"string","data":"Hello \u003cBroker\u003e!"},{"@data-type":"none","data":{}},{"@data-type":"boolean","data":true},{"@data-type":"real","data":-7.500000},{"@data-type":"timespan","data":"15ms"},{"@data-type":"enum-value","data":"foo"},{"@data-type":"address","data":"2001:db8::"},{"@data-type":"subnet","data":"255.255.255.0/24"},{"@data-type":"port","data":"8080/tcp"},{"@data-type":"set","data":[{"@data-type":"string","data":"foo"},{"@data-type":"string","data":"bar"}]},{"@data-type":"table","data":[{"key":{"@data-type":"string","data":"first-name"},"value":{"@data-type":"string","data":"John"}},{"key":{"@data-type":"string","data":"last-name"},"value":{"@data-type":"string","data":"Doe"}}]}]}"#;
    let expected = r#"{"type":"data-message","topic":"/test","@data-type":"vector","data":[{"@data-type":"integer","data":-9223372036854775808},{"@data-type":"integer","data":9223372036854775807},{"@data-type":"count","data":18446744073709551615},{"@data-type":"string","data":"Hello <Broker>!"},{"@data-type":"none","data":{}},{"@data-type":"boolean","data":true},{"@data-type":"real","data":-7.5},{"@data-type":"timespan","data":"15ms"},{"@data-type":"enum-value","data":"foo"},{"@data-type":"address","data":"2001:db8::"},{"@data-type":"subnet","data":"255.255.255.0/24"},{"@data-type":"port","data":"8080/tcp"},{"@data-type":"set","data":[{"@data-type":"string","data":"bar"},{"@data-type":"string","data":"foo"}]},{"@data-type":"table","data":[{"key":{"@data-type":"string","data":"first-name"},"value":{"@data-type":"string","data":"John"}},{"key":{"@data-type":"string","data":"last-name"},"value":{"@data-type":"string","data":"Doe"}}]}]}"#;
    let msg = json::decode_data_message(input.as_bytes()).unwrap();
    assert_eq!(msg.topic, "/test");
    let out = json::encode_data_message(&msg.topic, &msg.value, JsonOptions::default());
    assert_eq!(out, expected);
    // And our own output is a fixed point.
    let again = json::decode_data_message(out.as_bytes()).unwrap();
    assert_eq!(
        json::encode_data_message(&again.topic, &again.value, JsonOptions::default()),
        expected
    );
}

#[test]
fn ack_and_error_shapes() {
    assert_eq!(
        json::encode_ack("abc-websocket-1", "0.1.0"),
        r#"{"type":"ack","endpoint":"abc-websocket-1","version":"0.1.0"}"#
    );
    assert_eq!(
        json::encode_error("deserialization_failed", "input #1: \"x\""),
        r#"{"type":"error","code":"deserialization_failed","context":"input #1: \"x\""}"#
    );
}
