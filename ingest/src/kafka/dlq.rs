//! The dead-letter topic: invalid messages are produced there with their
//! original bytes and headers saying why and where they came from.

use std::collections::HashMap;
use std::time::Duration;

use keyshift_store::{RejectedRecord, Source};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::kafka_kind;
use crate::{IngestError, Result};

/// Dead-letter header: why the message was refused.
pub const ERROR_HEADER: &str = "keyshift-error";
/// Dead-letter header: the topic the message was read from.
pub const SOURCE_TOPIC_HEADER: &str = "keyshift-source-topic";
/// Dead-letter header: its partition.
pub const SOURCE_PARTITION_HEADER: &str = "keyshift-source-partition";
/// Dead-letter header: its offset.
pub const SOURCE_OFFSET_HEADER: &str = "keyshift-source-offset";

/// Produces the original bytes of each rejected Kafka message to
/// `dlq_topic`, waiting until the broker acknowledged every one.
pub(super) async fn send_dead_letters(
    dlq: &FutureProducer,
    dlq_topic: &str,
    source_topic: &str,
    rejected: &[RejectedRecord],
    originals: &HashMap<(i32, i64), Vec<u8>>,
) -> Result<()> {
    let mut sends = Vec::new();
    for r in rejected {
        let Source::Kafka {
            partition, offset, ..
        } = &r.source
        else {
            continue;
        };
        let Some(payload) = originals.get(&(*partition, *offset)) else {
            continue;
        };
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: ERROR_HEADER,
                value: Some(r.error.as_str()),
            })
            .insert(Header {
                key: SOURCE_TOPIC_HEADER,
                value: Some(source_topic),
            })
            .insert(Header {
                key: SOURCE_PARTITION_HEADER,
                value: Some(&partition.to_string()),
            })
            .insert(Header {
                key: SOURCE_OFFSET_HEADER,
                value: Some(&offset.to_string()),
            });
        let record = FutureRecord::<(), [u8]>::to(dlq_topic)
            .payload(payload.as_slice())
            .headers(headers);
        sends.push(dlq.send(record, Duration::from_secs(30)));
    }
    for res in futures::future::join_all(sends).await {
        res.map_err(|(e, _)| IngestError::Kafka {
            topic: dlq_topic.to_owned(),
            message: format!("producing a dead letter: {e}"),
            kind: kafka_kind(&e),
        })?;
    }
    Ok(())
}
