//! The ping step: sends a ping and waits for its pong, reading what else arrives meanwhile
//! into the queue and through the handlers.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use wsfleet_metrics::{Counter, ErrorKind, Hist, SetId};
use wsfleet_scenario::{ConnId, Step, StepId};

use super::closing::cut;
use super::outcome::{ws_failure, Failure, StepResult};
use super::state::Vu;
use crate::clock;

impl Vu {
    pub(super) async fn ping_step(&mut self, step: &Step, ping: &wsfleet_scenario::Ping, iteration: u64) -> StepResult {
        let set = SetId::Step(step.id);
        if self.holds_sends() {
            self.flush_held(step.id, iteration).await?;
        }
        let body = ping
            .body
            .try_render(&self.parts().scope(iteration))
            .map_err(|error| super::scripted::script_failure(step.id, None, &error))?;
        let body = cut(body.into_owned(), 125);
        let sent_at = clock::now();
        {
            let conn = self.conn_mut(ping.conn, step.id)?;
            conn.socket
                .send(Message::Ping(Bytes::from(body)))
                .await
                .map_err(|error| ws_failure(step.id, &error))?;
        }
        self.env.recorder.borrow_mut().add(sent_at, set, Counter::PingsSent, 1);
        let deadline = tokio::time::Instant::now() + ping.timeout;
        self.wait_for_pong(ping.conn, deadline, step.id, iteration).await?;
        let now = clock::now();
        self.env
            .recorder
            .borrow_mut()
            .record(now, set, Hist::PingLatency, now - sent_at);
        Ok(())
    }

    pub(super) async fn wait_for_pong(
        &mut self,
        conn_id: ConnId,
        deadline: tokio::time::Instant,
        step: StepId,
        iteration: u64,
    ) -> StepResult {
        loop {
            // Handler replies leave before the VU waits again.
            if self.holds_sends() {
                self.flush_held(step, iteration).await?;
            }
            let next = {
                let conn = self.conn_mut(conn_id, step)?;
                tokio::time::timeout_at(deadline, conn.socket.next())
                    .await
                    .map_err(|_| Failure::new(step, ErrorKind::Timeout))?
            };
            if let Some(Ok(Message::Pong(_))) = next {
                self.env
                    .recorder
                    .borrow_mut()
                    .add(clock::now(), SetId::Step(step), Counter::PongsReceived, 1);
                return Ok(());
            }
            self.ingest_into_queue(conn_id, next, step, iteration).await?;
        }
    }
}
