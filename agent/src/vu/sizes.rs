//! The memory a VU costs while it holds an idle connection is mostly the size of its task's
//! future (allocated once, for its largest state) plus the connection's buffers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wsfleet_metrics::Recorder;

use super::conn::{Conn, ConnInfo};
use super::state::Vu;
use super::*;
use crate::clock;

#[test]
fn print_future_sizes() {
    let scenario = wsfleet_scenario::Bundle {
        path: "s.yaml".into(),
        source: "load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:9/' }\n  - think: 1s\n"
            .into(),
        files: Default::default(),
    }
    .compile()
    .unwrap();
    let start = clock::now();
    let env = Rc::new(RunEnv {
        static_messages: Arc::new(static_messages(&scenario)),
        step_tls: Arc::new(step_tls_configs(&scenario, None).unwrap()),
        scenario: Arc::new(scenario),
        agent_id: Arc::from("a"),
        named: Arc::new(HashMap::new()),
        tls: crate::connection::default_tls_config().unwrap(),
        recorder: Rc::new(RefCell::new(Recorder::new(
            start,
            vec!["connect".into(), "think".into()],
        ))),
        handshake_slots: Rc::new(tokio::sync::Semaphore::new(1)),
        source_addresses: crate::connection::SourceAddresses::new(Arc::new(Vec::new()), 0),
        upgrades: UpgradeRequests::default(),
        connector: Rc::new(crate::connection::Network),
        rendezvous: Arc::new(crate::rendezvous::RendezvousHub::new().0),
    });
    let control = VuControl {
        graceful: CancellationToken::new(),
        hard: crate::stop::HardStop::new(),
        pause: Default::default(),
    };
    let future = run_vu(env.clone(), 0, 0, control.clone(), None);
    println!("run_vu future: {} bytes", std::mem::size_of_val(&future));
    let mut vu = Vu {
        env: env.clone(),
        part: 0,
        number: 0,
        vu_iteration: 0,
        conns: vec![None],
        info: vec![ConnInfo::default()],
        vars: HashMap::new(),
        handshake: None,
        lag: Duration::ZERO,
        receive_timer: None,
        recent: None,
        scripts: Default::default(),
        http: None,
        pause: control.pause.clone(),
        graceful: control.graceful.clone(),
        paused_for: Duration::ZERO,
        request_times: Vec::new(),
    };
    let steps = &env.scenario.parts[0].steps;
    let play = vu.play(steps, 0);
    println!("play (boxed): {} bytes", std::mem::size_of_val(&*play));
    drop(play);
    let step = vu.step(&steps[0], 0);
    println!("step future: {} bytes", std::mem::size_of_val(&step));
    println!("Conn: {} bytes", std::mem::size_of::<Conn>());
}
