//! Simulates many agents from one process for the controller benchmark: each opens its own
//! gRPC connection and `Attach` stream, answers clock probes, heartbeats, and once assigned a
//! run sends one realistic report per second (counters for five steps and two HDR histograms
//! per step, V2+deflate) until the duration passes, then reports itself finished.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wsfleet_metrics::{new_histogram, MetricSets, SetData};
use wsfleet_proto::v1::fleet_client::FleetClient;
use wsfleet_proto::v1::{
    agent_message, controller_message, AgentMessage, Capacity, ClockReply, Heartbeat, Hello, RunPhase, RunStatus,
};

#[derive(Parser)]
struct Cli {
    /// The controller's gRPC URL.
    #[arg(long)]
    controller: String,
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// How long each simulated agent reports once its run starts.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}

fn interval_sets(seed: u64) -> MetricSets {
    let mut sets = BTreeMap::new();
    for step in ["connect", "join", "message", "echo", "close"] {
        let mut data = SetData::default();
        for (index, counter) in [
            "messages_sent",
            "messages_received",
            "payload_bytes_sent",
            "payload_bytes_received",
        ]
        .iter()
        .enumerate()
        {
            data.counters
                .insert((*counter).to_owned(), 100 + seed % 7 + index as u64);
        }
        for histogram in ["message_latency", "handshake"] {
            let mut values = new_histogram();
            for value in 0..100u64 {
                let _ = values.record(200 + (value * 37 + seed) % 5_000);
            }
            data.histograms.insert(histogram.to_owned(), values);
        }
        sets.insert(step.to_owned(), data);
    }
    MetricSets {
        sets,
        gauges: BTreeMap::from([("active_connections".to_owned(), 1)]),
    }
}

async fn agent(index: usize, controller: String, duration: Duration) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(controller)?.connect().await?;
    let mut client = FleetClient::new(channel);
    let (outgoing, receiver) = mpsc::channel::<AgentMessage>(64);
    let send = |kind| AgentMessage { kind: Some(kind) };
    outgoing
        .send(send(agent_message::Kind::Hello(Hello {
            protocol_version: wsfleet_proto::PROTOCOL_VERSION,
            agent_id: format!("sim-{index}"),
            agent_version: "sim".into(),
            capacity: Some(Capacity {
                cores: 1,
                open_file_limit: 1024,
                max_connections: 1000,
                weight: 1.0,
                source_addresses: vec![],
            }),
            token: String::new(),
            hostname: "sim".into(),
            // This build's revision: the controller refuses agents that split the load otherwise.
            // Its report acknowledgements are read and let go.
            revision: wsfleet_proto::PROTOCOL_REVISION,
            ..Default::default()
        })))
        .await?;
    let mut inbound = client.attach(ReceiverStream::new(receiver)).await?.into_inner();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                let _ = outgoing.try_send(send(agent_message::Kind::Heartbeat(Heartbeat { sent_unix_nanos: now_nanos(), ..Default::default() })));
            }
            message = inbound.message() => {
                let Some(message) = message? else { return Ok(()) };
                match message.kind {
                    Some(controller_message::Kind::ClockProbe(probe)) => {
                        outgoing.send(send(agent_message::Kind::ClockReply(ClockReply { probe_id: probe.probe_id, agent_unix_nanos: now_nanos() }))).await?;
                    }
                    Some(controller_message::Kind::Assignment(assignment)) => {
                        let outgoing = outgoing.clone();
                        tokio::spawn(async move {
                            let start = assignment.start_unix_nanos;
                            let wait = Duration::from_nanos((start - now_nanos()).max(0) as u64);
                            tokio::time::sleep(wait).await;
                            let status = |phase: RunPhase, last| send(agent_message::Kind::RunStatus(RunStatus { run_id: assignment.run_id.clone(), phase: phase as i32, last_interval: last, ..Default::default() }));
                            let _ = outgoing.send(status(RunPhase::Running, 0)).await;
                            let seconds = duration.as_secs().max(1);
                            let mut tick = tokio::time::interval(Duration::from_secs(1));
                            for interval in 0..seconds {
                                tick.tick().await;
                                if let Ok(report) = interval_sets(interval + index as u64).to_report(&assignment.run_id, interval) {
                                    let _ = outgoing.send(send(agent_message::Kind::Report(report))).await;
                                }
                            }
                            let _ = outgoing.send(status(RunPhase::Finished, seconds - 1)).await;
                        });
                    }
                    Some(controller_message::Kind::Refusal(refusal)) => anyhow::bail!("refused: {}", refusal.reason),
                    _ => {}
                }
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mut tasks = Vec::new();
        for index in 0..cli.agents {
            tasks.push(tokio::spawn(agent(index, cli.controller.clone(), cli.duration)));
            if index % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let mut failures = 0;
        for task in tasks {
            if !matches!(task.await, Ok(Ok(()))) {
                failures += 1;
            }
        }
        eprintln!("simulated agents done; {failures} ended with an error");
        Ok(())
    })
}
