// The dashboard: polls /v1/status every second, shows the members and the mode, and runs shell
// lines through /v1/shell. No framework, no build. Everything from the node is shown with
// textContent, never parsed as HTML: member names come from other machines.
const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "pk-token";

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "never";
  if (ms < 1000) return `${ms}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (className) td.className = className;
  row.appendChild(td);
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body?.error?.message ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function needToken(response) {
  if (response.status !== 401) return false;
  $("auth").hidden = false;
  $("error").textContent = "this node needs the cluster token";
  return true;
}

async function poll() {
  try {
    const response = await fetch("/v1/status", { headers: headers(), cache: "no-store" });
    if (needToken(response)) return;
    if (!response.ok) throw new Error(await errorText(response));
    const status = await response.json();
    $("error").textContent = "";
    $("id").textContent = status.id;
    $("name").textContent = status.name || "-";
    $("role").textContent = status.role;
    $("mode").textContent = status.mode;
    $("mode").className = `mode-${status.mode}`;
    $("uptime").textContent = duration(status.uptimeMs);
    const body = $("members");
    const rows = [];
    for (const member of status.members) {
      const row = document.createElement("tr");
      cell(row, member.id);
      cell(row, member.name || "-");
      cell(row, member.addr);
      cell(row, member.role);
      cell(row, member.state, `state-${member.state}`);
      cell(row, member.incarnation);
      cell(row, member.id === status.id ? "self" : duration(member.lastHeardMs));
      rows.push(row);
    }
    body.replaceChildren(...rows);
  } catch (error) {
    $("error").textContent = `node unreachable: ${error.message}`;
  }
}

$("shell").addEventListener("submit", async (event) => {
  event.preventDefault();
  const line = $("line").value;
  const output = $("output");
  try {
    const response = await fetch("/v1/shell", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ line }),
    });
    if (needToken(response)) return;
    if (!response.ok) throw new Error(await errorText(response));
    const result = await response.json();
    output.textContent = result.output;
    output.className = result.ok ? "" : "error";
  } catch (error) {
    output.textContent = error.message;
    output.className = "error";
  }
});

$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  $("auth").hidden = true;
  poll();
});

poll();
setInterval(poll, 1000);
