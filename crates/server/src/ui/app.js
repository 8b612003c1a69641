"use strict";
// The dashboard: renders /_emulator/topology, and renders it again whenever the event
// stream (/_emulator/events) reports a change. No framework, no build step.
const $ = (selector) => document.querySelector(selector);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const or = (v) => (v == null || v === "" ? "—" : esc(v));
const code = (v, kind) => (v == null ? "—" : `<code data-endpoint="${kind}">${esc(v)}</code>`);
let defaultRegion = "";
let loading = null;

function say(text, error = false) {
  const m = $("#message");
  m.textContent = text;
  m.className = error ? "error" : "";
  m.hidden = false;
}

async function load() {
  try {
    const r = await fetch("/_emulator/topology", { cache: "no-store" });
    if (!r.ok) throw new Error(`GET /_emulator/topology: HTTP ${r.status} ${await r.text()}`);
    render(await r.json());
  } catch (e) {
    say(e.message, true);
  }
}

// Bursts of events (a failover writes several) make one fetch.
function reload() {
  if (!loading) loading = setTimeout(() => { loading = null; load(); }, 100);
}

function render(t) {
  defaultRegion = t.default_region;
  $("#region-name").textContent = `default region ${t.default_region}`;
  $("#topology").innerHTML = t.regions.map(region).join("");
  const b = document.body;
  b.dataset.renders = Number(b.dataset.renders) + 1;
  if (!b.dataset.firstRender) b.dataset.firstRender = Math.round(performance.now());
}

function region(r) {
  const own = r.name === defaultRegion;
  const down = r.zones.length > 0 && r.zones.every((z) => z.outage);
  return `<section class="region" data-region="${esc(r.name)}">
  <div class="region-head"><h2>${esc(r.name)}</h2>
    <button data-action="region-outage" data-region="${esc(r.name)}" data-down="${down}">${down ? "End" : "Start"} region outage</button></div>
  <div class="zones">${r.zones.map((z) => zone(z, r.nodes.filter((n) => n.availability_zone === z.name), own)).join("")}</div>
  ${groups(r.replication_groups, own)}${clusters(r.cache_clusters)}${serverless(r.serverless_caches)}${globals(r.global_datastores)}
</section>`;
}

function zone(z, nodes, own) {
  const button = own
    ? `<button data-action="zone-outage" data-zone="${esc(z.name)}" data-down="${z.outage}">${z.outage ? "End outage" : "Start outage"}</button>`
    : "";
  nodes.sort((a, b) => (a.replication_group_id || a.cache_cluster_id).localeCompare(b.replication_group_id || b.cache_cluster_id)
    || (a.role === "primary" ? -1 : 0) - (b.role === "primary" ? -1 : 0) || a.cache_cluster_id.localeCompare(b.cache_cluster_id));
  return `<div class="zone${z.outage ? " outage" : ""}" data-zone="${esc(z.name)}" data-outage="${z.outage}">
  <div class="zone-head"><span>${esc(z.name)}${z.outage ? " (outage)" : ""}</span>${button}</div>
  ${nodes.map(node).join("") || '<p class="empty">no nodes</p>'}
</div>`;
}

function node(n) {
  const role = n.role || "node";
  const id = `${n.cache_cluster_id}/${n.cache_node_id}`;
  const owner = n.serverless_cache ? `serverless ${n.serverless_cache}`
    : n.replication_group_id ? `${n.replication_group_id} shard ${n.node_group_id ?? ""}` : "";
  const act = (verb) => `<button data-action="node" data-verb="${verb}" data-cluster="${esc(n.cache_cluster_id)}" data-node-id="${esc(n.cache_node_id)}"${verb === "kill" ? ' class="danger"' : ""}>${verb}</button>`;
  return `<div class="node" data-node="${esc(id)}" data-role="${esc(role)}" data-health="${esc(n.health)}" data-port="${esc(n.port)}">
  <div><span class="id">${esc(n.cache_cluster_id)}</span>/${esc(n.cache_node_id)} <span class="role">${esc(role)}</span></div>
  <div><span class="health ${esc(n.health)}">${esc(n.health)}</span> · ${esc(n.status)}${n.pid ? ` · pid ${esc(n.pid)}` : ""}</div>
  <div class="muted">${esc(n.engine)} ${esc(n.engine_version)} · ${esc(n.address)}:${esc(n.port)}${owner ? ` · ${esc(owner)}` : ""}</div>
  <div class="actions">${act("kill")}${act("stop")}${act("resume")}</div>
</div>`;
}

function groups(list, own) {
  if (!list.length) return "";
  const rows = list.map((g) => {
    const shards = g.shards.map((s) => `<div data-shard="${esc(s.id)}">${esc(s.id)}${s.slots ? ` slots <code>${esc(s.slots)}</code>` : ""}:
      primary <b data-shard-primary="${esc(s.primary)}">${or(s.primary)}</b>, members ${s.members.map(esc).join(", ")} ${own ? `<button data-action="failover" data-group="${esc(g.id)}" data-shard="${esc(s.id)}">TestFailover</button>` : ""}</div>`).join("");
    return `<tr data-group="${esc(g.id)}" data-status="${esc(g.status)}">
      <td><b>${esc(g.id)}</b><div class="muted">${esc(g.engine)} ${or(g.engine_version)}${g.cluster_mode ? " · cluster mode" : ""}</div></td>
      <td>${esc(g.status)}<div class="muted">failover ${or(g.automatic_failover)} · Multi-AZ ${or(g.multi_az)}</div></td>
      <td>primary ${code(g.primary_endpoint, "primary")}<br>reader ${code(g.reader_endpoint, "reader")}<br>configuration ${code(g.configuration_endpoint, "configuration")}</td>
      <td>${shards}</td></tr>`;
  });
  return table("Replication groups", ["Group", "Status", "Endpoints", "Shards"], rows);
}

function clusters(list) {
  const own = list.filter((c) => !c.replication_group_id);
  if (!own.length) return "";
  return table("Cache clusters", ["Cluster", "Status", "Nodes", "Configuration endpoint"], own.map((c) => `<tr data-cluster="${esc(c.id)}">
    <td><b>${esc(c.id)}</b><div class="muted">${esc(c.engine)} ${esc(c.engine_version)}</div></td><td>${esc(c.status)}</td>
    <td>${c.nodes.map((n) => `${esc(n.id)} ${code(n.endpoint, "node")}`).join("<br>")}</td><td>${code(c.configuration_endpoint, "configuration")}</td></tr>`));
}

function serverless(list) {
  if (!list.length) return "";
  return table("Serverless caches", ["Cache", "Status", "Endpoint", "Reader endpoint"], list.map((c) => `<tr data-serverless="${esc(c.name)}">
    <td><b>${esc(c.name)}</b><div class="muted">${esc(c.engine)} ${or(c.engine_version)}</div></td><td>${esc(c.status)}</td>
    <td>${code(c.endpoint, "endpoint")}</td><td>${code(c.reader_endpoint, "reader")}</td></tr>`));
}

function globals(list) {
  if (!list.length) return "";
  return table("Global datastores", ["Datastore", "Status", "Members"], list.map((g) => `<tr data-global="${esc(g.id)}">
    <td><b>${esc(g.id)}</b></td><td>${esc(g.status)}</td>
    <td>${g.members.map((m) => `${esc(m.role)} ${esc(m.replication_group_id)} in ${esc(m.region)} (${or(m.status)})`).join("<br>")}</td></tr>`));
}

function table(title, heads, rows) {
  return `<h3>${title}</h3><table><tr>${heads.map((h) => `<th>${h}</th>`).join("")}</tr>${rows.join("")}</table>`;
}

function addEvent(html, attrs) {
  const li = document.createElement("li");
  for (const [k, v] of Object.entries(attrs)) li.dataset[k] = v;
  li.innerHTML = html;
  const list = $("#events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

function onElastiCacheEvent(e) {
  const time = new Date(e.date).toLocaleTimeString();
  addEvent(`<span class="when">${esc(time)} ${esc(e.region)} ${esc(e.source_type)}</span><br><b>${esc(e.source_identifier)}</b> ${esc(e.message)}`,
    { eventId: e.id, source: e.source_identifier });
}

function onNodeChange(c) {
  const n = c.node || c.previous;
  const p = c.previous;
  if (!p || !c.node) return;
  const changes = ["role", "health", "status"].filter((k) => p[k] !== n[k]).map((k) => `${k} ${or(p[k])} → ${or(n[k])}`);
  addEvent(`<span class="when">${esc(new Date().toLocaleTimeString())} node</span><br><b>${esc(n.cache_cluster_id)}/${esc(n.cache_node_id)}</b> ${changes.join(", ")}`,
    { changedNode: `${n.cache_cluster_id}/${n.cache_node_id}` });
}

async function act(d) {
  const enc = encodeURIComponent;
  switch (d.action) {
    case "node": return admin("POST", `/_emulator/nodes/${enc(d.cluster)}/${enc(d.nodeId)}/${d.verb}`);
    case "zone-outage": return admin(d.down === "true" ? "DELETE" : "POST", `/_emulator/zones/${enc(d.zone)}/outage`);
    case "region-outage": return admin(d.down === "true" ? "DELETE" : "POST", `/_emulator/regions/${enc(d.region)}/outage`);
    case "backups": return admin("POST", "/_emulator/snapshots/automated");
    case "maintenance": return admin("POST", "/_emulator/maintenance");
    case "failover": return testFailover(d.group, d.shard);
  }
}

async function admin(method, path) {
  const r = await fetch(path, { method });
  const text = await r.text();
  if (!r.ok) {
    let message = text;
    try { message = JSON.parse(text).message || text; } catch { /* not JSON */ }
    throw new Error(`${method} ${path}: ${message}`);
  }
  say(`${method} ${path}: ${text}`);
}

// The Query API, unsigned: accepted in the default permissive auth mode; a refusal shows
// AWS's error code and message.
async function testFailover(group, shard) {
  const body = new URLSearchParams({ Action: "TestFailover", ReplicationGroupId: group, NodeGroupId: shard, Version: "2015-02-02" });
  const r = await fetch("/", { method: "POST", body });
  const text = await r.text();
  if (!r.ok) {
    const xml = new DOMParser().parseFromString(text, "application/xml");
    const c = xml.querySelector("Code")?.textContent;
    const m = xml.querySelector("Message")?.textContent;
    throw new Error(`TestFailover ${group} shard ${shard}: ${c ? `${c}: ${m}` : text}`);
  }
  say(`TestFailover ${group} shard ${shard}: started`);
}

document.addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-action]");
  if (!button) return;
  button.disabled = true;
  try {
    await act(button.dataset);
  } catch (error) {
    say(error.message, true);
  } finally {
    button.disabled = false;
    reload();
  }
});

const stream = new EventSource("/_emulator/events");
stream.addEventListener("open", () => { document.body.dataset.live = "open"; });
stream.addEventListener("error", () => { document.body.dataset.live = "error"; });
stream.addEventListener("elasticache", (e) => { onElastiCacheEvent(JSON.parse(e.data)); reload(); });
stream.addEventListener("node", (e) => { onNodeChange(JSON.parse(e.data)); reload(); });
load();
