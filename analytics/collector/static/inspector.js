// The collector's inspector page: polls the /_collector/ JSON routes once a
// second and renders them.  Every value from a message is written with
// textContent (never innerHTML), so nothing a message holds can run here.
"use strict";

(function () {
  const POLL_MS = 1000;
  const PAGE = 100;
  const MAX_LIMIT = 500;

  const state = {
    tab: "events", type: "", event: "", user: "", batch: "",
    selected: null, paused: false, limit: PAGE,
  };
  const last = { events: "", batches: "", refusals: "", stats: "", detail: "" };
  let busy = false;

  const $ = (id) => document.getElementById(id);

  // el("td", {className: "num"}, "text", otherNode): children are text or nodes
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (key === "dataset") Object.assign(node.dataset, value);
        else node[key] = value;
      }
    }
    for (const child of children) {
      node.appendChild(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
    }
    return node;
  }

  function replaceRows(tbody, rows, columns, emptyText) {
    const fragment = document.createDocumentFragment();
    if (!rows.length) {
      fragment.appendChild(el("tr", { className: "empty" }, el("td", { colSpan: columns }, emptyText)));
    }
    for (const row of rows) fragment.appendChild(row);
    tbody.replaceChildren(fragment);
  }

  const number = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
  const ratio = (r) => (r == null ? "–" : (r * 100).toFixed(1) + " %");
  function time(seconds) {
    if (seconds == null) return "";
    const d = new Date(seconds * 1000);
    return d.toLocaleTimeString("en-GB", { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }
  function text(value) {
    if (value == null) return "";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  async function getJSON(path) {
    const response = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!response.ok) {
      let message = "HTTP " + response.status;
      try { message = (await response.json()).message || message; } catch (e) { /* not JSON */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  // -- the URL keeps the view (#tab=events&type=track&message=12) --------------

  function readHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.tab = ["events", "batches", "refusals"].includes(params.get("tab")) ? params.get("tab") : "events";
    state.type = params.get("type") || "";
    state.event = params.get("event") || "";
    state.user = params.get("user") || "";
    state.batch = params.get("batch") || "";
    const selected = parseInt(params.get("message") || "", 10);
    state.selected = Number.isFinite(selected) && selected > 0 ? selected : null;
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (state.tab !== "events") params.set("tab", state.tab);
    for (const key of ["type", "event", "user", "batch"]) if (state[key]) params.set(key, state[key]);
    if (state.selected) params.set("message", String(state.selected));
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }

  function syncForm() {
    $("filter-type").value = state.type;
    $("filter-event").value = state.event;
    $("filter-user").value = state.user;
    $("filter-batch").value = state.batch;
    for (const tab of ["events", "batches", "refusals"]) {
      $("tab-" + tab).setAttribute("aria-selected", String(tab === state.tab));
      $(tab).hidden = tab !== state.tab;
    }
  }

  // -- counters -------------------------------------------------------------------

  function renderStats(stats) {
    $("c-messages").textContent = number(stats.messages);
    $("c-unique").textContent = number(stats.unique);
    $("c-duplicates").textContent = number(stats.duplicates);
    $("c-batches").textContent = number(stats.accepted_batches);
    $("c-refused").textContent = number(stats.refused);
    $("c-dropped").textContent = number(stats.dropped);
    $("c-raw").textContent = number(stats.raw_bytes);
    $("c-requests").textContent = number(stats.requests);
    if (!stats.gzipped_batches) $("c-ratio").textContent = "no gzip";
    else if (stats.gzipped_batches === stats.accepted_batches && stats.raw_bytes)
      $("c-ratio").textContent = ratio(stats.compressed_bytes / stats.raw_bytes);
    else $("c-ratio").textContent = number(stats.gzipped_batches) + " of " + number(stats.accepted_batches) + " gzipped";
    const types = Object.entries(stats.by_type || {}).sort();
    const codes = Object.entries(stats.refusals_by_code || {}).sort();
    $("c-types").textContent =
      (types.length ? "by type: " + types.map(([k, v]) => k + " " + number(v)).join(", ") : "no messages yet") +
      (codes.length ? " · refused by code: " + codes.map(([k, v]) => k + " " + number(v)).join(", ") : "") +
      (stats.listening === false ? " · the collector is down (outage)" : "");
    $("n-batches").textContent = "(" + number(stats.accepted_batches) + ")";
    $("n-refusals").textContent = "(" + number(stats.refused) + ")";
  }

  // -- events -----------------------------------------------------------------------

  function eventsQuery() {
    const params = new URLSearchParams({ limit: String(state.limit) });
    for (const key of ["type", "event", "user", "batch"]) if (state[key]) params.set(key, state[key]);
    return "/_collector/events?" + params.toString();
  }

  function renderEvents(data) {
    const rows = data.events.map((e) => {
      const row = el("tr", { dataset: { id: String(e.id) }, tabIndex: 0 },
        el("td", { className: "num" }, e.id),
        el("td", {}, time(e.received_at)),
        el("td", { className: "type" }, e.type),
        el("td", { className: "event", title: text(e.event) }, text(e.event)),
        el("td", { className: "user mono", title: text(e.user_id || e.anonymous_id) },
          text(e.user_id != null ? e.user_id : e.anonymous_id)),
        el("td", { className: "mono" }, text(e.timestamp)),
        el("td", { className: "mono", title: text(e.message_id) }, text(e.message_id)));
      if (e.duplicate) row.classList.add("dup");
      if (e.id === state.selected) row.classList.add("selected");
      return row;
    });
    const filtered = state.type || state.event || state.user || state.batch;
    replaceRows($("events-table").tBodies[0], rows, 7,
      filtered ? "no message matches these filters" : (data.kept ? "no messages yet: send some" : "message bodies are not kept"));
    $("n-events").textContent = "(" + number(data.latest) + ")";
    $("matching").textContent = filtered
      ? number(data.matching) + " of " + number(data.latest) + " messages match"
      : number(data.latest) + " messages, newest first";
    $("more-events").hidden = data.events.length >= data.matching || state.limit >= MAX_LIMIT;
    const where = !data.stored ? "kept in memory (gone when the collector stops)"
      : data.stored === ":memory:" ? "kept in an in-memory database (gone when the collector stops)"
      : "stored in " + data.stored + " (kept across restarts)";
    $("storage").textContent = where +
      (data.kept ? "" : " · message bodies are not kept (--no-keep-messages)");
  }

  async function showDetail(id, force) {
    const aside = $("detail");
    if (!id) {
      aside.hidden = true;
      last.detail = "";
      return;
    }
    let data;
    try {
      data = await getJSON("/_collector/event?id=" + encodeURIComponent(id));
    } catch (error) {
      aside.hidden = false;
      $("detail-title").textContent = "message " + id;
      $("detail-meta").replaceChildren();
      $("detail-json").textContent = error.status === 404 ? "no such message (the collector was reset?)" : String(error.message);
      return;
    }
    const key = JSON.stringify(data);
    if (!force && key === last.detail && !aside.hidden) return;
    last.detail = key;
    const s = data.summary;
    $("detail-title").textContent = s.type + (s.event != null ? ": " + text(s.event) : "");
    const meta = [
      ["id", s.id], ["messageId", text(s.message_id)], ["userId", text(s.user_id)],
      ["anonymousId", text(s.anonymous_id)], ["timestamp", text(s.timestamp)], ["received", time(s.received_at)],
      ["batch", "#" + s.batch_id + ": " + number(s.batch_messages) + " messages, " + number(s.raw_size) + " bytes" +
        (s.compressed_size != null ? ", gzipped " + number(s.compressed_size) + " (" + ratio(s.gzip_ratio) + ")" : "")],
      ["sentAt", text(s.sent_at)], ["write key", text(s.key_hint)],
    ];
    if (s.duplicate) meta.push(["duplicate", "an earlier message had this messageId"]);
    const fragment = document.createDocumentFragment();
    for (const [name, value] of meta) {
      if (value === "" || value == null) continue;
      fragment.appendChild(el("dt", {}, name));
      fragment.appendChild(el("dd", {}, value));
    }
    $("detail-meta").replaceChildren(fragment);
    $("detail-json").textContent = data.message == null
      ? "(the body was not kept: --no-keep-messages)"
      : JSON.stringify(data.message, null, 2);
    aside.hidden = false;
  }

  function select(id) {
    state.selected = id;
    writeHash();
    for (const row of $("events-table").tBodies[0].rows) {
      row.classList.toggle("selected", row.dataset.id === String(id));
    }
    showDetail(id, true);
  }

  // -- batches and refusals -----------------------------------------------------------

  function renderBatches(data) {
    const rows = data.batches.map((b) => {
      const link = el("a", { href: "#batch=" + b.id, title: "show this batch's messages" }, number(b.messages));
      link.addEventListener("click", (event) => {
        event.preventDefault();
        Object.assign(state, { tab: "events", type: "", event: "", user: "", batch: String(b.id), limit: PAGE });
        changed();
      });
      return el("tr", { dataset: { id: String(b.id) } },
        el("td", { className: "num" }, b.id),
        el("td", {}, time(b.received_at)),
        el("td", { className: "num" }, link),
        el("td", { className: "num" }, number(b.raw_size)),
        el("td", { className: "num" }, b.compressed_size == null ? "–" : number(b.compressed_size)),
        el("td", { className: "num" }, ratio(b.gzip_ratio)),
        el("td", { className: "mono" }, text(b.key_hint)),
        el("td", { title: text(b.user_agent) }, text(b.user_agent)));
    });
    replaceRows($("batches-table").tBodies[0], rows, 8, "no batches yet");
  }

  function renderRefusals(data) {
    const rows = data.refusals.map((r) => el("tr", { dataset: { id: String(r.id) } },
      el("td", { className: "num" }, r.id),
      el("td", {}, time(r.received_at)),
      el("td", { className: "num status" + String(r.status).charAt(0) }, r.status === 0 ? "dropped" : r.status),
      el("td", { className: "mono" }, text(r.code)),
      el("td", { className: "reason", title: text(r.reason) }, text(r.reason)),
      el("td", { className: "mono" }, (r.method ? r.method + " " : "") + text(r.path)),
      el("td", { className: "num" }, number(r.raw_size))));
    replaceRows($("refusals-table").tBodies[0], rows, 7, "nothing refused");
  }

  // -- polling ------------------------------------------------------------------------

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const stats = await getJSON("/_collector/stats");
      const statsKey = JSON.stringify(stats);
      if (statsKey !== last.stats) { last.stats = statsKey; renderStats(stats); }
      if (state.tab === "events") {
        const data = await getJSON(eventsQuery());
        const key = eventsQuery() + JSON.stringify(data);
        if (key !== last.events) { last.events = key; renderEvents(data); }
        if (state.selected) await showDetail(state.selected, false);
      } else if (state.tab === "batches") {
        const data = await getJSON("/_collector/batches?limit=" + MAX_LIMIT);
        const key = JSON.stringify(data);
        if (key !== last.batches) { last.batches = key; renderBatches(data); }
      } else {
        const data = await getJSON("/_collector/refusals?limit=" + MAX_LIMIT);
        const key = JSON.stringify(data);
        if (key !== last.refusals) { last.refusals = key; renderRefusals(data); }
      }
      const status = $("status");
      status.className = "status ok";
      status.textContent = (state.paused ? "paused · " : "live · ") + "updated " + time(Date.now() / 1000);
      document.body.dataset.loaded = "true";
    } catch (error) {
      const status = $("status");
      status.className = "status down";
      status.textContent = "cannot reach the collector (" + (error && error.message ? error.message : "offline") + ")";
    } finally {
      busy = false;
    }
  }

  function changed() {
    last.events = last.batches = last.refusals = "";
    writeHash();
    syncForm();
    refresh();
  }

  let debounce = null;
  function onFilter() {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      state.type = $("filter-type").value;
      state.event = $("filter-event").value.trim();
      state.user = $("filter-user").value.trim();
      state.batch = $("filter-batch").value.trim();
      state.limit = PAGE;
      changed();
    }, 150);
  }

  function start() {
    readHash();
    syncForm();
    $("filter-type").addEventListener("change", onFilter);
    for (const id of ["filter-event", "filter-user", "filter-batch"]) $(id).addEventListener("input", onFilter);
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); onFilter(); });
    $("clear-filters").addEventListener("click", () => {
      Object.assign(state, { type: "", event: "", user: "", batch: "", limit: PAGE });
      changed();
    });
    for (const tab of ["events", "batches", "refusals"]) {
      $("tab-" + tab).addEventListener("click", () => { state.tab = tab; changed(); });
    }
    const tbody = $("events-table").tBodies[0];
    tbody.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-id]");
      if (row) select(parseInt(row.dataset.id, 10));
    });
    tbody.addEventListener("keydown", (event) => {
      const row = event.target.closest("tr[data-id]");
      if (row && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); select(parseInt(row.dataset.id, 10)); }
    });
    $("close-detail").addEventListener("click", () => select(null));
    $("more-events").addEventListener("click", () => {
      state.limit = Math.min(MAX_LIMIT, state.limit + PAGE);
      changed();
    });
    $("pause").addEventListener("click", () => {
      state.paused = !state.paused;
      $("pause").textContent = state.paused ? "Resume" : "Pause";
      $("pause").setAttribute("aria-pressed", String(state.paused));
      if (!state.paused) refresh();
    });
    window.addEventListener("hashchange", () => { readHash(); changed(); if (state.selected) showDetail(state.selected, true); });
    if (state.selected) showDetail(state.selected, true);
    refresh();
    setInterval(() => { if (!state.paused && !document.hidden) refresh(); }, POLL_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
