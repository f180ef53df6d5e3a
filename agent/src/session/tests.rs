//! The session's events, one by one, on a session without a stream: what goes out on the
//! channel to the controller, and what reaches the current run.

use std::time::Duration;

use wsfleet_proto::v1::{agent_message, MetricReport};
use wsfleet_scenario::plan::reshare::Takeover;

use super::*;

fn session() -> (Session, mpsc::Receiver<AgentMessage>) {
    let (outgoing, sent) = mpsc::channel(16);
    let session = Session {
        player: Player {
            agent_id: Arc::from("a"),
            workers: 1,
            here: None,
            source_addresses: Arc::new(Vec::new()),
            outbox: Arc::new(Outbox::new(16)),
        },
        outgoing,
        usage: ProcessUsage::new(),
        current_run: None,
        arrivals: None,
        pending: VecDeque::new(),
    };
    (session, sent)
}

/// A session playing run `r` (without its executor: only the controls are watched).
fn playing(session: &mut Session) -> RunControl {
    let control = RunControl::new();
    session.current_run = Some(("r".into(), control.clone()));
    control
}

#[tokio::test]
async fn a_clock_probe_is_answered_with_its_id() {
    let (mut session, mut sent) = session();
    session.command(Command::ClockProbe { probe_id: 17 }).await;
    let Some(agent_message::Kind::ClockReply(reply)) = sent.recv().await.and_then(|message| message.kind) else {
        panic!("no clock reply");
    };
    assert_eq!(reply.probe_id, 17);
    assert!(reply.agent_unix_nanos > 0);
}

#[tokio::test]
async fn a_stop_reaches_the_run_it_names_or_any_run() {
    let (mut session, _sent) = session();
    let control = playing(&mut session);
    let stop = |run_id: Option<&str>| {
        Command::Stop(StopOrder {
            run_id: run_id.map(str::to_owned),
            grace: Duration::from_secs(60),
            reason: "test".into(),
        })
    };
    session.command(stop(Some("another run"))).await;
    assert!(!control.graceful.is_cancelled());
    session.command(stop(None)).await;
    assert!(control.graceful.is_cancelled());
    // The hard stop waits for the grace.
    assert!(!control.hard.is_cancelled());
}

#[tokio::test]
async fn a_reshare_reaches_its_run_only() {
    let (mut session, _sent) = session();
    let control = playing(&mut session);
    let takeovers = vec![Takeover {
        lost: vec![1],
        from: Duration::from_millis(500),
        joined: None,
    }];
    session
        .command(Command::Reshare {
            run_id: "another run".into(),
            takeovers: takeovers.clone(),
        })
        .await;
    assert!(control.takeovers.borrow().is_empty());
    session
        .command(Command::Reshare {
            run_id: "r".into(),
            takeovers: takeovers.clone(),
        })
        .await;
    assert_eq!(*control.takeovers.borrow(), takeovers);
}

#[tokio::test]
async fn the_operators_changes_reach_their_run_only() {
    use wsfleet_scenario::plan::control::{Control, ControlAction};
    let (mut session, _sent) = session();
    let control = playing(&mut session);
    let changes = vec![Control {
        part: 0,
        at: Duration::from_millis(1_500),
        action: ControlAction::Pause,
    }];
    session
        .command(Command::Control {
            run_id: "another run".into(),
            changes: changes.clone(),
        })
        .await;
    assert!(control.controls.borrow().is_empty());
    session
        .command(Command::Control {
            run_id: "r".into(),
            changes: changes.clone(),
        })
        .await;
    assert_eq!(*control.controls.borrow(), changes);
}

#[tokio::test]
async fn a_release_lets_the_waiting_generation_go_on() {
    let (mut session, _sent) = session();
    let control = playing(&mut session);
    let (generation, receiver) = control.rendezvous.arrive(3);
    let waiting = tokio::spawn(crate::rendezvous::released(receiver, generation));
    session
        .command(Command::Release {
            run_id: "r".into(),
            point: 3,
            generation,
        })
        .await;
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the release reaches the waiting VU")
        .unwrap();
}

#[tokio::test]
async fn an_acknowledged_report_leaves_the_outbox() {
    let (mut session, _sent) = session();
    let outbox = session.player.outbox.clone();
    outbox.rewind(true);
    for interval in 0..2 {
        outbox.push_report(MetricReport {
            run_id: "r".into(),
            interval,
            ..Default::default()
        });
    }
    session
        .command(Command::ReportAck {
            run_id: "r".into(),
            interval: 0,
        })
        .await;
    assert_eq!(outbox.unacknowledged(), 1);
}

#[tokio::test]
async fn arrivals_go_out_counted_per_point_and_generation_ahead_of_reports() {
    let (mut session, _sent) = session();
    let (arrivals, receiver) = mpsc::unbounded_channel();
    session.arrivals = Some(("r".into(), receiver));
    session
        .pending
        .push_back(crate::wire::report_message(MetricReport::default()));
    for arrival in [(3, 0), (1, 0), (3, 0), (3, 1)] {
        arrivals.send(arrival).unwrap();
    }
    session.arrived((3, 0));
    let counted: Vec<(u32, u64, u64)> = session
        .pending
        .iter()
        .filter_map(|message| match &message.kind {
            Some(agent_message::Kind::RendezvousArrive(arrive)) => {
                assert_eq!(arrive.run_id, "r");
                Some((arrive.point, arrive.generation, arrive.count))
            }
            _ => None,
        })
        .collect();
    assert_eq!(counted, [(1, 0, 1), (3, 0, 3), (3, 1, 1)]);
    assert!(matches!(
        session.pending.back().and_then(|message| message.kind.as_ref()),
        Some(agent_message::Kind::Report(_))
    ));
}

#[tokio::test]
async fn a_beat_says_how_many_reports_wait() {
    let (mut session, mut sent) = session();
    session.player.outbox.push_report(MetricReport::default());
    session.beat();
    let Some(agent_message::Kind::Heartbeat(beat)) = sent.recv().await.and_then(|message| message.kind) else {
        panic!("no heartbeat");
    };
    assert_eq!(beat.reports_unacknowledged, 1);
}

#[test]
fn a_controller_that_splits_the_load_otherwise_is_not_worked_with() {
    let terms = |revision| Terms {
        heartbeat_every: Duration::from_secs(1),
        silence_limit: Duration::from_secs(5),
        revision,
    };
    assert_eq!(compatible(terms(PROTOCOL_REVISION)).unwrap(), terms(PROTOCOL_REVISION));
    let error = compatible(terms(MIN_PROTOCOL_REVISION - 1)).unwrap_err().to_string();
    assert!(
        error.contains(&format!("the controller speaks revision {}", MIN_PROTOCOL_REVISION - 1))
            && error.contains(&format!("needs revision {MIN_PROTOCOL_REVISION} or later")),
        "{error}"
    );
}

/// A controller of an older revision over real gRPC: it welcomes every agent with `revision`.
struct OlderController {
    revision: u32,
}

#[tonic::async_trait]
impl wsfleet_proto::v1::fleet_server::Fleet for OlderController {
    type AttachStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ControllerMessage, tonic::Status>> + Send>>;

    async fn attach(
        &self,
        _request: tonic::Request<tonic::Streaming<AgentMessage>>,
    ) -> Result<tonic::Response<Self::AttachStream>, tonic::Status> {
        let welcome = ControllerMessage {
            kind: Some(wsfleet_proto::v1::controller_message::Kind::Welcome(
                wsfleet_proto::v1::Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    controller_version: "older".into(),
                    heartbeat_interval_ms: 1000,
                    controller_silence_timeout_ms: 10_000,
                    revision: self.revision,
                },
            )),
        };
        let stream = tokio_stream::StreamExt::chain(tokio_stream::iter([Ok(welcome)]), tokio_stream::pending());
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

#[tokio::test]
async fn an_agent_stops_at_once_on_a_controller_that_splits_the_load_otherwise() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let address = listener.local_addr().expect("has an address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(wsfleet_proto::v1::fleet_server::FleetServer::new(OlderController {
                revision: MIN_PROTOCOL_REVISION - 1,
            }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut config = AgentConfig::new(format!("http://{address}"));
    config.workers = 1;
    // Without `once`: the agent would reattach after a failure, but not after this one.
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        crate::run_on_this_thread(config, tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("the agent stops by itself");
    let error = outcome
        .expect_err("the agent does not work with an older controller")
        .to_string();
    assert!(
        error.starts_with("this agent cannot work with the controller: the controller speaks revision"),
        "{error}"
    );
}
