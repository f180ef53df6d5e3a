//! What this agent can hold: cores, the open-file limit (raised to the hard limit at start),
//! and from those the number of connections it accepts.

use std::net::IpAddr;

/// What this agent can hold, as the hello tells the controller.
#[derive(Clone, Debug, PartialEq)]
pub struct Capacity {
    pub cores: u32,
    /// The soft open-file limit after raising it to the hard limit.
    pub open_file_limit: u64,
    /// How many concurrent WebSocket connections the agent accepts to hold.
    pub max_connections: u64,
    /// Relative share of load.
    pub weight: f64,
    /// Local addresses connections are spread over (empty: the kernel picks).
    pub source_addresses: Vec<IpAddr>,
}

/// Files kept back for the agent itself (gRPC, logs, DNS, TLS roots).
const RESERVED_FILES: u64 = 64;

/// Raises the soft open-file limit to the hard one and reports the capacity.
pub fn measure(max_connections: Option<u64>, weight: Option<f64>, source_addresses: &[IpAddr]) -> Capacity {
    let open_file_limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let holdable = open_file_limit.saturating_sub(RESERVED_FILES);
    Capacity {
        cores,
        open_file_limit,
        max_connections: max_connections.map_or(holdable, |wanted| wanted.min(holdable)),
        weight: weight.unwrap_or(f64::from(cores)),
        source_addresses: source_addresses.to_vec(),
    }
}

/// The process's CPU and memory, read from /proc (zero where it is not available).
pub struct ProcessUsage {
    last_cpu_seconds: f64,
    last_at: std::time::Instant,
}

impl ProcessUsage {
    pub fn new() -> Self {
        ProcessUsage {
            last_cpu_seconds: cpu_seconds().unwrap_or(0.0),
            last_at: std::time::Instant::now(),
        }
    }

    /// CPU percent since the previous sample (100 = one core) and resident bytes.
    pub fn sample(&mut self) -> (f64, u64) {
        let now = std::time::Instant::now();
        let cpu = cpu_seconds().unwrap_or(self.last_cpu_seconds);
        let elapsed = now.duration_since(self.last_at).as_secs_f64();
        let percent = if elapsed > 0.0 {
            100.0 * (cpu - self.last_cpu_seconds) / elapsed
        } else {
            0.0
        };
        self.last_cpu_seconds = cpu;
        self.last_at = now;
        (percent.max(0.0), rss_bytes().unwrap_or(0))
    }
}

impl Default for ProcessUsage {
    fn default() -> Self {
        Self::new()
    }
}

/// utime + stime of this process in seconds (Linux clock ticks are 100 Hz).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}
