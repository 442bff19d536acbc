//! Topics: plain strings matched by raw prefix; `<$>` marks topics reserved for the system.

/// The marker of reserved topics. User publications may not contain it.
pub const RESERVED: &str = "<$>";
/// Status events of the local endpoint.
pub const STATUSES: &str = "<$>/local/data/statuses";
/// Error events of the local endpoint.
pub const ERRORS: &str = "<$>/local/data/errors";
/// Store change events of the local endpoint.
pub const STORE_EVENTS: &str = "<$>/local/data/store-events";
/// Reserved topics under this prefix stay on the endpoint that publishes them.
pub const LOCAL: &str = "<$>/local/";
/// Answers to requests travel under this prefix (see the fabric's request/reply).
pub const REPLIES: &str = "<$>/reply/";
/// Reserved topics that travel the mesh (system services such as stores); other reserved
/// subscriptions stay local to their endpoint.
pub const MESH_SYSTEM: &[&str] = &["<$>/store/", "<$>/ops/"];
/// Remote log records travel under this prefix, then the stream's name (`yard log STREAM`).
pub const LOG_ROOT: &str = "yard/logs/";
/// The longest topic accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic {0:?} is reserved: topics containing \"<$>\" are for the system, not for publications")]
    Reserved(String),
    #[error("topic is empty: give a topic such as \"/my/topic\"")]
    Empty,
    #[error("topic {0:?} is not a system topic (\"<$>/…\", not a reply address)")]
    NotSystem(String),
    #[error("topic is {0} bytes long; the limit is {MAX_TOPIC_LEN}")]
    TooLong(usize),
}

/// A log stream name that is not 1-128 letters, digits, `.`, `_` or `-` (not starting with `.`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log stream {0:?} must be 1-128 letters, digits, '.', '_' or '-', not starting with '.'")]
pub struct BadStream(pub String);

/// Checks a log stream name (it becomes a file name on the node that writes the stream).
pub fn check_stream(stream: &str) -> Result<(), BadStream> {
    let ok = !stream.is_empty()
        && stream.len() <= 128
        && !stream.starts_with('.')
        && stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(BadStream(stream.to_string()))
    }
}

impl TopicError {
    /// The Broker error-code name to report this as.
    pub fn code(&self) -> &'static str {
        "invalid_topic_key"
    }
}

/// Checks a topic a client wants to publish on.
pub fn check_publish(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(topic.len()));
    }
    if topic.contains(RESERVED) {
        return Err(TopicError::Reserved(topic.to_string()));
    }
    Ok(())
}

/// Checks a topic the system's own services publish on: a reserved topic (`<$>/…`) other
/// than the reply addresses, which only the request machinery uses.
pub fn check_system_publish(topic: &str) -> Result<(), TopicError> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(topic.len()));
    }
    if !topic.starts_with("<$>/") || topic.starts_with(REPLIES) {
        return Err(TopicError::NotSystem(topic.to_string()));
    }
    Ok(())
}

/// Checks a subscription prefix. Any prefix, the empty one and reserved ones included, is allowed
/// (a client may watch `<$>/local/data/statuses`), as long as it fits the length limit.
pub fn check_subscribe(prefix: &str) -> Result<(), TopicError> {
    if prefix.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(prefix.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_streams_are_file_names_of_their_own() {
        for ok in ["app", "app.v2", "a_b-c", &"x".repeat(128)] {
            assert_eq!(check_stream(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(129)] {
            assert_eq!(check_stream(bad), Err(BadStream(bad.to_string())), "{bad}");
        }
    }

    #[test]
    fn reserved_topics_are_refused_for_publication() {
        assert!(check_publish("/a/b").is_ok());
        assert!(matches!(
            check_publish("<$>/local/data/statuses"),
            Err(TopicError::Reserved(_))
        ));
        assert!(matches!(
            check_publish("store/<$>/data/master"),
            Err(TopicError::Reserved(_))
        ));
        assert_eq!(check_publish(""), Err(TopicError::Empty));
        assert!(check_subscribe("").is_ok());
        assert!(check_subscribe(STATUSES).is_ok());
    }
}
