// The dashboard: reads /api/status every second and on every live-feed event, redraws the
// charts the controller renders, and starts and stops runs through /api. No other sources.
"use strict";
const token = new URLSearchParams(location.search).get("token");
const withToken = (url) => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
const api = (url, options = {}) => fetch(withToken(url), options).then(async (response) => {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ? body.error + (body.problems && body.problems.length ? ": " + body.problems.join("; ") : "") : response.statusText);
  return body;
});
const $ = (id) => document.getElementById(id);

function human(value, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  const [scaled, suffix] = abs >= 1e9 ? [value / 1e9, "G"] : abs >= 1e6 ? [value / 1e6, "M"] : abs >= 1e3 ? [value / 1e3, "k"] : [value, ""];
  const digits = suffix === "" && abs < 10 && value % 1 !== 0 ? 2 : 1;
  return (suffix === "" && value % 1 === 0 ? String(value) : scaled.toFixed(digits)) + suffix + unit;
}
const bytes = (value) => human(value, "B");
const micros = (us) => us === undefined ? "–" : us >= 1e6 ? (us / 1e6).toFixed(2) + " s" : us >= 1e3 ? (us / 1e3).toFixed(2) + " ms" : us + " µs";

function rows(table, items, cells) {
  const body = $(table).querySelector("tbody");
  body.innerHTML = "";
  for (const item of items) {
    const row = document.createElement("tr");
    for (const cell of cells(item)) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
      row.appendChild(td);
    }
    body.appendChild(row);
  }
}

function render(status) {
  const run = status.run;
  const running = !!(run && run.running) || status.starting;
  $("run-state").textContent = status.starting ? "starting" : run ? (run.running ? "running" : "finished") : "no run";
  $("run-state").className = "state " + (status.starting ? "starting" : run && run.running ? "running" : "idle");
  $("run-title").textContent = run ? `${run.scenario} · ${run.run_id} · ${run.seconds} s` : "";
  $("stop").disabled = !running;
  renderSteering(run, !!(run && run.running));
  const last = (run && run.last) || { counters: {}, gauges: {}, latency: {} };
  const c = (name) => last.counters[name] || 0;
  $("tile-new").textContent = human(c("connections_opened"), "/s");
  $("tile-failed").textContent = human(c("connections_failed"), "/s");
  $("tile-sent").textContent = bytes(c("bytes_sent")) + "/s";
  $("tile-received").textContent = bytes(c("bytes_received")) + "/s";
  $("tile-active").textContent = human(last.gauges.active_connections || 0);
  $("tile-messages").textContent = human(c("messages_sent")) + " / " + human(c("messages_received"));
  $("tile-p99").textContent = last.latency.message_latency ? micros(last.latency.message_latency.p99_us) : "–";

  rows("fleet", status.agents, (agent) => {
    if (agent.state === "lost") {
      const state = document.createElement("span");
      state.className = "lost";
      state.textContent = "lost";
      state.title = agent.reason || "";
      // Why it was lost, and what the run's policy (load.on_agent_lost) did about it.
      const why = [agent.reason, agent.action].filter(Boolean).join(" — ");
      return [agent.id, state, agent.address || "–", "–", human(agent.vus_share), "–", "–", "–", why];
    }
    // An agent with a share of the running run can be drained (its share moves to the others);
    // one attached during the run, waiting for the next, can be added (it takes a slice of it).
    let drain = "";
    if (running && agent.state === "running" && agent.vus_share > 0) {
      drain = document.createElement("button");
      drain.textContent = "Drain";
      drain.className = "drain";
      drain.dataset.agent = agent.id;
      drain.addEventListener("click", () => ask(`Drain agent ${agent.id}?`, { action: "drain", agent: agent.id }, false));
    } else if (running && agent.state === "attached" && agent.vus_share === null) {
      drain = document.createElement("button");
      drain.textContent = "Add";
      drain.className = "add-agent";
      drain.dataset.agent = agent.id;
      drain.addEventListener("click", () => ask(`Add agent ${agent.id} to the run?`, { action: "add_agent", agent: agent.id }, false));
    }
    return [agent.id, agent.state, agent.address, human(agent.active_connections), agent.vus_share === null ? "–" : human(agent.vus_share),
      human(agent.max_connections), agent.cpu_percent.toFixed(0) + " %", bytes(agent.rss_bytes), agent.last_heartbeat_ms + " ms ago", drain];
  });
  const thresholds = run ? run.thresholds : [];
  rows("thresholds", thresholds, (t) => {
    const mark = document.createElement("span");
    mark.className = t.passed ? "pass" : "fail";
    mark.textContent = t.passed ? "✓ pass" : "✗ fail";
    return [t.name, t.condition, t.display, mark];
  });
  const totals = run ? run.totals : {};
  const errors = Object.entries(totals).filter(([name]) => name.startsWith("errors.") || name.startsWith("close_codes."));
  rows("errors", errors, ([name, count]) => [name, human(count)]);
  const steps = run ? run.steps : [];
  rows("steps", steps, (step) => [step.name, human(step.counters.connections_opened || 0), human(step.counters.messages_sent || 0),
    human(step.counters.messages_received || 0), human(step.counters.receive_timeouts || 0)]);
}

// Steering: every change asks for a confirmation first, then goes to /api/runs/current/control.
let parts = [];
let pendingChange = null;

function renderSteering(run, running) {
  parts = run && run.parts ? run.parts : [];
  const select = $("steer-part");
  const chosen = select.value;
  const names = parts.map((part) => part.name);
  if (select.options.length !== names.length || names.some((name, index) => select.options[index].value !== name)) {
    select.innerHTML = "";
    for (const part of parts) {
      const option = document.createElement("option");
      option.value = part.name;
      option.textContent = part.name || "(the scenario)";
      select.appendChild(option);
    }
    if (names.includes(chosen)) select.value = chosen;
  }
  const part = parts.find((part) => part.name === select.value) || parts[0];
  $("steer-unit").textContent = part && part.model === "open" ? "arrivals/s" : "VUs";
  for (const button of $("steer").querySelectorAll("button:not(#steer-yes):not(#steer-no)")) button.disabled = !running;
  if (!running) { $("steer-confirm").hidden = true; pendingChange = null; }
  const changes = run && run.changes ? run.changes : [];
  const list = $("changes");
  if (list.children.length !== changes.length) {
    list.innerHTML = "";
    for (const change of changes) {
      const item = document.createElement("li");
      item.textContent = `${change.at_seconds.toFixed(1)} s: ${change.detail}`;
      list.appendChild(item);
    }
  }
}

function steeredPart() {
  return parts.find((part) => part.name === $("steer-part").value) || parts[0];
}

function ask(question, body, ofPart = true) {
  const part = steeredPart();
  if (ofPart && part && part.name) body.part = part.name;
  pendingChange = body;
  $("steer-question").textContent = question;
  $("steer-confirm").hidden = false;
}

$("steer-set").addEventListener("click", () => {
  const part = steeredPart();
  const value = Number($("steer-value").value);
  if ($("steer-value").value === "" || !(value >= 0)) { $("steer-message").textContent = "give a value of 0 or more"; return; }
  const ramp = $("steer-ramp").value.trim();
  const open = part && part.model === "open";
  const body = open ? { action: "set_rate", rate: value } : { action: "set_vus", vus: Math.round(value) };
  if (ramp) body.ramp = ramp;
  const what = open ? `the arrival rate to ${value}/s` : `the VUs to ${Math.round(value)}`;
  ask(`Set ${what} ${ramp ? "over " + ramp : "at once"}?`, body);
});
for (const [id, action, question] of [["steer-hold", "hold", "Hold the plan?"], ["steer-resume", "resume", "Resume the plan?"],
  ["steer-pause", "pause", "Pause the part?"], ["steer-unpause", "unpause", "Unpause the part?"], ["steer-stop", "stop", "Stop the part?"]]) {
  $(id).addEventListener("click", () => ask(question, { action }));
}
$("steer-no").addEventListener("click", () => { pendingChange = null; $("steer-confirm").hidden = true; });
$("steer-yes").addEventListener("click", async () => {
  const body = pendingChange;
  pendingChange = null;
  $("steer-confirm").hidden = true;
  if (!body) return;
  try {
    const { applied } = await api("api/runs/current/control", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    $("steer-message").textContent = applied.detail;
  } catch (error) {
    $("steer-message").textContent = error.message;
  }
  refresh();
});

function refreshCharts() {
  const stamp = Date.now();
  for (const image of document.querySelectorAll("img[data-chart]")) {
    image.src = withToken(`api/charts/${image.dataset.chart}?t=${stamp}`);
  }
}

async function refresh() {
  try {
    render(await api("api/status"));
    refreshCharts();
  } catch (error) {
    $("run-state").textContent = "controller unreachable: " + error.message;
  }
}

async function refreshRuns() {
  try {
    const { runs } = await api("api/runs");
    rows("runs", runs, (run) => {
      const links = document.createElement("span");
      for (const [label, path] of [["report", "report.html"], ["JSON", "summary.json"]]) {
        const link = document.createElement("a");
        link.href = withToken(`api/runs/${run.id}/${path}`);
        link.textContent = label;
        link.style.marginRight = ".6em";
        links.appendChild(link);
      }
      return [run.id, run.scenario, run.status, new Date(run.started_at_ms).toLocaleString(), links];
    });
  } catch (error) {
    rows("runs", [], () => []);
  }
}

$("stop").addEventListener("click", async () => {
  $("stop").disabled = true;
  try { await api("api/runs/current/stop", { method: "POST" }); } catch (error) { alert(error.message); }
  refresh();
});

$("start-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const path = $("start-path").value.trim();
  const source = $("start-source").value;
  const body = path ? { path } : { scenario: source };
  try {
    await api("api/runs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    $("start-message").textContent = "starting…";
  } catch (error) {
    $("start-message").textContent = error.message;
  }
  refresh();
});

const feed = new EventSource(withToken("api/live"));
feed.onmessage = (event) => {
  const update = JSON.parse(event.data);
  if (update.type === "finished" || update.type === "started") refreshRuns();
  refresh();
};
refresh();
refreshRuns();
setInterval(refresh, 1000);
setInterval(refreshRuns, 10000);
