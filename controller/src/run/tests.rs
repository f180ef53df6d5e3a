//! The run's state machine, event by event, without sockets: agents are channels, time is
//! instants the test chooses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wsfleet_metrics::MetricSets;
use wsfleet_proto::v1::{controller_message, ControllerMessage, RendezvousArrive, RunPhase, RunStatus};
use wsfleet_scenario::{Bundle, Scenario};

use super::state::{RunState, Starter};
use super::*;
use crate::outcome::{Failure, LostAction, Outcome};
use crate::registry::{AgentInfo, Registry};

fn agent_with(id: &str, max_connections: u64, sources: usize) -> (AgentInfo, mpsc::Receiver<ControllerMessage>) {
    let (sender, receiver) = mpsc::channel(64);
    let mut info = AgentInfo::for_test(id, sender);
    info.capacity.max_connections = max_connections;
    info.capacity.open_file_limit = max_connections;
    info.capacity.source_addresses = (0..sources).map(|index| format!("127.0.0.{}", index + 2)).collect();
    (info, receiver)
}

fn bundle(source: &str) -> Bundle {
    Bundle {
        path: "run.yaml".into(),
        source: source.to_owned(),
        files: Default::default(),
    }
}

fn compile(source: &str) -> Scenario {
    bundle(source).compile().expect("the scenario compiles")
}

/// A scenario of `vus` VUs for 10 s with `load` added to its load, and `extra` after its steps.
fn scenario(vus: u64, load: &str, extra: &str) -> Scenario {
    compile(&format!(
        "load: {{ vus: {vus}, duration: 10s, graceful_stop: 2s{load} }}\nsteps:\n  - connect: {{ url: 'ws://127.0.0.1:9/' }}\n{extra}"
    ))
}

/// A run's agents, by id, with what reached each.
struct Fleet {
    inboxes: HashMap<String, mpsc::Receiver<ControllerMessage>>,
}

impl Fleet {
    fn start<'a>(scenario: &'a Scenario, ids: &[&str], start: Instant) -> (RunState<'a>, Fleet) {
        let mut starters = Vec::new();
        let mut inboxes = HashMap::new();
        for id in ids {
            let (info, inbox) = agent_with(id, 1000, 1);
            starters.push(Starter {
                info,
                vus: scenario.max_vus() / ids.len() as u64,
                lost: None,
            });
            inboxes.insert((*id).to_owned(), inbox);
        }
        let run = RunState::new("run1", scenario, starters, vec![1.0; ids.len()], start);
        (run, Fleet { inboxes })
    }

    /// Delivers what the run queued; returns each message's kind, by agent.
    fn deliver(&mut self, run: &mut RunState<'_>) -> HashMap<String, Vec<controller_message::Kind>> {
        for outgoing in run.take_outgoing() {
            outgoing.to.try_send(outgoing.message).expect("the inbox has room");
        }
        let mut received = HashMap::new();
        for (id, inbox) in &mut self.inboxes {
            let mut kinds = Vec::new();
            while let Ok(message) = inbox.try_recv() {
                kinds.extend(message.kind);
            }
            received.insert(id.clone(), kinds);
        }
        received
    }
}

fn report(interval: u64, messages: u64, active: i64) -> wsfleet_proto::v1::MetricReport {
    let mut sets = MetricSets::default();
    sets.sets
        .entry("connect".into())
        .or_default()
        .counters
        .insert("messages_received".into(), messages);
    sets.gauges.insert("active_connections".into(), active);
    sets.to_report("run1", interval).expect("encodes")
}

fn status(phase: RunPhase, message: &str) -> RunStatus {
    RunStatus {
        run_id: "run1".into(),
        phase: phase as i32,
        message: message.into(),
        ..RunStatus::default()
    }
}

fn intervals_shown(events: &[RunEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match event {
            RunEvent::Interval(shown) => Some(shown.interval),
            _ => None,
        })
        .collect()
}

fn stops(received: &HashMap<String, Vec<controller_message::Kind>>, agent: &str) -> Vec<(u32, String)> {
    received[agent]
        .iter()
        .filter_map(|kind| match kind {
            controller_message::Kind::Stop(stop) => Some((stop.graceful_ms, stop.reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn reports_merge_once_per_agent_and_interval_and_show_complete_intervals() {
    let scenario = scenario(4, "", "");
    let start = Instant::now();
    let (mut run, _fleet) = Fleet::start(&scenario, &["a", "b"], start);
    let started = run.take_events();
    assert!(
        matches!(&started[..], [RunEvent::Started { agents: 2, vus: 4, shares, .. }] if shares.len() == 2),
        "{started:?}"
    );
    let now = start + Duration::from_secs(1);
    run.on_report("a", &report(0, 5, 2), now);
    // Interval 0 waits for "b".
    assert!(intervals_shown(&run.take_events()).is_empty());
    run.on_report("b", &report(0, 7, 2), now);
    run.on_report("b", &report(0, 7, 2), now);
    let events = run.take_events();
    assert_eq!(intervals_shown(&events), vec![0]);
    let RunEvent::Interval(shown) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(shown.figures.counters["messages_received"], 12);
    assert_eq!(shown.figures.gauges["active_connections"], 4);
    assert_eq!(shown.so_far.totals.total().counter("messages_received"), 12);
    assert_eq!(shown.so_far.peak_gauges["active_connections"], 4);
    run.on_status("a", &status(RunPhase::Finished, ""), now);
    run.on_status("b", &status(RunPhase::Finished, ""), now);
    assert!(run.is_over(now));
    let summary = run.finish(now);
    assert_eq!(summary.outcome, Outcome::Completed);
    assert_eq!(summary.totals.counter("messages_received"), 12);
    assert_eq!(summary.totals.peak_active_connections, 4);
    assert_eq!((summary.reports.accepted, summary.reports.duplicates_ignored), (2, 1));
    assert_eq!(summary.agents[0].state, "finished");
    assert_eq!(summary.agents[0].intervals_reported, 1);
}

#[test]
fn the_live_figures_so_far_hold_only_the_intervals_shown() {
    let scenario = scenario(4, "", "");
    let start = Instant::now();
    let (mut run, _fleet) = Fleet::start(&scenario, &["a", "b"], start);
    run.take_events();
    let now = start + Duration::from_secs(3);
    // "a" is ahead: its interval 1 arrives before "b" completes interval 0.
    run.on_report("a", &report(0, 5, 2), now);
    run.on_report("a", &report(1, 100, 9), now);
    run.on_report("b", &report(0, 7, 2), now);
    let events = run.take_events();
    let [RunEvent::Interval(shown)] = &events[..] else {
        panic!("{events:?}")
    };
    // The totals add up to the series shown: interval 1 counts once it is complete.
    assert_eq!(shown.so_far.totals.total().counter("messages_received"), 12);
    assert_eq!(shown.so_far.peak_gauges["active_connections"], 4);
    run.on_report("b", &report(1, 1, 1), now);
    let events = run.take_events();
    let [RunEvent::Interval(shown)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(shown.interval, 1);
    assert_eq!(shown.so_far.totals.total().counter("messages_received"), 113);
    assert_eq!(shown.so_far.peak_gauges["active_connections"], 10);
    // Both intervals were reported by every agent: their measurements are let go, the
    // summary's series keeps their figures.
    assert_eq!(run.intervals_held(), 0);
    let summary = run.finish(now);
    let series: Vec<(u64, u64)> = summary
        .intervals
        .iter()
        .map(|interval| (interval.interval, interval.counters["messages_received"]))
        .collect();
    assert_eq!(series, vec![(0, 12), (1, 101)]);
}

#[test]
fn a_late_report_completes_an_interval_already_shown() {
    let scenario = scenario(4, "", "");
    let start = Instant::now();
    let (mut run, _fleet) = Fleet::start(&scenario, &["a", "b"], start);
    let now = start + Duration::from_secs(2);
    run.on_report("a", &report(0, 5, 1), now);
    run.on_lost("b", "agent silent for 10s", now);
    // Without "b", interval 0 is complete.
    assert_eq!(intervals_shown(&run.take_events()), vec![0]);
    // "b" may still resend it: its measurements stay.
    assert_eq!(run.intervals_held(), 1);
    run.on_attached("b", "b-instance", now);
    run.on_report("b", &report(0, 7, 1), now);
    let events = run.take_events();
    let [RunEvent::LateReport(late)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(late.interval, 0);
    assert_eq!(late.figures.counters["messages_received"], 12);
    assert_eq!(late.so_far.totals.total().counter("messages_received"), 12);
    // Held until the lost agent's report completed it.
    assert_eq!(run.intervals_held(), 0);
    run.on_status("a", &status(RunPhase::Finished, ""), now);
    // "b" came back: the run waits for its last status.
    assert!(!run.is_over(now));
    run.on_status("b", &status(RunPhase::Finished, ""), now);
    assert!(run.is_over(now));
    let summary = run.finish(now);
    assert_eq!(summary.outcome, Outcome::CompletedWithLostAgents);
    assert_eq!(
        summary.agents[1].state,
        "lost: agent silent for 10s (came back and resent its reports)"
    );
}

#[test]
fn a_returned_agent_is_waited_for_within_a_bound() {
    let scenario = scenario(4, "", "");
    let start = Instant::now();
    let (mut run, _fleet) = Fleet::start(&scenario, &["a", "b"], start);
    run.on_lost("b", "gone", start);
    run.on_attached("b", "b-instance", start);
    run.on_status("a", &status(RunPhase::Finished, ""), start);
    assert!(!run.is_over(start));
    assert!(!run.is_over(start + Duration::from_secs(14)));
    assert!(run.is_over(start + state::RETURNED_AGENT_WAIT));
}

#[test]
fn losing_an_agent_under_continue_goes_on_without_its_share() {
    let scenario = scenario(4, ", on_agent_lost: continue", "");
    let start = Instant::now();
    let (mut run, mut fleet) = Fleet::start(&scenario, &["a", "b"], start);
    run.take_events();
    run.on_lost("b", "agent closed the stream", start + Duration::from_secs(3));
    let events = run.take_events();
    assert!(
        matches!(&events[..], [RunEvent::AgentLost { agent, action: LostAction::Continued, detail, .. }]
            if agent == "b" && detail == "the run went on without its share"),
        "{events:?}"
    );
    assert!(fleet.deliver(&mut run)["a"].is_empty());
    // A second loss of the same agent is not a new event.
    run.on_lost("b", "again", start + Duration::from_secs(4));
    assert!(run.take_events().is_empty());
    let summary = run.finish(start + Duration::from_secs(10));
    assert_eq!(summary.lost_agents.policy, "continue");
    assert_eq!(summary.lost_agents.events.len(), 1);
    assert_eq!(summary.lost_agents.events[0].action, LostAction::Continued);
    assert_eq!(summary.lost_agents.events[0].at_seconds, 3.0);
    assert_eq!(summary.lost_agents.events[0].vus, 2);
    assert!(!summary.lost_agents.aborted());
    assert_eq!(summary.outcome, Outcome::CompletedWithLostAgents);
}

#[test]
fn losing_an_agent_under_redistribute_moves_its_share() {
    let scenario = scenario(9, ", on_agent_lost: redistribute", "");
    let start = Instant::now();
    let (mut run, mut fleet) = Fleet::start(&scenario, &["a", "b", "c"], start);
    run.take_events();
    run.on_lost("b", "agent silent for 10s", start + Duration::from_secs(3));
    let events = run.take_events();
    assert!(
        matches!(&events[..], [RunEvent::Reshared { shares }, RunEvent::AgentLost { action: LostAction::Redistributed, detail, .. }]
            if shares == &vec![("a".to_owned(), 5), ("c".to_owned(), 4)] && detail == "its share moved to 2 agent(s)"),
        "{events:?}"
    );
    let received = fleet.deliver(&mut run);
    for survivor in ["a", "c"] {
        let [controller_message::Kind::Reshare(reshare)] = &received[survivor][..] else {
            panic!("{received:?}")
        };
        assert_eq!(reshare.takeovers.len(), 1);
        let takeover = &reshare.takeovers[0];
        assert_eq!(
            (takeover.lost_agents.clone(), takeover.from_run_millis),
            (vec![1], 3500)
        );
    }
    assert!(received["b"].is_empty());
    let summary = run.finish(start + Duration::from_secs(10));
    assert_eq!(summary.lost_agents.events[0].action, LostAction::Redistributed);
    assert_eq!(
        summary.agents.iter().map(|agent| agent.vus).collect::<Vec<_>>(),
        vec![5, 3, 4]
    );
}

#[test]
fn a_share_that_cannot_move_continues_without_it() {
    let scenario = scenario(9, ", on_agent_lost: redistribute", "");
    let start = Instant::now();
    let (mut run, _fleet) = Fleet::start(&scenario, &["a", "b"], start);
    run.take_events();
    // Past the stages' end nothing is left to move.
    run.on_lost("b", "gone", start + Duration::from_secs(10));
    let events = run.take_events();
    assert!(
        matches!(&events[..], [RunEvent::AgentLost { action: LostAction::Continued, detail, .. }]
            if detail == "its share could not move (the load plan is over); the run went on without it"),
        "{events:?}"
    );
}

#[test]
fn losing_an_agent_under_abort_stops_the_run() {
    let scenario = scenario(4, ", on_agent_lost: abort", "");
    let start = Instant::now();
    let (mut run, mut fleet) = Fleet::start(&scenario, &["a", "b"], start);
    run.on_lost("a", "agent closed the stream", start + Duration::from_secs(1));
    assert!(run.stop_sent());
    let received = fleet.deliver(&mut run);
    assert_eq!(stops(&received, "b"), vec![(2000, "agent `a` was lost".to_owned())]);
    assert!(received["a"].is_empty());
    // Losing another one now that the run is stopping does nothing more.
    run.on_lost("b", "gone", start + Duration::from_secs(2));
    let summary = run.finish(start + Duration::from_secs(3));
    assert_eq!(
        summary.outcome,
        Outcome::AbortedByLostAgent {
            agent: "a".into(),
            reason: "agent closed the stream".into()
        }
    );
    assert_eq!(
        summary.outcome.to_string(),
        "aborted: agent `a` was lost (agent closed the stream)"
    );
    assert!(summary.lost_agents.aborted());
    let actions: Vec<LostAction> = summary.lost_agents.events.iter().map(|event| event.action).collect();
    assert_eq!(actions, vec![LostAction::Aborted, LostAction::None]);
}

#[test]
fn a_finished_agent_lost_needs_no_answer() {
    let scenario = scenario(4, ", on_agent_lost: abort", "");
    let start = Instant::now();
    let (mut run, _fleet) = Fleet::start(&scenario, &["a", "b"], start);
    run.on_status("a", &status(RunPhase::Finished, ""), start);
    run.on_lost("a", "agent closed the stream", start);
    assert!(!run.stop_sent());
    let summary = run.finish(start);
    assert_eq!(summary.lost_agents.events[0].action, LostAction::None);
    assert_eq!(summary.lost_agents.events[0].detail, "the run did not need it any more");
}

fn rendezvous_scenario() -> Scenario {
    scenario(4, "", "  - rendezvous: { name: burst, count: 3, timeout: 2s }\n")
}

fn releases(received: &HashMap<String, Vec<controller_message::Kind>>, agent: &str) -> Vec<(u32, u64)> {
    received[agent]
        .iter()
        .filter_map(|kind| match kind {
            controller_message::Kind::RendezvousRelease(release) => Some((release.point, release.generation)),
            _ => None,
        })
        .collect()
}

fn arrive(generation: u64, count: u64) -> RendezvousArrive {
    RendezvousArrive {
        run_id: "run1".into(),
        point: 0,
        generation,
        count,
    }
}

#[test]
fn a_rendezvous_is_released_when_its_count_is_reached() {
    let scenario = rendezvous_scenario();
    let start = Instant::now();
    let (mut run, mut fleet) = Fleet::start(&scenario, &["a", "b"], start);
    run.on_rendezvous("a", &arrive(0, 2), start);
    assert!(releases(&fleet.deliver(&mut run), "a").is_empty());
    // An arrival for another generation does not count.
    run.on_rendezvous("b", &arrive(1, 5), start);
    assert!(releases(&fleet.deliver(&mut run), "a").is_empty());
    run.on_rendezvous("b", &arrive(0, 1), start);
    let received = fleet.deliver(&mut run);
    assert_eq!(releases(&received, "a"), vec![(0, 0)]);
    assert_eq!(releases(&received, "b"), vec![(0, 0)]);
    // The next generation counts from zero.
    run.on_rendezvous("a", &arrive(1, 2), start);
    assert!(releases(&fleet.deliver(&mut run), "a").is_empty());
}

#[test]
fn a_rendezvous_is_released_by_its_timeout_after_the_last_arrival() {
    let scenario = rendezvous_scenario();
    let start = Instant::now();
    let (mut run, mut fleet) = Fleet::start(&scenario, &["a", "b"], start);
    // No arrival yet: no timeout runs.
    run.on_tick(start + Duration::from_secs(60));
    assert!(releases(&fleet.deliver(&mut run), "a").is_empty());
    let arrived = start + Duration::from_secs(61);
    run.on_rendezvous("a", &arrive(0, 1), arrived);
    run.on_tick(arrived + Duration::from_millis(1_999));
    assert!(releases(&fleet.deliver(&mut run), "a").is_empty());
    run.on_tick(arrived + Duration::from_secs(2));
    let received = fleet.deliver(&mut run);
    assert_eq!(releases(&received, "a"), vec![(0, 0)]);
    assert_eq!(releases(&received, "b"), vec![(0, 0)]);
    run.on_tick(arrived + Duration::from_secs(10));
    assert!(releases(&fleet.deliver(&mut run), "a").is_empty());
}

#[test]
fn a_failing_threshold_that_aborts_stops_the_run() {
    let scenario = scenario(
        4,
        "",
        "thresholds:\n  messages_received.count: { condition: '< 20', abort_on_fail: true }\n  connections_failed.count: '== 0'\n",
    );
    let start = Instant::now();
    let (mut run, mut fleet) = Fleet::start(&scenario, &["a"], start);
    run.on_report("a", &report(0, 10, 1), start + Duration::from_secs(1));
    assert!(!run.stop_sent());
    run.on_report("a", &report(1, 15, 1), start + Duration::from_secs(2));
    assert!(run.stop_sent());
    assert_eq!(
        stops(&fleet.deliver(&mut run), "a"),
        vec![(2000, "a threshold failed".to_owned())]
    );
    // Checked once: later intervals do not stop again.
    run.on_report("a", &report(2, 1, 1), start + Duration::from_secs(3));
    assert!(stops(&fleet.deliver(&mut run), "a").is_empty());
    let summary = run.finish(start + Duration::from_secs(3));
    assert_eq!(
        summary.outcome.to_string(),
        "aborted: threshold `messages_received.count` < 20 failed (measured 25)"
    );
    let result = |name: &str| {
        let found = summary.thresholds.iter().find(|threshold| threshold.name == name);
        found.map(|threshold| (threshold.passed, threshold.aborted_run))
    };
    assert_eq!(result("messages_received.count"), Some((false, true)));
    assert_eq!(result("connections_failed.count"), Some((true, false)));
}

#[test]
fn a_stop_request_stops_every_agent_once() {
    let scenario = scenario(4, "", "");
    let start = Instant::now();
    let (mut run, mut fleet) = Fleet::start(&scenario, &["a", "b"], start);
    run.on_stop_request(start);
    run.on_stop_request(start);
    let received = fleet.deliver(&mut run);
    assert_eq!(stops(&received, "a"), vec![(2000, "stopped by the user".to_owned())]);
    assert_eq!(stops(&received, "b"), vec![(2000, "stopped by the user".to_owned())]);
    assert_eq!(run.finish(start).outcome, Outcome::Stopped);
}

#[test]
fn a_failed_agent_fails_the_run_and_the_deadline_too() {
    let scenario = scenario(4, "", "");
    let start = Instant::now();
    let (mut run, mut fleet) = Fleet::start(&scenario, &["a", "b"], start);
    run.on_status("a", &status(RunPhase::Failed, "cannot read payload.bin"), start);
    assert_eq!(
        stops(&fleet.deliver(&mut run), "b"),
        vec![(0, "another agent failed".to_owned())]
    );
    assert_eq!(
        run.outcome(),
        &Outcome::Failed(Failure::Agent {
            agent: "a".into(),
            message: "cannot read payload.bin".into()
        })
    );
    // The default max_duration (10m), the graceful stop, and a margin of 30 s.
    assert_eq!(run.hard_deadline(), start + Duration::from_secs(600 + 2 + 30));
    run.on_deadline();
    assert_eq!(
        stops(&fleet.deliver(&mut run), "b"),
        vec![(0, "run deadline passed".to_owned())]
    );
    assert_eq!(
        run.finish(start).outcome.to_string(),
        "failed: agents did not finish in time"
    );
}

fn request(vus: u64) -> RunRequest {
    RunRequest {
        bundle: bundle(&format!(
            "load: {{ vus: {vus}, iterations: 1 }}\nsteps:\n  - connect: {{ url: 'ws://127.0.0.1:9/' }}\n"
        )),
        variables: HashMap::new(),
        lead_time: Duration::from_millis(10),
        changes: None,
    }
}

#[tokio::test]
async fn refuses_runs_that_would_exhaust_source_ports() {
    let registry = Registry::new();
    registry.attach(agent_with("a", 1_000_000, 0).0).unwrap();
    let refused = request(30_000);
    let scenario = refused.bundle.compile().unwrap();
    let error = execute(&registry, &scenario, refused, None, CancellationToken::new())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("30000 connections to one target from 1 source address"),
        "{message}"
    );
    assert!(message.contains("--source-addresses"), "{message}");

    // Two source addresses give room for it (the run then fails to connect, which is fine:
    // it was allowed to start). Only the refusal is under test, so stop at once.
    let registry = Registry::new();
    registry.attach(agent_with("b", 1_000_000, 2).0).unwrap();
    let stop = CancellationToken::new();
    stop.cancel();
    let allowed = request(30_000);
    let scenario = allowed.bundle.compile().unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        execute(&registry, &scenario, allowed, None, stop),
    )
    .await;
    assert!(!matches!(outcome, Ok(Err(RunError::Capacity(_)))), "{outcome:?}");
}

fn changes_sent(received: &HashMap<String, Vec<controller_message::Kind>>, agent: &str) -> Vec<usize> {
    received[agent]
        .iter()
        .filter_map(|kind| match kind {
            controller_message::Kind::RunControl(control) => Some(control.changes.len()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_change_goes_to_every_agent_with_the_ones_before_and_refusals_send_nothing() {
    let scenario = scenario(4, "", "");
    let start = Instant::now();
    let (mut run, mut fleet) = Fleet::start(&scenario, &["a", "b"], start);
    fleet.deliver(&mut run);
    let now = start + Duration::from_secs(3);
    let change = |action| Change { part: None, action };

    let applied = run
        .on_control(
            change(ChangeAction::SetVus {
                vus: 10,
                ramp: Duration::from_secs(2),
            }),
            now,
        )
        .expect("10 VUs fit");
    // Dated ahead, so every agent applies it from the same run time.
    assert_eq!(applied.at_seconds, 3.25);
    let received = fleet.deliver(&mut run);
    assert_eq!(
        (changes_sent(&received, "a"), changes_sent(&received, "b")),
        (vec![1], vec![1])
    );
    assert_eq!(run.agent("a").map(|agent| agent.vus), Some(5));

    // Refused: nothing goes out, nothing is kept.
    for refused in [
        change(ChangeAction::SetRate {
            rate: 3.0,
            ramp: Duration::ZERO,
        }),
        change(ChangeAction::SetVus {
            vus: 5_000,
            ramp: Duration::ZERO,
        }),
        change(ChangeAction::Unpause),
        Change {
            part: Some("other".into()),
            action: ChangeAction::Hold,
        },
    ] {
        assert!(run.on_control(refused.clone(), now).is_err(), "{refused:?}");
    }
    let received = fleet.deliver(&mut run);
    assert!(changes_sent(&received, "a").is_empty());
    assert_eq!(run.agent("b").map(|agent| agent.vus), Some(5));

    // The next change carries both.
    run.on_control(change(ChangeAction::Pause), now + Duration::from_secs(1))
        .expect("a pause applies");
    let received = fleet.deliver(&mut run);
    assert_eq!(changes_sent(&received, "b"), vec![2]);
    let changed: Vec<String> = run
        .take_events()
        .into_iter()
        .filter_map(|event| match event {
            RunEvent::Changed(change) => Some(change.action),
            _ => None,
        })
        .collect();
    assert_eq!(changed, ["set_vus", "pause"]);

    // Once the run is stopping, nothing changes any more.
    run.on_stop_request(now + Duration::from_secs(2));
    let error = run
        .on_control(change(ChangeAction::Unpause), now + Duration::from_secs(2))
        .expect_err("a stopping run takes no change");
    assert_eq!(error.to_string(), "the run is stopping: it cannot be changed");
    let summary = run.finish(now + Duration::from_secs(3));
    assert_eq!(summary.changes.len(), 2);
}
