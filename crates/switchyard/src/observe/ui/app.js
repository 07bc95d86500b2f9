// Switchyard's admin UI: a page over the JSON API at /api/v1 (the same calls any client
// makes). Every value that comes from an event is put on the page as text, never as markup.
"use strict";

const TERMINAL = new Set(["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]);
const DECISIONS = ["skipped", "ran", "dead", "absorbed", "fired", "shadow"];

// ---- the API -------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem("switchyard.token");
}

function headers() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

class ApiError extends Error {}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (res.status === 401) {
    askForToken();
    throw new ApiError("this admin server needs its token");
  }
  let body = null;
  try {
    body = await res.json();
  } catch (_) {
    body = null;
  }
  if (!res.ok) {
    throw new ApiError((body && body.error) || res.status + " " + res.statusText);
  }
  return body;
}

// Server-Sent Events over fetch (EventSource cannot send the token). Calls `onLine` with each
// decision and `onLagged` with the number skipped; returns a function that stops it.
function tap(filter, onLine, onLagged, onState) {
  const stop = new AbortController();
  const query = new URLSearchParams(Object.entries(filter).filter(([, v]) => v)).toString();
  (async () => {
    while (!stop.signal.aborted) {
      try {
        const res = await fetch("/api/v1/tap?" + query, { headers: headers(), signal: stop.signal });
        if (res.status === 401) {
          askForToken();
          return;
        }
        if (!res.ok || !res.body) throw new Error(res.statusText);
        onState(true);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            frame(buffer.slice(0, end), onLine, onLagged);
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (_) {
        if (stop.signal.aborted) return;
      }
      onState(false);
      await sleep(1000, stop.signal);
    }
  })();
  return () => stop.abort();
}

function frame(text, onLine, onLagged) {
  let kind = "message";
  const data = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return;
  if (kind === "lagged") onLagged(Number(data.join("")));
  else {
    try {
      onLine(JSON.parse(data.join("\n")));
    } catch (_) {
      /* a frame that is not JSON is not a decision */
    }
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(t); resolve(); });
  });
}

// ---- building the page ---------------------------------------------------------------

// el("a", {href: "#/x", class: "c"}, "text", child...): strings become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "href") node.setAttribute("href", safeHref(v));
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// Only links inside this page or to http(s) pages (the Prefect UI).
function safeHref(v) {
  const s = String(v);
  if (s.startsWith("#")) return s;
  try {
    const u = new URL(s, location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : "#";
  } catch (_) {
    return "#";
  }
}

function when(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString(undefined, { hour12: false });
}

function badge(text, kind) {
  return el("span", { class: "badge " + (kind || String(text).toLowerCase()) }, text);
}

function table(head, rows, empty) {
  if (!rows.length) return el("p", { class: "muted" }, empty || "Nothing here.");
  return el("table", {},
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function card(title, value, extra) {
  return el("div", { class: "card" }, el("div", { class: "card-title" }, title),
    el("div", { class: "card-value" }, value), extra || "");
}

function say(message, kind) {
  const s = document.getElementById("status");
  s.textContent = message || "";
  s.className = "status " + (kind || "");
}

function shortId(id) {
  return id && id.length > 18 ? id.slice(0, 8) + "…" + id.slice(-6) : id;
}

function eventLink(id) {
  return el("a", { href: "#/events/" + encodeURIComponent(id), class: "mono", title: id }, shortId(id));
}

// ---- pages ---------------------------------------------------------------------------
// A page renders into `view` and returns a function that stops its timers and streams.

async function overview(view) {
  let last = null;
  const draw = async () => {
    const o = await api("/api/v1/overview");
    const now = Date.now();
    const rate = (src) => {
      if (!last || !last.rates[src.name]) return "–";
      const [n, t] = last.rates[src.name];
      return ((src.received - n) / ((now - t) / 1000)).toFixed(1) + "/s";
    };
    const prefect = o.prefect.healthy
      ? badge("healthy", "ok")
      : badge("unreachable", "dead");
    const cards = el("div", { class: "cards" },
      card("Prefect", prefect, el("div", { class: "muted small" },
        o.prefect.error ? o.prefect.error + " · " : "", el("a", { href: o.prefect.ui, target: "_blank", rel: "noopener" }, "open the Prefect UI"))),
      card("In-flight limit", o.prefect.in_flight_limit.toFixed(1)),
      card("Queued", o.queue_depth),
      card("Pending in the journal", o.journal.pending_events ?? "?"),
      card("Open dead letters", el("a", { href: "#/dead-letters", id: "open-dead-letters" }, String(o.journal.dead_letters_open ?? "?"))));
    const sources = table(["Source", "What", "Connected", "Rate", "Received", "Accepted", "Refused"],
      o.sources.map((s) => el("tr", {},
        el("td", {}, el("a", { href: "#/events?source=" + encodeURIComponent(s.name) }, s.name)),
        el("td", { class: "muted" }, s.describe),
        el("td", {}, s.up === null ? badge("n/a", "muted") : s.up ? badge("up", "ok") : badge("down", "dead")),
        el("td", {}, rate(s)), el("td", {}, s.received), el("td", {}, s.accepted), el("td", {}, s.refused))),
      "No sources.");
    const routes = table(["Route", "From", ...DECISIONS],
      o.routes.map((r) => el("tr", {},
        el("td", {}, el("a", { href: "#/events?route=" + encodeURIComponent(r.name) }, r.name)),
        el("td", { class: "muted" }, r.from.join(", ")),
        DECISIONS.map((d) => el("td", { class: r.decisions[d] ? "" : "muted" }, r.decisions[d] || 0)))),
      "No routes.");
    view.replaceChildren(el("h1", {}, "Overview"), cards,
      el("h2", {}, "Sources"), sources, el("h2", {}, "Routes"), routes,
      el("p", { class: "muted small" }, "Switchyard " + o.version + " · metrics at ", el("a", { href: "/metrics" }, "/metrics"),
        " · API at ", el("a", { href: "/api/v1/openapi.json" }, "/api/v1/openapi.json")));
    last = { rates: Object.fromEntries(o.sources.map((s) => [s.name, [s.received, now]])) };
  };
  return poll(draw, 2000);
}

const EVENT_FILTERS = [
  ["status", "Status", ["", "pending", "done", "dead"]],
  ["source", "Source"], ["route", "Route"], ["name", "Name"], ["q", "Text in payload or labels"],
  ["since", "Since (RFC 3339)"], ["until", "Until (RFC 3339)"],
];

async function events(view, params) {
  const form = el("form", { class: "filters", id: "event-filters" },
    EVENT_FILTERS.map(([key, label, options]) => el("label", {}, label,
      options
        ? el("select", { name: key }, options.map((o) => el("option", { value: o, selected: params.get(key) === o }, o || "any")))
        : el("input", { name: key, value: params.get(key) || "", placeholder: key === "since" || key === "until" ? "2026-12-01T00:00:00Z" : "" }))),
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));
    location.hash = "#/events" + (q.toString() ? "?" + q : "");
  });
  const live = el("span", { class: "live", id: "live" }, "");
  const body = el("div", { id: "event-list" });
  const more = el("button", { type: "button", hidden: true }, "Older events");
  view.replaceChildren(el("h1", {}, "Events ", live), form, body, more);
  let next = null;
  let rows = [];
  const load = async (cursor) => {
    const q = new URLSearchParams(params);
    q.set("limit", "50");
    if (cursor) q.set("cursor", cursor);
    const page = await api("/api/v1/events?" + q);
    const fresh = page.events.map((e) => el("tr", { "data-event": e.id },
      el("td", {}, when(e.accepted_at)), el("td", {}, eventLink(e.id)), el("td", {}, e.source),
      el("td", {}, e.name), el("td", {}, badge(e.status)),
      el("td", {}, e.runs.map((r) => el("span", { class: "mono", title: r }, shortId(r) + " ")))));
    rows = cursor ? rows.concat(fresh) : fresh;
    next = page.next;
    more.hidden = !next;
    body.replaceChildren(table(["Accepted", "Event", "Source", "Name", "Status", "Runs"], rows,
      "No events match."));
  };
  more.addEventListener("click", () => load(next).catch((e) => say(e.message, "error")));
  await load(null);
  // Live: any decision may change the first page; reload it (at most every 500 ms).
  let timer = null;
  const stop = tap({ source: params.get("source"), route: params.get("route") }, () => {
    if (timer || next && rows.length > 50) return;
    timer = setTimeout(() => { timer = null; load(null).catch((e) => say(e.message, "error")); }, 500);
  }, () => {}, (up) => { live.textContent = up ? "● live" : "○ reconnecting"; live.className = up ? "live on" : "live"; });
  return () => { stop(); clearTimeout(timer); };
}

async function eventPage(view, id) {
  const draw = async () => {
    const d = await api("/api/v1/events/" + encodeURIComponent(id));
    const e = d.event;
    const steps = [
      { at: e.occurred, what: "occurred", detail: "as the producer says" },
      { at: e.received, what: "received", detail: "from source " + e.source },
      { at: d.accepted_at, what: "accepted", detail: "journaled for routing" },
      ...d.decisions.map((x) => ({
        at: x.at, what: x.route + ": " + x.kind.replaceAll("_", " "),
        detail: [x.detail, x.deployment && "deployment " + x.deployment, x.flow_run_name && "run " + x.flow_run_name,
          x.attempt && "attempt " + x.attempt, x.replayed && "(Prefect already had it)"].filter(Boolean).join(" · "),
        kind: x.kind,
      })),
    ];
    const runs = table(["Flow run", "State", ""],
      d.runs.map((r) => el("tr", { class: "run" },
        el("td", { class: "mono" }, r.id),
        el("td", {}, r.state.type ? badge(r.state.name || r.state.type, r.state.type.toLowerCase()) : badge(r.state.error || "?", "dead")),
        el("td", {}, el("a", { href: r.url, target: "_blank", rel: "noopener" }, "open in Prefect")))),
      "No flow run (yet).");
    const labels = table(["Label", "Value"],
      Object.entries(e.labels || {}).map(([k, v]) => el("tr", {}, el("td", { class: "mono" }, k), el("td", {}, v))), "No labels.");
    view.replaceChildren(
      el("p", {}, el("a", { href: "#/events" }, "← events")),
      el("h1", {}, e.name, " ", badge(d.status)),
      el("p", { class: "mono muted" }, e.id),
      el("h2", {}, "Timeline"),
      el("ol", { class: "timeline", id: "timeline" }, steps.map((s) => el("li", { class: s.kind || "" },
        el("time", {}, when(s.at)), el("strong", {}, s.what), s.detail ? el("span", { class: "muted" }, " — " + s.detail) : ""))),
      el("h2", {}, "Runs"), runs,
      el("h2", {}, "Labels"), labels,
      el("h2", {}, "Payload"), el("pre", { class: "payload" }, JSON.stringify(e.payload, null, 2)));
    const settled = d.status !== "pending" && d.runs.every((r) => !r.state.type || TERMINAL.has(r.state.type));
    return settled ? 10000 : 2000;
  };
  return poll(draw, 2000);
}

async function deadLetters(view, params) {
  const all = params.get("all") === "true";
  const draw = async () => {
    const { dead_letters: list } = await api("/api/v1/dead-letters?limit=500" + (all ? "&all=true" : ""));
    const act = (dl, verb) => async (ev) => {
      ev.target.disabled = true;
      if (verb === "purge" && !confirm("Purge dead letter " + dl.id + "? Its event will not be run.")) {
        ev.target.disabled = false;
        return;
      }
      try {
        const r = await api("/api/v1/dead-letters/" + dl.id + (verb === "replay" ? "/replay" : ""),
          { method: verb === "replay" ? "POST" : "DELETE" });
        say("Dead letter " + dl.id + ": " + r.resolution, "ok");
      } catch (e) {
        say("Dead letter " + dl.id + ": " + e.message, "error");
      }
      await draw();
    };
    const rows = list.map((dl) => el("tr", { "data-dead-letter": dl.id },
      el("td", {}, dl.id), el("td", {}, when(dl.at)), el("td", {}, eventLink(dl.event_id)), el("td", {}, dl.route),
      el("td", { class: "reason" }, dl.reason), el("td", {}, dl.attempts), el("td", {}, dl.retryable ? "yes" : "no"),
      el("td", {}, dl.resolution
        ? el("span", { class: "muted" }, dl.resolution)
        : [el("button", { type: "button", class: "replay", onclick: act(dl, "replay") }, "Replay"), " ",
          el("button", { type: "button", class: "purge", onclick: act(dl, "purge") }, "Purge")])));
    view.replaceChildren(el("h1", {}, "Dead letters"),
      el("p", {}, all ? el("a", { href: "#/dead-letters" }, "Show open ones only") : el("a", { href: "#/dead-letters?all=true" }, "Show resolved ones too")),
      table(["#", "When", "Event", "Route", "Why", "Attempts", "Transient", ""], rows, "No dead letters. Good."));
  };
  return poll(draw, 5000);
}

async function triggers(view) {
  const draw = async () => {
    const { routes } = await api("/api/v1/routes");
    const stateful = routes.filter((r) => r.state);
    const sections = stateful.map((r) => el("section", { class: "trigger" },
      el("h2", {}, r.name, " ", el("span", { class: "muted small" }, "from " + r.from.join(", "))),
      el("p", {}, r.state.open_buckets + " open " + (r.state.open_buckets === 1 ? "bucket" : "buckets"),
        r.state.next_deadline ? " · next deadline " + when(r.state.next_deadline) : "",
        " · fired " + (r.decisions.fired || 0) + " · absorbed " + (r.decisions.absorbed || 0)),
      table(["Key", "Window opened", "Events", "Fired", "Last"],
        r.state.buckets.map((b) => el("tr", {}, el("td", { class: "mono" }, b.key || "(one bucket)"),
          el("td", {}, when(b.opened)), el("td", {}, b.count), el("td", {}, b.fired ? "yes" : "no"), el("td", {}, when(b.last)))),
        "No open window.")));
    view.replaceChildren(el("h1", {}, "Triggers and batches"),
      sections.length ? el("div", {}, sections) : el("p", { class: "muted" }, "No route has a trigger or a batch."));
  };
  return poll(draw, 3000);
}

async function tapPage(view, params) {
  const filter = { source: params.get("source") || "", route: params.get("route") || "", decision: params.get("decision") || "" };
  const form = el("form", { class: "filters" },
    Object.keys(filter).map((k) => el("label", {}, k, el("input", { name: k, value: filter[k] }))),
    el("button", { type: "submit" }, "Watch"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));
    location.hash = "#/tap" + (q.toString() ? "?" + q : "");
  });
  const live = el("span", { class: "live" });
  const list = el("ol", { class: "tap", id: "tap-lines" });
  view.replaceChildren(el("h1", {}, "Live tap ", live), form, list);
  const add = (node) => {
    list.prepend(node);
    while (list.childElementCount > 500) list.lastElementChild.remove();
  };
  return tap(filter, (t) => add(el("li", { class: t.decision },
    el("time", {}, when(t.at)), " ", el("strong", {}, t.source), " ",
    t.event_id ? eventLink(t.event_id) : "", " ", t.event || "", " ",
    t.route ? "→ " + t.route + " " : "", badge(t.decision), " ",
    t.flow_run_id ? el("span", { class: "mono" }, "run " + shortId(t.flow_run_id)) : "",
    t.detail ? el("span", { class: "muted" }, " — " + t.detail) : "")),
  (n) => add(el("li", { class: "lagged" }, n + " decisions skipped: this page fell behind")),
  (up) => { live.textContent = up ? "● live" : "○ reconnecting"; live.className = up ? "live on" : "live"; });
}

// Runs `draw` now and again after its returned delay (or `every`), until stopped.
function poll(draw, every) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    let delay = every;
    try {
      delay = (await draw()) || every;
      say("");
    } catch (e) {
      say(e.message, "error");
    }
    if (!stopped) timer = setTimeout(tick, delay);
  };
  const first = tick();
  const stop = () => { stopped = true; clearTimeout(timer); };
  return first.then(() => stop);
}

// ---- routing -------------------------------------------------------------------------

let stopPage = null;
let generation = 0;

function askForToken() {
  const form = document.getElementById("token-form");
  form.hidden = false;
  document.getElementById("token").focus();
}

async function route() {
  if (stopPage) stopPage();
  stopPage = null;
  const mine = ++generation;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const view = document.getElementById("view");
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] || "overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("here", a.dataset.page === page);
  view.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  try {
    let stop;
    if (page === "overview") stop = await overview(view);
    else if (page === "events" && parts[1]) stop = await eventPage(view, decodeURIComponent(parts.slice(1).join("/")));
    else if (page === "events") stop = await events(view, params);
    else if (page === "dead-letters") stop = await deadLetters(view, params);
    else if (page === "triggers") stop = await triggers(view);
    else if (page === "tap") stop = await tapPage(view, params);
    else view.replaceChildren(el("h1", {}, "No such page"), el("p", {}, el("a", { href: "#/" }, "Overview")));
    // The hash may have changed while this page loaded: then it stops at once.
    if (mine !== generation) {
      if (stop) stop();
    } else stopPage = stop || null;
  } catch (e) {
    say(e.message, "error");
  }
}

document.getElementById("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("switchyard.token", document.getElementById("token").value);
  document.getElementById("token-form").hidden = true;
  route();
});
window.addEventListener("hashchange", route);
route();
