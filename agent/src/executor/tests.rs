//! The executors driven through their worker channels: each VU start is a command on a channel
//! the test reads, and the test ends each VU at once, so what is asserted is exactly which VUs
//! an agent starts for its share, with no workers and no sockets.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use wsfleet_scenario::plan::control::{Control, ControlAction};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use wsfleet_metrics::Counter;
use wsfleet_scenario::plan::reshare::Takeover;
use wsfleet_scenario::Bundle;

use super::*;
use crate::worker::WorkerCommand;

/// What one agent's executor did for one part.
#[derive(Debug, Default)]
struct Played {
    /// The VU numbers started, in order.
    numbers: Vec<u64>,
    /// Open-model arrivals this agent owned.
    offered: u64,
    dropped: u64,
}

/// Plays part 0 of `source` as agent `agent_index` of `weights`, with `takeovers` known from
/// the start; every VU ends as soon as it is started.
async fn play(source: &str, weights: &[f64], agent_index: usize, takeovers: Vec<Takeover>) -> Played {
    play_steered(source, weights, agent_index, takeovers, Vec::new()).await
}

/// As [`play`], with the operator's `controls` known from the start.
async fn play_steered(
    source: &str,
    weights: &[f64],
    agent_index: usize,
    takeovers: Vec<Takeover>,
    controls: Vec<Control>,
) -> Played {
    play_until(
        source,
        weights,
        agent_index,
        takeovers,
        controls,
        CancellationToken::new(),
    )
    .await
}

/// As [`play_steered`], with the run's graceful stop `graceful` (the test cancels it).
async fn play_until(
    source: &str,
    weights: &[f64],
    agent_index: usize,
    takeovers: Vec<Takeover>,
    controls: Vec<Control>,
    graceful: CancellationToken,
) -> Played {
    let bundle = Bundle {
        path: "test.yaml".into(),
        source: source.into(),
        files: Default::default(),
    };
    let scenario = bundle.compile().expect("the test scenario compiles");
    let (worker, mut commands) = mpsc::unbounded_channel();
    let workers = [worker];
    let takeovers = watch::Sender::new(takeovers);
    let controls = watch::Sender::new(controls);
    let hard = CancellationToken::new();
    let context = PartContext {
        scenario: &scenario,
        run_id: "r",
        weights,
        agent_index,
        run_start: Instant::now(),
        worker_commands: &workers,
        takeovers: &takeovers,
        controls: &controls,
        run_graceful: &graceful,
        run_hard: &hard,
    };
    let (ended, done) = mpsc::unbounded_channel();
    let part = drive_part(&context, 0, done);
    tokio::pin!(part);
    let mut played = Played::default();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                outcome = &mut part => break outcome,
                Some(command) = commands.recv() => match command {
                    WorkerCommand::Spawn { slot, number, .. } => {
                        played.numbers.push(number);
                        ended.send(slot % SLOT_STRIDE).expect("the part listens for VU ends");
                    }
                    WorkerCommand::Count { counter: Counter::VusOffered, amount } => played.offered += amount,
                    WorkerCommand::Count { counter: Counter::DroppedVus, amount } => played.dropped += amount,
                    WorkerCommand::Count { .. } | WorkerCommand::Finish => {}
                },
            }
        }
    })
    .await
    .expect("the part ends once its VUs have played");
    outcome.expect("the share is computed");
    played
}

const CLOSED: &str = "name: closed\nload:\n  vus: 4\n  iterations: 1\nsteps:\n  - connect: { url: \"ws://127.0.0.1:9/\" }\n  - close: { code: 1000 }\n";

fn distinct(numbers: &[u64]) -> BTreeSet<u64> {
    let set: BTreeSet<u64> = numbers.iter().copied().collect();
    assert_eq!(set.len(), numbers.len(), "a VU number was started twice: {numbers:?}");
    set
}

#[tokio::test]
async fn closed_agents_start_their_exact_shares_once_each() {
    let (first, second) = tokio::join!(
        play(CLOSED, &[1.0, 1.0], 0, Vec::new()),
        play(CLOSED, &[1.0, 1.0], 1, Vec::new())
    );
    assert_eq!(first.numbers.len(), 2);
    assert_eq!(second.numbers.len(), 2);
    let mut fleet = distinct(&first.numbers);
    fleet.extend(distinct(&second.numbers));
    assert_eq!(fleet.len(), 4, "the agents' VUs overlap: {first:?} {second:?}");
}

#[tokio::test]
async fn a_closed_survivor_takes_over_a_lost_agents_vus_with_new_numbers() {
    let alone = play(CLOSED, &[1.0, 1.0], 0, Vec::new()).await;
    let lost_from_the_start = vec![Takeover {
        lost: vec![1],
        from: Duration::ZERO,
        joined: None,
    }];
    let survivor = play(CLOSED, &[1.0, 1.0], 0, lost_from_the_start).await;
    assert_eq!(survivor.numbers.len(), 4);
    let numbers = distinct(&survivor.numbers);
    // Its own VUs keep their numbers (0 to 3 are the plan's); the lost agent's come after them.
    assert!(distinct(&alone.numbers).is_subset(&numbers));
    assert_eq!(numbers.iter().filter(|number| **number >= 4).count(), 2, "{numbers:?}");
}

#[tokio::test]
async fn open_agents_own_every_arrival_exactly_once() {
    let open = "name: open\nload: { model: open, rate: 40, duration: 500ms, max_vus: 100 }\nsteps:\n  - connect: { url: \"ws://127.0.0.1:9/\" }\n  - close: { code: 1000 }\n";
    let (first, second) = tokio::join!(
        play(open, &[3.0, 1.0], 0, Vec::new()),
        play(open, &[3.0, 1.0], 1, Vec::new())
    );
    // 40 per second for half a second: 20 arrivals, split 3 to 1, none over the caps.
    assert_eq!((first.offered, second.offered), (15, 5));
    assert_eq!((first.dropped, second.dropped), (0, 0));
    assert_eq!((first.numbers.len(), second.numbers.len()), (15, 5));
    let mut fleet = distinct(&first.numbers);
    fleet.extend(distinct(&second.numbers));
    assert_eq!(fleet.len(), 20);
}

fn change(seconds: f64, action: ControlAction) -> Control {
    Control {
        part: 0,
        at: Duration::from_secs_f64(seconds),
        action,
    }
}

#[tokio::test]
async fn closed_agents_split_the_vus_the_operator_set_exactly() {
    // 4 VUs planned, 7 set: the fleet starts 7 distinct VUs, split by the same sequence.
    let set = vec![change(
        0.0,
        ControlAction::Set {
            value: 7.0,
            ramp: Duration::ZERO,
        },
    )];
    let (first, second) = tokio::join!(
        play_steered(CLOSED, &[1.0, 1.0], 0, Vec::new(), set.clone()),
        play_steered(CLOSED, &[1.0, 1.0], 1, Vec::new(), set)
    );
    assert_eq!((first.numbers.len(), second.numbers.len()), (4, 3));
    let mut fleet = distinct(&first.numbers);
    fleet.extend(distinct(&second.numbers));
    assert_eq!(fleet.len(), 7, "{first:?} {second:?}");
    // Stopped at once: no VU starts.
    let stopped = play_steered(CLOSED, &[1.0], 0, Vec::new(), vec![change(0.0, ControlAction::Stop)]).await;
    assert!(stopped.numbers.is_empty(), "{stopped:?}");
}

#[tokio::test]
async fn open_arrivals_follow_the_rate_the_operator_set() {
    let open = "name: open\nload: { model: open, rate: 40, duration: 500ms, max_vus: 100 }\nsteps:\n  - connect: { url: \"ws://127.0.0.1:9/\" }\n  - close: { code: 1000 }\n";
    // 40 a second for 250 ms (10), then 80 a second until the stop at 500 ms (20).
    let controls = vec![
        change(
            0.25,
            ControlAction::Set {
                value: 80.0,
                ramp: Duration::ZERO,
            },
        ),
        change(0.5, ControlAction::Stop),
    ];
    let played = play_steered(open, &[1.0], 0, Vec::new(), controls).await;
    assert_eq!((played.offered, played.dropped), (30, 0), "{played:?}");
    assert_eq!(distinct(&played.numbers).len(), 30);
    // Paused from 100 ms to 300 ms: the 8 arrivals due then are skipped, not made up.
    let paused = vec![change(0.1, ControlAction::Pause), change(0.3, ControlAction::Unpause)];
    let played = play_steered(open, &[1.0], 0, Vec::new(), paused).await;
    assert_eq!((played.offered, played.dropped), (12, 0), "{played:?}");
}

#[tokio::test]
async fn arrivals_due_before_the_end_start_even_when_the_agent_wakes_after_it() {
    // 40 a second for 500 ms: 20 arrivals, the last due at 475 ms. The test's one thread is
    // blocked from 400 ms to 700 ms, so the executor wakes for the last ones after the end.
    let open = "name: open\nload: { model: open, rate: 40, duration: 500ms, max_vus: 100 }\nsteps:\n  - connect: { url: \"ws://127.0.0.1:9/\" }\n  - close: { code: 1000 }\n";
    let (played, ()) = tokio::join!(play(open, &[1.0], 0, Vec::new()), async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        std::thread::sleep(Duration::from_millis(300));
    });
    assert_eq!((played.offered, played.dropped), (20, 0), "{played:?}");
    assert_eq!(distinct(&played.numbers).len(), 20);
}

#[tokio::test]
async fn no_arrival_starts_after_a_stop_that_came_while_the_agent_was_late() {
    // 40 a second for 1 s; the test's one thread is blocked from about 400 ms to 700 ms and the
    // run is stopped at the block's end: the arrivals due meanwhile are due and the stop is there
    // at once. Only arrivals due before the block can have started.
    let open = "name: open\nload: { model: open, rate: 40, duration: 1s, max_vus: 100 }\nsteps:\n  - connect: { url: \"ws://127.0.0.1:9/\" }\n  - close: { code: 1000 }\n";
    let graceful = CancellationToken::new();
    let stop = graceful.clone();
    // Taken before the part's own start: arrival k is due no earlier than `before + k × 25 ms`.
    let before = Instant::now();
    let (played, blocked_at) = tokio::join!(
        play_until(open, &[1.0], 0, Vec::new(), Vec::new(), graceful),
        async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let blocked_at = before.elapsed();
            std::thread::sleep(Duration::from_millis(300));
            stop.cancel();
            blocked_at
        }
    );
    let due_before_the_block = blocked_at.as_millis() as u64 / 25 + 1;
    assert!(
        played.offered <= due_before_the_block && played.dropped == 0,
        "{played:?}, {due_before_the_block} due before the block"
    );
    assert_eq!(distinct(&played.numbers).len() as u64, played.offered);
}
