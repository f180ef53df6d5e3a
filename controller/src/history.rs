//! Run history in an embedded SQLite database in the controller's data directory: every run,
//! its per-interval series as they arrive, its summary and report when it ends. Runs survive a
//! controller restart; a run that was still active when the controller stopped is marked
//! `interrupted` at the next start, with every interval received so far.
//!
//! SQLite is synchronous: callers on the async runtime go through `spawn_blocking` (each call
//! is a short transaction), and one connection behind a mutex serializes them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Schema migrations, applied in order; `user_version` records how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        scenario TEXT NOT NULL,
        scenario_source TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER,
        status TEXT NOT NULL,
        summary_json TEXT,
        report_html TEXT
    );
    CREATE TABLE intervals (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        interval INTEGER NOT NULL,
        data_json TEXT NOT NULL,
        PRIMARY KEY (run_id, interval)
    );
    CREATE INDEX runs_started ON runs(started_at_ms DESC);"];

/// A run as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub scenario: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// `running`, `completed`, `stopped`, `failed`, or `interrupted` (the controller stopped
    /// during the run).
    pub status: String,
}

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot create the data directory {0}: {1}")]
    Directory(PathBuf, std::io::Error),
    #[error("run history database {0}: {1}")]
    Database(PathBuf, rusqlite::Error),
    #[error("run history: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("the run history database {path} has schema version {found}, newer than this controller knows ({known}): use a newer wsfleet or another --data-dir")]
    TooNew { path: PathBuf, found: i64, known: i64 },
}

/// The history database.
#[derive(Clone)]
pub struct History {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

impl History {
    /// Opens (creating if needed) `wsfleet.db` in `data_dir`, migrates it, and marks runs that
    /// were active when the controller last stopped as interrupted.
    pub fn open(data_dir: &Path) -> Result<History, HistoryError> {
        std::fs::create_dir_all(data_dir).map_err(|error| HistoryError::Directory(data_dir.to_owned(), error))?;
        let path = data_dir.join("wsfleet.db");
        let mut connection = Connection::open(&path).map_err(|error| HistoryError::Database(path.clone(), error))?;
        // Another controller may open the same directory at the same moment: wait for its
        // transactions rather than fail.
        connection
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|error| HistoryError::Database(path.clone(), error))?;
        // Switching to WAL takes an exclusive lock that the busy handler does not wait for:
        // retry for a bounded time while another process holds it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match connection
                .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(failure, _))
                    if failure.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(error) => return Err(HistoryError::Database(path.clone(), error)),
            }
        }
        // SQLite keeps every page it touched up to its cache size (2 MB by default): a run's
        // intervals, appended each second, would fill it and grow the controller for the first
        // hours of a long run. Appends and the history's reads need far less.
        connection
            .execute_batch("PRAGMA cache_size = -256;")
            .map_err(|error| HistoryError::Database(path.clone(), error))?;
        migrate(&mut connection, &path)?;
        connection.execute(
            "UPDATE runs SET status = 'interrupted', ended_at_ms = COALESCE(ended_at_ms, ?1) WHERE status = 'running'",
            params![now_ms()],
        )?;
        Ok(History {
            connection: Arc::new(Mutex::new(connection)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic mid-statement leaves SQLite consistent (statements are atomic).
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn begin_run(&self, id: &str, scenario: &str, source: &str) -> Result<(), HistoryError> {
        self.lock().execute(
            "INSERT INTO runs (id, scenario, scenario_source, started_at_ms, status) VALUES (?1, ?2, ?3, ?4, 'running')",
            params![id, scenario, source, now_ms()],
        )?;
        Ok(())
    }

    /// Stores (or replaces) one interval's figures as they arrive.
    pub fn record_interval(&self, id: &str, interval: u64, data_json: &str) -> Result<(), HistoryError> {
        self.lock().execute(
            "INSERT OR REPLACE INTO intervals (run_id, interval, data_json) VALUES (?1, ?2, ?3)",
            params![id, interval as i64, data_json],
        )?;
        Ok(())
    }

    pub fn finish_run(
        &self,
        id: &str,
        status: &str,
        summary_json: &str,
        report_html: Option<&str>,
    ) -> Result<(), HistoryError> {
        self.lock().execute(
            "UPDATE runs SET status = ?2, ended_at_ms = ?3, summary_json = ?4, report_html = ?5 WHERE id = ?1",
            params![id, status, now_ms(), summary_json, report_html],
        )?;
        Ok(())
    }

    /// Runs, newest first.
    pub fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>, HistoryError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT id, scenario, started_at_ms, ended_at_ms, status FROM runs ORDER BY started_at_ms DESC, id LIMIT ?1",
        )?;
        let rows = statement.query_map(params![limit as i64], record_of)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, HistoryError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, scenario, started_at_ms, ended_at_ms, status FROM runs WHERE id = ?1",
                params![id],
                record_of,
            )
            .optional()?)
    }

    pub fn summary_json(&self, id: &str) -> Result<Option<String>, HistoryError> {
        Ok(self
            .lock()
            .query_row("SELECT summary_json FROM runs WHERE id = ?1", params![id], |row| {
                row.get::<_, Option<String>>(0)
            })
            .optional()?
            .flatten())
    }

    pub fn report_html(&self, id: &str) -> Result<Option<String>, HistoryError> {
        Ok(self
            .lock()
            .query_row("SELECT report_html FROM runs WHERE id = ?1", params![id], |row| {
                row.get::<_, Option<String>>(0)
            })
            .optional()?
            .flatten())
    }

    pub fn scenario_source(&self, id: &str) -> Result<Option<String>, HistoryError> {
        Ok(self
            .lock()
            .query_row("SELECT scenario_source FROM runs WHERE id = ?1", params![id], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// The stored per-interval figures of a run, in order.
    pub fn intervals(&self, id: &str) -> Result<Vec<(u64, String)>, HistoryError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT interval, data_json FROM intervals WHERE run_id = ?1 ORDER BY interval")?;
        let rows = statement.query_map(params![id], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

fn record_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get(0)?,
        scenario: row.get(1)?,
        started_at_ms: row.get(2)?,
        ended_at_ms: row.get(3)?,
        status: row.get(4)?,
    })
}

/// Applies the migrations not yet applied, in one IMMEDIATE transaction that reads the version
/// itself, so two controllers opening one directory at once cannot both run a migration.
fn migrate(connection: &mut Connection, path: &Path) -> Result<(), HistoryError> {
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(HistoryError::TooNew {
            path: path.to_owned(),
            found: version,
            known,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    transaction.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_survive_reopening_and_active_ones_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let history = History::open(dir.path()).unwrap();
            history.begin_run("done", "echo", "name: echo").unwrap();
            history.record_interval("done", 0, "{\"a\":1}").unwrap();
            history
                .finish_run(
                    "done",
                    "completed",
                    "{\"outcome\":\"completed\"}",
                    Some("<html></html>"),
                )
                .unwrap();
            history.begin_run("live", "chat", "name: chat").unwrap();
            history.record_interval("live", 0, "{\"b\":1}").unwrap();
            history.record_interval("live", 1, "{\"b\":2}").unwrap();
            // The controller stops here without finishing `live`.
        }
        let history = History::open(dir.path()).unwrap();
        let done = history.run("done").unwrap().unwrap();
        assert_eq!(done.status, "completed");
        assert_eq!(
            history.summary_json("done").unwrap().as_deref(),
            Some("{\"outcome\":\"completed\"}")
        );
        assert_eq!(history.report_html("done").unwrap().as_deref(), Some("<html></html>"));
        let live = history.run("live").unwrap().unwrap();
        assert_eq!(live.status, "interrupted");
        assert!(live.ended_at_ms.is_some());
        assert_eq!(
            history.intervals("live").unwrap(),
            vec![(0, "{\"b\":1}".to_owned()), (1, "{\"b\":2}".to_owned())]
        );
        assert_eq!(history.scenario_source("live").unwrap().as_deref(), Some("name: chat"));
        assert_eq!(history.list_runs(10).unwrap().len(), 2);
        assert!(history.run("missing").unwrap().is_none());
    }

    #[test]
    fn controllers_opening_one_directory_at_once_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || History::open(&path).map(|_| ()).map_err(|error| error.to_string()))
            })
            .collect();
        for opener in openers {
            assert_eq!(opener.join().unwrap(), Ok(()));
        }
    }

    #[test]
    fn a_newer_schema_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        History::open(dir.path()).unwrap();
        let connection = Connection::open(dir.path().join("wsfleet.db")).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        let error = History::open(dir.path()).err().unwrap();
        assert!(error.to_string().contains("schema version 99"), "{error}");
    }
}
