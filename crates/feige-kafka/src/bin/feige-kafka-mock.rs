//! `feige-kafka-mock TOPIC [PARTITIONS]`: librdkafka's mock Kafka cluster as a process, for
//! end-to-end tests that need a crashed consumer's partitions to move to the rest of its group
//! (tansu 0.6's group coordinator does not: after a member's session times out it re-issues
//! the old generation's assignment, so the dead member's partitions stay unconsumed).
//!
//! Prints `kafka://host:port` on the first line of stdout, then serves until stdin closes or the
//! process is killed. The mock implements the Kafka protocol over TCP on 127.0.0.1 (produce,
//! fetch, consumer groups with session timeouts, offset commits); the topic is created up
//! front because the mock does not serve CreateTopics.

use rdkafka::mocking::MockCluster;
use std::io::{Read, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().ok_or("usage: feige-kafka-mock TOPIC [PARTITIONS]")?;
    let partitions: i32 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(12);
    let mock = MockCluster::new(1)?;
    mock.create_topic(&topic, partitions, 1)?;
    let mut out = std::io::stdout();
    writeln!(out, "kafka://{}", mock.bootstrap_servers())?;
    out.flush()?;
    // Serve until the parent closes our stdin (or kills us).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}
