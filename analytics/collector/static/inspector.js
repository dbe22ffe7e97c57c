// The collector's inspector page: polls the /_collector/ JSON routes once a
// second and renders them.  Every value from a message or a request is written
// with textContent (never innerHTML), so nothing a message holds can run here.
"use strict";

(function () {
  const POLL_MS = 1000;
  const PAGE = 100;
  const TABS = ["events", "requests", "batches", "refusals"];
  const EVENT_FILTERS = ["type", "event", "user", "q", "batch"];

  const state = {
    tab: "events", type: "", event: "", user: "", q: "", batch: "", api: "", refused: false,
    selected: null, // {kind: "message" | "request" | "batch" | "refusal", id}
    paused: false,
  };
  // one pager a list: `before` is null on the newest page (it follows new arrivals),
  // else the id the page starts below; `history` holds the pages to go back to
  const pagers = {};
  for (const tab of TABS) pagers[tab] = { before: null, history: [], first: null, last: null, more: false };
  const last = { list: "", stats: "", detail: "" };
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
  const statusText = (status) => (status === 0 ? "dropped" : String(status));

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

  // The control routes take JSON only, from this page's own origin (the browser sends its Origin).
  async function postJSON(path, body) {
    const response = await fetch(path, {
      method: "POST", cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) throw new Error((data && data.message) || "HTTP " + response.status);
    return data;
  }

  // -- JSON: a collapsible, highlighted tree whose text is the JSON itself -----------------

  // The tree's textContent is exactly JSON.stringify(value, null, 2): the toggles and the
  // "…" of a collapsed node are drawn by CSS, so copying or reading the text gives valid JSON.
  function jsonTree(value) {
    const root = el("code", { className: "json-tree" });
    root.appendChild(jsonNode(value, "", 0));
    return root;
  }

  function jsonNode(value, indent, depth) {
    if (value === null) return el("span", { className: "j-null" }, "null");
    if (typeof value === "string") return el("span", { className: "j-str" }, JSON.stringify(value));
    if (typeof value === "number") return el("span", { className: "j-num" }, JSON.stringify(value));
    if (typeof value === "boolean") return el("span", { className: "j-bool" }, String(value));
    const isArray = Array.isArray(value);
    const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
    const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
    if (!entries.length) return el("span", { className: "j-punct" }, open + close);
    const node = el("span", { className: "j-node" });
    const toggle = el("button", { type: "button", className: "j-toggle", title: "collapse / expand" });
    toggle.setAttribute("aria-expanded", "true");
    toggle.setAttribute("aria-label", (isArray ? "list of " : "object of ") + entries.length);
    node.appendChild(toggle);
    node.appendChild(el("span", { className: "j-punct" }, open));
    node.appendChild(el("span", { className: "j-more", title: entries.length + (entries.length === 1 ? " item" : " items") }));
    const body = el("span", { className: "j-body" });
    const inner = indent + "  ";
    entries.forEach(([key, child], i) => {
      body.appendChild(document.createTextNode("\n" + inner));
      if (!isArray) {
        body.appendChild(el("span", { className: "j-key" }, JSON.stringify(String(key))));
        body.appendChild(document.createTextNode(": "));
      }
      body.appendChild(jsonNode(child, inner, depth + 1));
      if (i < entries.length - 1) body.appendChild(document.createTextNode(","));
    });
    body.appendChild(document.createTextNode("\n" + indent));
    node.appendChild(body);
    node.appendChild(el("span", { className: "j-punct" }, close));
    return node;
  }

  function setCollapsed(node, collapsed) {
    node.classList.toggle("collapsed", collapsed);
    const toggle = node.querySelector(":scope > .j-toggle");
    if (toggle) toggle.setAttribute("aria-expanded", String(!collapsed));
  }

  // A JSON value, or a text that may be JSON, in a <pre>: a tree when it parses, else the text.
  function fillJSON(pre, value, isText) {
    let parsed = value;
    let tree = !isText;
    if (isText && value != null && value !== "") {
      try { parsed = JSON.parse(value); tree = parsed !== null && typeof parsed === "object"; } catch (e) { tree = false; }
    }
    pre.dataset.copy = tree ? JSON.stringify(parsed, null, 2) : (value == null ? "" : String(value));
    pre.replaceChildren(tree ? jsonTree(parsed) : document.createTextNode(value == null ? "" : String(value)));
    pre.classList.toggle("plain", !tree);
  }

  function jsonBlock(label, value, isText) {
    const pre = el("pre", { className: "json" });
    fillJSON(pre, value, isText);
    return el("div", { className: "json-block" },
      el("div", { className: "json-tools" },
        el("span", { className: "label" }, label),
        el("button", { type: "button", className: "expand-all" }, "Expand all"),
        el("button", { type: "button", className: "collapse-all" }, "Collapse all"),
        el("button", { type: "button", className: "copy" }, "Copy")),
      pre);
  }

  async function copyText(value, button) {
    let done = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(value);
        done = true;
      }
    } catch (e) { /* not allowed: the fallback below */ }
    if (!done) {
      const area = el("textarea", { className: "offscreen", value: value, readOnly: true });
      document.body.appendChild(area);
      area.select();
      try { done = document.execCommand("copy"); } catch (e) { done = false; }
      area.remove();
    }
    const before = button.dataset.label || button.textContent;
    button.dataset.label = before;
    button.textContent = done ? "Copied" : "Copy failed";
    setTimeout(() => { button.textContent = before; }, 1500);
  }

  // one listener for every JSON block on the page: toggles, expand/collapse all, copy
  function onJSONClick(event) {
    const toggle = event.target.closest(".j-toggle");
    if (toggle) {
      const node = toggle.parentElement;
      setCollapsed(node, !node.classList.contains("collapsed"));
      return;
    }
    const block = event.target.closest(".json-block");
    if (!block) return;
    const pre = block.querySelector("pre");
    if (event.target.closest(".copy")) copyText(pre.dataset.copy || pre.textContent, event.target.closest(".copy"));
    else if (event.target.closest(".expand-all")) pre.querySelectorAll(".j-node").forEach((n) => setCollapsed(n, false));
    else if (event.target.closest(".collapse-all")) {
      // everything but the outermost level, so its keys stay in sight
      pre.querySelectorAll(".j-node").forEach((n) => setCollapsed(n, true));
      const top = pre.querySelector(".json-tree > .j-node");
      if (top) setCollapsed(top, false);
    }
  }

  // -- the URL keeps the view (#tab=events&type=track&message=12&before=300) --------------

  function readHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.tab = TABS.includes(params.get("tab")) ? params.get("tab") : "events";
    for (const key of EVENT_FILTERS) state[key] = params.get(key) || "";
    state.api = params.get("api") || "";
    state.refused = params.get("refused") === "1";
    state.selected = null;
    for (const kind of ["message", "request", "batch"]) {
      const id = parseInt(params.get(kind) || "", 10);
      if (Number.isFinite(id) && id > 0) state.selected = { kind: kind, id: id };
    }
    const before = parseInt(params.get("before") || "", 10);
    const pager = pagers[state.tab];
    if (Number.isFinite(before) && before > 0 && before !== pager.before) {
      pager.before = before;
      pager.history = [null];
    }
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (state.tab !== "events") params.set("tab", state.tab);
    for (const key of EVENT_FILTERS) if (state[key]) params.set(key, state[key]);
    if (state.api) params.set("api", state.api);
    if (state.refused) params.set("refused", "1");
    if (pagers[state.tab].before) params.set("before", String(pagers[state.tab].before));
    if (state.selected && state.selected.kind !== "refusal") params.set(state.selected.kind, String(state.selected.id));
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }

  function syncForm() {
    $("filter-type").value = state.type;
    $("filter-event").value = state.event;
    $("filter-user").value = state.user;
    $("filter-q").value = state.q;
    $("filter-batch").value = state.batch;
    $("filter-api").value = state.api;
    $("filter-refused").checked = state.refused;
    for (const tab of TABS) {
      $("tab-" + tab).setAttribute("aria-selected", String(tab === state.tab));
      $(tab).hidden = tab !== state.tab;
    }
    $("export").href = "/_collector/export" + filterQuery();
  }

  function filterQuery() {
    const params = new URLSearchParams();
    for (const key of EVENT_FILTERS) if (state[key]) params.set(key, state[key]);
    const query = params.toString();
    return query ? "?" + query : "";
  }

  // -- counters -------------------------------------------------------------------------

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
      (stats.pending_faults ? " · " + number(stats.pending_faults) + " fault(s) pending" : "") +
      (stats.listening === false ? " · the collector is down (outage)" : "");
    $("n-batches").textContent = "(" + number(stats.accepted_batches) + ")";
    $("n-refusals").textContent = "(" + number(stats.refused) + ")";
  }

  // -- paging -----------------------------------------------------------------------------

  // Each list asks for one row more than it shows: that row says an older page exists.
  function pageQuery(tab) {
    const params = new URLSearchParams({ limit: String(PAGE + 1) });
    if (pagers[tab].before) params.set("before", String(pagers[tab].before));
    return params;
  }

  function paged(tab, items) {
    const pager = pagers[tab];
    pager.more = items.length > PAGE;
    const shown = items.slice(0, PAGE);
    pager.first = shown.length ? shown[0].id : null;
    pager.last = shown.length ? shown[shown.length - 1].id : null;
    return shown;
  }

  function renderPager(tab, noun) {
    const pager = pagers[tab];
    const box = $("pager-" + tab);
    const newest = el("button", { type: "button", className: "newest", disabled: pager.before == null }, "⇤ Newest");
    const newer = el("button", { type: "button", className: "newer", disabled: pager.before == null }, "← Newer");
    const older = el("button", { type: "button", className: "older", disabled: !pager.more }, "Older →");
    const where = pager.first == null ? "" : noun + " #" + number(pager.first) +
      (pager.last !== pager.first ? "–#" + number(pager.last) : "") + (pager.before == null ? " (newest, live)" : "");
    newest.addEventListener("click", () => { pager.before = null; pager.history = []; changed(); });
    newer.addEventListener("click", () => {
      pager.before = pager.history.length ? pager.history.pop() : null;
      changed();
    });
    older.addEventListener("click", () => {
      if (!pager.more) return;
      pager.history.push(pager.before);
      pager.before = pager.last;
      changed();
    });
    box.replaceChildren(newest, newer, el("span", { className: "where note" }, where), older);
  }

  function resetPager(tab) {
    pagers[tab].before = null;
    pagers[tab].history = [];
  }

  // -- events -----------------------------------------------------------------------------

  function eventsQuery() {
    const params = pageQuery("events");
    for (const key of EVENT_FILTERS) if (state[key]) params.set(key, state[key]);
    return "/_collector/events?" + params.toString();
  }

  function renderEvents(data) {
    const events = paged("events", data.events);
    const rows = events.map((e) => {
      const row = el("tr", { dataset: { id: String(e.id) }, tabIndex: 0 },
        el("td", { className: "num" }, e.id),
        el("td", {}, time(e.received_at)),
        el("td", { className: "type" }, e.type),
        el("td", { className: "event", title: text(e.event) }, text(e.event)),
        el("td", { className: "user mono", title: text(e.user_id || e.anonymous_id) },
          text(e.user_id != null ? e.user_id : e.anonymous_id)),
        el("td", { className: "mono wide-only" }, text(e.timestamp)),
        el("td", { className: "mono wide-only", title: text(e.message_id) }, text(e.message_id)));
      if (e.duplicate) row.classList.add("dup");
      if (isSelected("message", e.id)) row.classList.add("selected");
      return row;
    });
    const filtered = EVENT_FILTERS.some((key) => state[key]);
    replaceRows($("events-table").tBodies[0], rows, 7,
      filtered ? "no message matches these filters" : (data.kept ? "no messages yet: send some" : "message bodies are not kept"));
    $("n-events").textContent = "(" + number(data.latest) + ")";
    $("matching").textContent = filtered
      ? number(data.matching) + " of " + number(data.latest) + " messages match"
      : number(data.latest) + " messages, newest first";
    renderPager("events", "messages");
    const where = !data.stored ? "kept in memory (gone when the collector stops)"
      : data.stored === ":memory:" ? "kept in an in-memory database (gone when the collector stops)"
      : "stored in " + data.stored + " (kept across restarts)";
    $("storage").textContent = where +
      (data.kept ? "" : " · message bodies and requests are not kept (--no-keep-messages)");
  }

  // -- requests, batches, refusals ------------------------------------------------------------

  function requestsQuery() {
    const params = pageQuery("requests");
    if (state.api) params.set("api", state.api);
    if (state.refused) params.set("refused", "1");
    return "/_collector/requests?" + params.toString();
  }

  function renderRequests(data) {
    const items = paged("requests", data.requests);
    const rows = items.map((r) => {
      const refused = !(r.status >= 200 && r.status <= 299);
      const what = refused ? text(r.reason) : (r.batch_id != null ? "batch #" + r.batch_id : "");
      const row = el("tr", { dataset: { id: String(r.id) }, tabIndex: 0 },
        el("td", { className: "num" }, r.id),
        el("td", { className: "wide-only" }, time(r.received_at)),
        el("td", { className: "api" }, r.api || "no API"),
        el("td", { className: "mono", title: r.method + " " + r.path + (r.query ? "?" + r.query : "") },
          r.method + " " + r.path),
        el("td", { className: "num status" + String(r.status).charAt(0) }, statusText(r.status)),
        el("td", { className: "reason wide-only", title: what }, what),
        el("td", { className: "num wide-only" }, number(r.body_size)));
      if (isSelected("request", r.id)) row.classList.add("selected");
      return row;
    });
    const filtered = state.api || state.refused;
    replaceRows($("requests-table").tBodies[0], rows, 7, !data.kept
      ? "requests are not kept (--no-keep-messages)"
      : filtered ? "no request matches these filters" : "no requests yet");
    $("requests-matching").textContent = number(data.matching) + (filtered ? " matching" : "") +
      " request(s) to " + (state.api && state.api !== "other" ? state.api : "every API") + ", newest first";
    $("n-requests").textContent = filtered ? "" : "(" + number(data.matching) + ")";
    renderPager("requests", "requests");
  }

  function renderBatches(data) {
    const items = paged("batches", data.batches);
    const rows = items.map((b) => {
      const link = el("a", { href: "#batch=" + b.id, title: "show this batch's messages", className: "messages-link" },
        number(b.messages));
      link.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        showBatchMessages(b.id);
      });
      const row = el("tr", { dataset: { id: String(b.id) }, tabIndex: 0 },
        el("td", { className: "num" }, b.id),
        el("td", {}, time(b.received_at)),
        el("td", { className: "num" }, link),
        el("td", { className: "num" }, number(b.raw_size)),
        el("td", { className: "num wide-only" }, b.compressed_size == null ? "–" : number(b.compressed_size)),
        el("td", { className: "num" }, ratio(b.gzip_ratio)),
        el("td", { className: "mono wide-only" }, text(b.key_hint)),
        el("td", { className: "mono wide-only" }, b.sent_at == null ? "absent" : text(b.sent_at)),
        el("td", { className: "wide-only", title: text(b.user_agent) }, text(b.user_agent)));
      if (isSelected("batch", b.id)) row.classList.add("selected");
      return row;
    });
    replaceRows($("batches-table").tBodies[0], rows, 9, "no batches yet");
    renderPager("batches", "batches");
  }

  function renderRefusals(data) {
    const items = paged("refusals", data.refusals);
    const rows = items.map((r) => {
      const row = el("tr", { dataset: { id: String(r.id), request: r.request_id == null ? "" : String(r.request_id) },
        tabIndex: 0 },
        el("td", { className: "num" }, r.id),
        el("td", {}, time(r.received_at)),
        el("td", { className: "num status" + String(r.status).charAt(0) }, statusText(r.status)),
        el("td", { className: "mono" }, text(r.code)),
        el("td", { className: "reason", title: text(r.reason) }, text(r.reason)),
        el("td", { className: "mono wide-only" }, (r.method ? r.method + " " : "") + text(r.path)),
        el("td", { className: "num wide-only" }, number(r.raw_size)));
      if (isSelected("refusal", r.id)) row.classList.add("selected");
      return row;
    });
    replaceRows($("refusals-table").tBodies[0], rows, 7, "nothing refused");
    renderPager("refusals", "refusals");
  }

  function showBatchMessages(batchId) {
    Object.assign(state, { tab: "events", type: "", event: "", user: "", q: "", batch: String(batchId) });
    resetPager("events");
    changed();
  }

  // -- the detail panel ------------------------------------------------------------------------

  function isSelected(kind, id) {
    return state.selected != null && state.selected.kind === kind && state.selected.id === id;
  }

  function metaList(pairs) {
    const fragment = document.createDocumentFragment();
    for (const [name, value] of pairs) {
      if (value === "" || value == null) continue;
      fragment.appendChild(el("dt", {}, name));
      fragment.appendChild(el("dd", {}, value));
    }
    $("detail-meta").replaceChildren(fragment);
  }

  function detailLinks(links) {
    $("detail-links").replaceChildren(...links.map(([label, action]) => {
      const button = el("button", { type: "button", className: "link" }, label);
      button.addEventListener("click", action);
      return button;
    }));
  }

  function showError(title, error) {
    $("detail-title").textContent = title;
    $("detail-meta").replaceChildren();
    $("detail-links").replaceChildren();
    $("detail-extra").replaceChildren();
    $("detail-main-label").textContent = "";
    fillJSON($("detail-json"), error.status === 404 ? "not found (the collector was reset?)" : String(error.message), true);
    $("detail").hidden = false;
  }

  async function showDetail(force) {
    const aside = $("detail");
    const selected = state.selected;
    if (!selected) {
      aside.hidden = true;
      last.detail = "";
      return;
    }
    let path;
    if (selected.kind === "message") path = "/_collector/event?id=";
    else if (selected.kind === "batch") path = "/_collector/batch?id=";
    else if (selected.kind === "request") path = "/_collector/request?id=";
    else return; // a refusal whose request was not kept: drawn by selectRefusal
    let data;
    try {
      data = await getJSON(path + encodeURIComponent(selected.id));
    } catch (error) {
      showError(selected.kind + " " + selected.id, error);
      return;
    }
    if (state.selected !== selected) return; // another one was picked meanwhile
    const key = selected.kind + JSON.stringify(data);
    if (!force && key === last.detail && !aside.hidden) return;
    last.detail = key;
    $("detail-extra").replaceChildren();
    if (selected.kind === "message") renderMessage(data);
    else if (selected.kind === "batch") renderBatch(data.batch);
    else renderRequest(data.request);
    aside.hidden = false;
  }

  function renderMessage(data) {
    const s = data.summary;
    $("detail-title").textContent = s.type + (s.event != null ? ": " + text(s.event) : "");
    const pairs = [
      ["id", s.id], ["messageId", text(s.message_id)], ["userId", text(s.user_id)],
      ["anonymousId", text(s.anonymous_id)], ["timestamp", text(s.timestamp)], ["received", time(s.received_at)],
      ["batch", "#" + s.batch_id + ": " + number(s.batch_messages) + " messages, " + number(s.raw_size) + " bytes" +
        (s.compressed_size != null ? ", gzipped " + number(s.compressed_size) + " (" + ratio(s.gzip_ratio) + ")" : "")],
      ["sentAt", s.sent_at == null ? "absent (the batch had none)" : text(s.sent_at)], ["write key", text(s.key_hint)],
    ];
    if (s.duplicate) pairs.push(["duplicate", "an earlier message had this messageId"]);
    metaList(pairs);
    detailLinks([
      ["Batch envelope and headers", () => select({ kind: "batch", id: s.batch_id })],
      ["All messages of batch #" + s.batch_id, () => showBatchMessages(s.batch_id)],
    ]);
    $("detail-main-label").textContent = "message";
    if (data.message == null) fillJSON($("detail-json"), "(the body was not kept: --no-keep-messages)", true);
    else fillJSON($("detail-json"), data.message, false);
  }

  function renderBatch(b) {
    $("detail-title").textContent = "batch #" + b.id;
    metaList([
      ["received", time(b.received_at)],
      ["sentAt", b.sent_at == null ? "absent: the body had no sentAt" : text(b.sent_at)],
      ["size", number(b.raw_size) + " bytes" + (b.compressed_size != null
        ? ", gzipped " + number(b.compressed_size) + " (" + ratio(b.gzip_ratio) + ")" : "")],
      ["write key", text(b.key_hint)], ["user agent", text(b.user_agent)],
    ]);
    detailLinks([["Its messages", () => showBatchMessages(b.id)]]);
    $("detail-main-label").textContent = "envelope (the body but its batch list)";
    fillJSON($("detail-json"), b.envelope || {}, false);
    $("detail-extra").replaceChildren(jsonBlock("headers (Authorization redacted)", b.headers || {}, false));
  }

  function renderRequest(r) {
    const refused = !(r.status >= 200 && r.status <= 299);
    $("detail-title").textContent = (r.api || "no API") + ": " + r.method + " " + r.path + " → " + statusText(r.status);
    metaList([
      ["API", r.api || "none (no route serves this path)"], ["request", r.method + " " + r.path + (r.query ? "?" + r.query : "")],
      ["status", statusText(r.status) + (r.code ? " " + r.code : "")],
      ["why refused", refused ? text(r.reason) || "(no reason given)" : ""],
      ["received", time(r.received_at)], ["body", number(r.body_size) + " bytes on the wire" +
        (r.body_note ? " · " + r.body_note : "")],
    ]);
    const links = [];
    if (r.batch_id != null) {
      links.push(["Batch #" + r.batch_id + " envelope", () => select({ kind: "batch", id: r.batch_id })]);
      links.push(["Its messages", () => showBatchMessages(r.batch_id)]);
    }
    detailLinks(links);
    $("detail-main-label").textContent = "body as received";
    fillJSON($("detail-json"), r.body == null ? "(" + (r.body_note || "not kept") + ")" : r.body, true);
    $("detail-extra").replaceChildren(
      jsonBlock("headers (credentials redacted)", r.headers || {}, false),
      jsonBlock("answer", r.answer == null ? "(no answer was sent)" : r.answer, true));
  }

  function selectRefusal(row) {
    const requestId = parseInt(row.dataset.request || "", 10);
    if (Number.isFinite(requestId)) {
      select({ kind: "request", id: requestId });
      return;
    }
    state.selected = { kind: "refusal", id: parseInt(row.dataset.id, 10) };
    markSelected();
    const cells = Array.from(row.children).map((td) => td.textContent);
    $("detail-title").textContent = "refusal #" + cells[0];
    metaList([["status", cells[2]], ["code", cells[3]], ["why", cells[4]], ["request", cells[5]]]);
    detailLinks([]);
    $("detail-extra").replaceChildren();
    $("detail-main-label").textContent = "";
    fillJSON($("detail-json"), "The raw request was not kept (the collector runs with --no-keep-messages).", true);
    $("detail").hidden = false;
  }

  function markSelected() {
    const kinds = { events: "message", requests: "request", batches: "batch", refusals: "refusal" };
    for (const tab of TABS) {
      for (const row of $(tab + "-table").tBodies[0].rows) {
        row.classList.toggle("selected", isSelected(kinds[tab], parseInt(row.dataset.id, 10)));
      }
    }
  }

  function select(selected) {
    state.selected = selected;
    writeHash();
    markSelected();
    showDetail(true).then(() => {
      const aside = $("detail");
      // on a narrow screen the panel sits above the list: bring it into view
      if (selected && !aside.hidden && window.matchMedia("(max-width: 760px)").matches) aside.scrollIntoView({ block: "start" });
    });
  }

  // -- controls: faults and reset (POSTs with a JSON body, as the collector requires) ----------

  function faultSpec() {
    const kind = $("fault-kind").value;
    const n = parseInt($("fault-n").value, 10);
    const seconds = parseFloat($("fault-seconds").value);
    if (kind === "delay" || kind === "outage") {
      if (!(seconds >= 0)) throw new Error("seconds must be a number >= 0");
      return { [kind]: seconds };
    }
    if (!(n >= 1)) throw new Error("the number of requests must be at least 1");
    if (kind !== "fail_next") return { [kind]: { n: n } };
    const spec = { n: n, status: parseInt($("fault-status").value, 10) };
    const retry = $("fault-retry").value.trim();
    if (retry !== "") spec.retry_after = parseFloat(retry);
    return { fail_next: spec };
  }

  function syncFaultForm() {
    const kind = $("fault-kind").value;
    const timed = kind === "delay" || kind === "outage";
    document.querySelectorAll("#fault-form .for-count").forEach((n) => { n.hidden = timed; });
    document.querySelectorAll("#fault-form .for-status").forEach((n) => { n.hidden = kind !== "fail_next"; });
    document.querySelectorAll("#fault-form .for-seconds").forEach((n) => { n.hidden = !timed; });
  }

  async function applyFault(event) {
    event.preventDefault();
    const result = $("control-result");
    try {
      const spec = faultSpec();
      const answer = await postJSON("/_collector/faults", spec);
      result.className = "note ok";
      result.textContent = "applied " + JSON.stringify(spec) + " · " + number(answer.pending_faults) + " fault(s) pending" +
        (answer.listening === false ? " · the collector stops listening now" : "");
    } catch (error) {
      result.className = "note bad";
      result.textContent = "not applied: " + error.message;
    }
    refresh();
  }

  async function reset() {
    $("reset-confirm").hidden = true;
    $("reset").hidden = false;
    const result = $("control-result");
    try {
      await postJSON("/_collector/reset", {});
      result.className = "note ok";
      result.textContent = "reset: every record, counter and fault is gone";
      for (const tab of TABS) resetPager(tab);
      state.selected = null;
      showDetail(false);
      changed();
    } catch (error) {
      result.className = "note bad";
      result.textContent = "not reset: " + error.message;
    }
  }

  // -- polling --------------------------------------------------------------------------------

  const LISTS = {
    events: [eventsQuery, renderEvents],
    requests: [requestsQuery, renderRequests],
    batches: [() => "/_collector/batches?" + pageQuery("batches").toString(), renderBatches],
    refusals: [() => "/_collector/refusals?" + pageQuery("refusals").toString(), renderRefusals],
  };

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const stats = await getJSON("/_collector/stats");
      const statsKey = JSON.stringify(stats);
      if (statsKey !== last.stats) { last.stats = statsKey; renderStats(stats); }
      const [query, render] = LISTS[state.tab];
      const path = query();
      const data = await getJSON(path);
      const key = path + JSON.stringify(data);
      if (key !== last.list) { last.list = key; render(data); }
      if (state.selected && state.selected.kind !== "refusal") await showDetail(false);
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
    last.list = "";
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
      state.q = $("filter-q").value.trim();
      state.batch = $("filter-batch").value.trim();
      resetPager("events");
      changed();
    }, 150);
  }

  function onRequestFilter() {
    state.api = $("filter-api").value;
    state.refused = $("filter-refused").checked;
    resetPager("requests");
    changed();
  }

  function rowActivation(tableId, onRow) {
    const tbody = $(tableId).tBodies[0];
    tbody.addEventListener("click", (event) => {
      if (event.target.closest("a")) return;
      const row = event.target.closest("tr[data-id]");
      if (row) onRow(row);
    });
    tbody.addEventListener("keydown", (event) => {
      const row = event.target.closest("tr[data-id]");
      if (row && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); onRow(row); }
    });
  }

  function start() {
    readHash();
    syncForm();
    syncFaultForm();
    $("filter-type").addEventListener("change", onFilter);
    for (const id of ["filter-event", "filter-user", "filter-q", "filter-batch"]) $(id).addEventListener("input", onFilter);
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); onFilter(); });
    $("clear-filters").addEventListener("click", () => {
      Object.assign(state, { type: "", event: "", user: "", q: "", batch: "" });
      resetPager("events");
      changed();
    });
    $("filter-api").addEventListener("change", onRequestFilter);
    $("filter-refused").addEventListener("change", onRequestFilter);
    $("request-filters").addEventListener("submit", (event) => event.preventDefault());
    for (const tab of TABS) {
      $("tab-" + tab).addEventListener("click", () => { state.tab = tab; changed(); });
    }
    rowActivation("events-table", (row) => select({ kind: "message", id: parseInt(row.dataset.id, 10) }));
    rowActivation("requests-table", (row) => select({ kind: "request", id: parseInt(row.dataset.id, 10) }));
    rowActivation("batches-table", (row) => select({ kind: "batch", id: parseInt(row.dataset.id, 10) }));
    rowActivation("refusals-table", selectRefusal);
    $("close-detail").addEventListener("click", () => select(null));
    document.addEventListener("click", onJSONClick);
    $("pause").addEventListener("click", () => {
      state.paused = !state.paused;
      $("pause").textContent = state.paused ? "Resume" : "Pause";
      $("pause").setAttribute("aria-pressed", String(state.paused));
      if (!state.paused) refresh();
    });
    $("toggle-controls").addEventListener("click", () => {
      const open = $("controls").hidden;
      $("controls").hidden = !open;
      $("toggle-controls").setAttribute("aria-expanded", String(open));
    });
    $("fault-kind").addEventListener("change", syncFaultForm);
    $("fault-form").addEventListener("submit", applyFault);
    $("reset").addEventListener("click", () => { $("reset").hidden = true; $("reset-confirm").hidden = false; });
    $("reset-no").addEventListener("click", () => { $("reset-confirm").hidden = true; $("reset").hidden = false; });
    $("reset-yes").addEventListener("click", reset);
    window.addEventListener("hashchange", () => { readHash(); changed(); showDetail(true); });
    if (state.selected) showDetail(true);
    refresh();
    setInterval(() => { if (!state.paused && !document.hidden) refresh(); }, POLL_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
