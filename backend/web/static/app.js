/*
 * Shipyard dashboard: the board, plan and task details, the plan editor.
 *
 * No build step and no framework: plain modern JavaScript served as is.
 *
 * Data flow
 *   - One EventSource on /agent/events. On its "hello" (first connect and every
 *     reconnect) the page takes a snapshot (GET /agent/plans, /agent/tasks) and
 *     then applies the events that arrived meanwhile, in order. Every event
 *     carries the whole plan or task, so replaying is idempotent and the state
 *     converges. There is no polling.
 *   - Events are queued and applied once per animation frame: a burst of 200
 *     events costs one render.
 *   - Rendering is keyed: one element per plan and task, rebuilt only when the
 *     fields it shows changed (a string signature per card), moved between
 *     columns by reusing the element. Nothing is redrawn when nothing changed.
 *   - Everything shown goes through textContent, or through the markdown
 *     renderer (markdown.js), which escapes before it adds markup.
 *
 * Performance marks (read by bench/board_render.py and the tests):
 *   shipyard:data     snapshot received        shipyard:painted   first board painted
 *   measures shipyard:board-render (data -> painted) and shipyard:board-ready
 *   (navigation start -> painted).
 */
"use strict";

(() => {
  performance.mark("shipyard:boot");
  const MD = window.ShipyardMarkdown;

  // ================================================================ constants
  const PLAN_STATUSES = ["draft", "ready", "executing", "done", "failed"];
  const TASK_COLUMNS = ["pending", "in_progress", "completed", "failed"];
  const TASK_LABEL = { pending: "pending", in_progress: "in progress", completed: "completed", failed: "failed" };
  const PLAN_LABEL = { draft: "draft", ready: "ready", executing: "executing", done: "done", failed: "failed" };
  const EVENT_TYPES = [
    "plan.created", "plan.updated", "plan.status", "plan.deleted", "plan.orchestration", "plan.log",
    "task.created", "task.updated", "task.status", "task.deleted", "task.log", "dispatcher.status",
  ];
  const LOG_TAIL = 2000; // events fetched when a detail panel opens
  const FEED_MAX = 4000; // items kept in a live feed
  const DIFF_MAX_LINES = 20000;

  // ================================================================ DOM helpers
  /** h("a", {class: "x", href: "#"}, "text", child) -> element. Strings become text nodes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const key in attrs) {
        const value = attrs[key];
        if (value == null || value === false) continue;
        if (key === "class") el.className = value;
        else if (key === "text") el.textContent = value;
        else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
        else el.setAttribute(key, value === true ? "" : String(value));
      }
    }
    appendAll(el, children);
    return el;
  }
  function appendAll(el, children) {
    for (const child of children) {
      if (child == null || child === false) continue;
      if (Array.isArray(child)) appendAll(el, child);
      else el.append(child instanceof Node ? child : String(child));
    }
  }
  /** Replace all children, skipping null/false entries (conditional pieces). */
  function fill(el, ...kids) {
    const out = [];
    for (const kid of kids.flat(Infinity)) if (kid != null && kid !== false) out.push(kid);
    el.replaceChildren(...out);
  }
  /** Replace el's children only when sig changed: the heart of "no redraw when nothing changed". */
  function patch(el, sig, build) {
    if (el._sig === sig) return false;
    el._sig = sig;
    const kids = build();
    fill(el, kids);
    return true;
  }
  function mdBlock(text, cls = "md") {
    const div = h("div", { class: cls });
    div.innerHTML = MD.render(text || ""); // markdown.js escapes everything first
    return div;
  }

  const ICON_PATHS = {
    x: '<path d="M6 6l12 12M18 6L6 18"/>',
    play: '<path d="M7 4.5v15l12-7.5z"/>',
    stop: '<rect x="6" y="6" width="12" height="12" rx="2"/>',
    retry: '<path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/>',
    edit: '<path d="M4 20h4L19 9l-4-4L4 16z"/><path d="M13.5 6.5l4 4"/>',
    trash: '<path d="M4 7h16M10 11v6M14 11v6M9 7V4h6v3M6 7l1 13h10l1-13"/>',
    check: '<path d="M5 12.5l4.5 4.5L19 7.5"/>',
    alert: '<path d="M12 3.5l9.5 16.5h-19z"/><path d="M12 10v4.5M12 17.5v.2"/>',
    info: '<circle cx="12" cy="12" r="9"/><path d="M12 11v5.5M12 7.8v.2"/>',
    land: '<path d="M12 4v11M7.5 10.5 12 15l4.5-4.5M5 20h14"/>',
    plan: '<path d="M6 3h9l4 4v14H6z"/><path d="M14.5 3v4.5H19M9 12h7M9 16h5"/>',
    ready: '<circle cx="12" cy="12" r="9"/><path d="M8.5 12.2l2.5 2.5 4.8-5.2"/>',
    filter: '<path d="M4 5h16l-6 7.5V19l-4 1.5v-8z"/>',
    refresh: '<path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/>',
  };
  function icon(name) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("fill", "none");
    svg.setAttribute("stroke", "currentColor");
    svg.setAttribute("stroke-width", "2");
    svg.setAttribute("stroke-linecap", "round");
    svg.setAttribute("stroke-linejoin", "round");
    svg.setAttribute("aria-hidden", "true");
    svg.innerHTML = ICON_PATHS[name] || ""; // constant markup from this file
    return svg;
  }

  // ================================================================ formatting
  const pad2 = (n) => String(n).padStart(2, "0");
  function fmtCost(usd) {
    if (usd == null || Number.isNaN(usd)) return "—";
    if (usd === 0) return "$0";
    return "$" + (usd >= 100 ? usd.toFixed(0) : usd >= 1 ? usd.toFixed(2) : usd.toFixed(4));
  }
  function fmtCount(n) {
    if (n == null) return "—";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return n.toLocaleString("en-US");
  }
  function fmtDuration(ms) {
    if (ms == null || ms < 0) return "—";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${(ms / 1000).toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${pad2(s % 60)}s`;
    return `${Math.floor(m / 60)}h ${pad2(m % 60)}m`;
  }
  function fmtClock(tsSeconds) {
    const d = new Date(tsSeconds * 1000);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }
  function fmtWhen(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    const diff = (Date.now() - d.getTime()) / 1000;
    if (diff < 45) return "just now";
    if (diff < 3600) return `${Math.round(diff / 60)} min ago`;
    if (diff < 86400) return `${Math.round(diff / 3600)} h ago`;
    return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  }
  function fullTime(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }
  const shortSha = (sha) => (sha ? String(sha).slice(0, 10) : "—");
  const enc = encodeURIComponent;

  // ================================================================ API
  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }
  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      throw new ApiError("The Shipyard server could not be reached. Is it still running?", 0);
    }
    let data = null;
    try {
      data = await res.json();
    } catch (err) {
      data = null;
    }
    if (!res.ok) {
      const detail = data && typeof data.detail === "string" ? data.detail : `${res.status} ${res.statusText}`;
      if (res.status === 401) showAuthProblem(detail);
      throw new ApiError(detail, res.status);
    }
    return data;
  }

  function toast(message, kind = "info") {
    const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
    $("#toasts").append(el);
    setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
  }
  function $(sel, root = document) {
    return root.querySelector(sel);
  }

  // ================================================================ state
  const S = {
    plans: new Map(), // id -> plan (raw, as the API or an event gave it)
    tasks: new Map(), // id -> task
    byPlan: new Map(), // plan id -> Set(task id)
    orchestrating: new Set(), // plan ids whose orchestrator runs
    activity: new Map(), // "task:<id>" / "plan:<id>" -> latest activity line (live only)
    health: null,
    dispatcher: null,
    synced: false,
  };
  const dirty = { tasks: new Set(), plans: new Set(), cols: new Set(), filter: false, planOptions: false,
    counts: false };

  function isOrchestrating(plan) {
    return plan.status === "executing" || S.orchestrating.has(plan.id);
  }
  function planStats(planId) {
    const plan = S.plans.get(planId);
    const stats = { pending: 0, in_progress: 0, completed: 0, failed: 0, total: 0, cost: 0 };
    if (plan && plan.orchestration && plan.orchestration.cost_usd) stats.cost += plan.orchestration.cost_usd;
    const ids = S.byPlan.get(planId);
    if (ids) {
      for (const id of ids) {
        const t = S.tasks.get(id);
        if (!t) continue;
        stats[t.status] = (stats[t.status] || 0) + 1;
        stats.total++;
        if (t.run && t.run.cost_usd) stats.cost += t.run.cost_usd;
      }
    }
    if (plan && plan.tasks && plan.tasks.length > stats.total) stats.total = plan.tasks.length;
    return stats;
  }
  function planTaskIds(plan) {
    const ids = [...(plan.tasks || [])];
    const seen = new Set(ids);
    const extra = [...(S.byPlan.get(plan.id) || [])].filter((id) => !seen.has(id));
    extra.sort((a, b) => String(S.tasks.get(a)?.created).localeCompare(String(S.tasks.get(b)?.created)));
    return ids.concat(extra);
  }

  function setTask(task) {
    const old = S.tasks.get(task.id);
    S.tasks.set(task.id, task);
    dirty.tasks.add(task.id);
    if (!old || old.status !== task.status || old.started !== task.started || old.finished !== task.finished) {
      dirty.cols.add(task.status);
      if (old) dirty.cols.add(old.status);
    }
    if (old && old.plan_id && old.plan_id !== task.plan_id) {
      S.byPlan.get(old.plan_id)?.delete(task.id);
      dirty.plans.add(old.plan_id);
    }
    if (task.plan_id) {
      if (!S.byPlan.has(task.plan_id)) S.byPlan.set(task.plan_id, new Set());
      S.byPlan.get(task.plan_id).add(task.id);
      dirty.plans.add(task.plan_id);
    }
    if (task.status !== "in_progress") S.activity.delete(`task:${task.id}`);
  }
  function dropTask(id) {
    const old = S.tasks.get(id);
    if (!old) return;
    S.tasks.delete(id);
    S.activity.delete(`task:${id}`);
    dirty.tasks.add(id);
    dirty.cols.add(old.status);
    if (old.plan_id) {
      S.byPlan.get(old.plan_id)?.delete(id);
      dirty.plans.add(old.plan_id);
    }
  }
  function setPlan(plan) {
    const old = S.plans.get(plan.id);
    S.plans.set(plan.id, plan);
    dirty.plans.add(plan.id);
    if (!old) dirty.cols.add("plans");
    if (!old || old.title !== plan.title) {
      dirty.planOptions = true;
      for (const id of S.byPlan.get(plan.id) || []) dirty.tasks.add(id); // cards show the plan's title
    }
    if (plan.status === "done" || plan.status === "failed" || plan.status === "draft") {
      S.orchestrating.delete(plan.id);
    }
    if (plan.status !== "executing" && !S.orchestrating.has(plan.id)) S.activity.delete(`plan:${plan.id}`);
  }
  function dropPlan(id) {
    if (!S.plans.has(id)) return;
    S.plans.delete(id);
    S.orchestrating.delete(id);
    dirty.plans.add(id);
    dirty.cols.add("plans");
    dirty.planOptions = true;
    for (const tid of S.byPlan.get(id) || []) dirty.tasks.add(tid);
  }

  function applySnapshot(plansGrouped, tasksGrouped) {
    const planIds = new Set();
    for (const status of Object.keys(plansGrouped)) {
      for (const plan of plansGrouped[status]) {
        planIds.add(plan.id);
        if (plan.orchestrating) S.orchestrating.add(plan.id);
        else S.orchestrating.delete(plan.id);
        const { orchestrating, progress, total_cost_usd, ...raw } = plan; // derived fields: computed here
        setPlan(raw);
      }
    }
    for (const id of [...S.plans.keys()]) if (!planIds.has(id)) dropPlan(id);
    const taskIds = new Set();
    for (const status of Object.keys(tasksGrouped)) {
      for (const task of tasksGrouped[status]) {
        taskIds.add(task.id);
        setTask(task);
      }
    }
    for (const id of [...S.tasks.keys()]) if (!taskIds.has(id)) dropTask(id);
  }

  /** Latest activity line for a card: what the agent is doing right now. */
  function activityLine(ev) {
    switch (ev.kind) {
      case "tool_use":
      case "api_retry":
      case "error":
      case "setup":
      case "test":
        return ev.summary;
      case "text":
        return ev.summary ? `“${ev.summary}”` : null;
      case "init":
        return "starting Claude Code…";
      default:
        return null;
    }
  }

  function applyEvent(type, data) {
    switch (type) {
      case "plan.created":
      case "plan.updated":
      case "plan.status":
        if (data.plan) setPlan(data.plan);
        break;
      case "plan.deleted":
        dropPlan(data.plan_id);
        break;
      case "plan.orchestration":
        if (data.active) S.orchestrating.add(data.plan_id);
        else {
          S.orchestrating.delete(data.plan_id);
          S.activity.delete(`plan:${data.plan_id}`);
        }
        dirty.plans.add(data.plan_id);
        break;
      case "plan.log": {
        const line = activityLine(data.event || {});
        if (line) {
          S.activity.set(`plan:${data.plan_id}`, line);
          dirty.plans.add(data.plan_id);
        }
        if (current && current.onLog) current.onLog("plan", data.plan_id, data.event);
        break;
      }
      case "task.created":
      case "task.updated":
      case "task.status":
        if (data.task) setTask(data.task);
        if (current && current.onTaskChange && data.task) current.onTaskChange(data.task, type, data);
        break;
      case "task.deleted":
        dropTask(data.task_id);
        break;
      case "task.log": {
        const task = S.tasks.get(data.task_id);
        const line = activityLine(data.event || {});
        if (line && task && task.status === "in_progress") {
          S.activity.set(`task:${data.task_id}`, line);
          dirty.tasks.add(data.task_id);
        }
        if (current && current.onLog) current.onLog("task", data.task_id, data.event);
        break;
      }
      case "dispatcher.status": {
        const { id, type: _t, ts, ...status } = data;
        S.dispatcher = status;
        for (const pid of status.active_orchestrations || []) S.orchestrating.add(pid);
        renderDispatcher();
        break;
      }
      default:
        break;
    }
  }

  // ================================================================ event stream
  let source = null;
  let syncing = false;
  let syncGen = 0;
  let queue = [];
  let flushScheduled = false;
  let reconnectDelay = 1000;
  let firstRender = true;

  function connect() {
    if (source) source.close();
    setConn("connecting");
    const es = new EventSource("/agent/events");
    source = es;
    es.addEventListener("hello", () => {
      reconnectDelay = 1000;
      setConn("live");
      resync();
    });
    for (const type of EVENT_TYPES) {
      es.addEventListener(type, (msg) => {
        let data;
        try {
          data = JSON.parse(msg.data);
        } catch (err) {
          return;
        }
        queue.push([type, data]);
        scheduleFlush();
      });
    }
    es.onerror = () => {
      if (es !== source) return;
      if (es.readyState === EventSource.CLOSED) {
        // the browser gave up (e.g. the server answered with an error): try again ourselves
        setConn("offline");
        setTimeout(() => { if (es === source) connect(); }, reconnectDelay);
        reconnectDelay = Math.min(reconnectDelay * 2, 15000);
      } else {
        setConn("connecting");
      }
    };
  }

  async function resync() {
    const gen = ++syncGen;
    syncing = true;
    try {
      const [plans, tasks] = await Promise.all([api("GET", "/agent/plans"), api("GET", "/agent/tasks")]);
      if (gen !== syncGen) return;
      if (firstRender) performance.mark("shipyard:data");
      applySnapshot(plans, tasks);
      S.synced = true;
      dirty.counts = true;
    } catch (err) {
      if (gen === syncGen && err.status !== 401) toast(err.message, "error");
    } finally {
      if (gen === syncGen) {
        syncing = false;
        flush();
      }
    }
    refreshHealth();
  }

  function scheduleFlush() {
    if (flushScheduled) return;
    flushScheduled = true;
    if (document.hidden) setTimeout(flush, 200);
    else requestAnimationFrame(flush);
  }

  function flush() {
    flushScheduled = false;
    if (syncing) return; // resync() flushes when the snapshot is in
    const events = queue;
    queue = [];
    for (const [type, data] of events) applyEvent(type, data);
    renderBoard();
    if (current) current.update();
    if (firstRender && S.synced) {
      firstRender = false;
      performance.mark("shipyard:rendered");
      requestAnimationFrame(() => setTimeout(() => {
        performance.mark("shipyard:painted");
        performance.measure("shipyard:board-build", "shipyard:data", "shipyard:rendered");
        performance.measure("shipyard:board-render", "shipyard:data", "shipyard:painted");
        performance.measure("shipyard:board-ready", { start: 0, end: "shipyard:painted" });
        document.documentElement.dataset.ready = "true";
      }, 0));
    }
  }

  let everLive = false;
  function setConn(state) {
    const el = $("#conn");
    if (el.dataset.state === state) return;
    el.dataset.state = state;
    if (state === "live") everLive = true;
    el.textContent = state === "live" ? "Live" : state === "offline" ? "Offline — retrying"
      : everLive ? "Reconnecting…" : "Connecting…";
    el.title = state === "live" ? "Receiving changes as they happen" : "Not connected to the event stream";
  }

  // ================================================================ health, banners, header
  let healthProblems = [];
  let authProblem = null;

  async function refreshHealth() {
    try {
      const health = await api("GET", "/agent/health");
      S.health = health;
      if (health.dispatcher) {
        S.dispatcher = health.dispatcher;
        for (const pid of health.dispatcher.active_orchestrations || []) {
          if (!S.orchestrating.has(pid)) {
            S.orchestrating.add(pid);
            dirty.plans.add(pid);
          }
        }
      }
      healthProblems = (health.checks || []).filter((c) => c.level === "error");
      const name = health.project || "";
      const proj = $("#project-name");
      proj.textContent = name;
      proj.title = health.project_dir || "";
      document.title = name ? `${name} · Shipyard` : "Shipyard";
      renderBanners();
      renderDispatcher();
      scheduleFlush();
    } catch (err) {
      // the board shows its own error; keep the last known health
    }
  }

  function showAuthProblem(detail) {
    if (authProblem === detail) return;
    authProblem = detail;
    renderBanners();
  }

  function renderBanners() {
    const box = $("#banners");
    const problems = S.health ? S.health.problems || [] : [];
    const sig = JSON.stringify([healthProblems, problems, authProblem]);
    patch(box, sig, () => {
      const out = [];
      if (authProblem) {
        out.push(h("div", { class: "banner", role: "alert" }, icon("alert"),
          h("div", { class: "banner-body" }, h("strong", null, "This server needs an access token."),
            h("span", { class: "fix" }, authProblem))));
      }
      if (healthProblems.length) {
        out.push(h("div", { class: "banner", role: "alert", "data-banner": "claude" }, icon("alert"),
          h("div", { class: "banner-body" },
            h("strong", null, "Claude Code cannot run agents on this server yet. Plans cannot start until this is fixed."),
            h("ul", null, healthProblems.map((c) => h("li", null,
              h("span", { class: "detail" }, c.detail), " ",
              c.fix ? h("span", { class: "fix" }, "To fix: ", c.fix) : null))),
          ),
          h("button", { class: "btn small", type: "button", onclick: () => refreshHealth() }, icon("refresh"), "Check again")));
      }
      if (problems.length) {
        out.push(h("div", { class: "banner warn", role: "status" }, icon("alert"),
          h("div", { class: "banner-body" },
            h("strong", null, `${problems.length} state file(s) could not be read and are ignored.`),
            h("ul", null, problems.slice(0, 5).map((p) => h("li", null, h("code", null, p.path), " — ", p.reason))))));
      }
      return out;
    });
  }

  let dispatcherConfirm = 0;
  function renderDispatcher() {
    const el = $("#dispatcher");
    const d = S.dispatcher;
    if (!d) return;
    if (el.hidden) el.hidden = false;
    let running = 0;
    for (const t of S.tasks.values()) if (t.status === "in_progress") running++;
    const confirming = Date.now() < dispatcherConfirm;
    const sig = [d.running, d.max_parallel_workers, running, confirming].join("|");
    patch(el, sig, () => [
      h("span", { title: d.running ? "The dispatcher starts pending tasks as workers free up."
        : "The dispatcher is paused: pending tasks wait." },
      d.running ? `Workers ${running}/${d.max_parallel_workers}` : "Dispatcher paused"),
      h("button", {
        type: "button",
        "data-action": "dispatcher",
        title: d.running ? "Pause: stop starting tasks; running agents are stopped and their tasks return to pending."
          : "Resume starting pending tasks",
        onclick: toggleDispatcher,
      }, d.running ? (confirming ? "Confirm pause" : "Pause") : "Resume"),
    ]);
  }
  async function toggleDispatcher() {
    const d = S.dispatcher;
    if (!d) return;
    if (d.running && Date.now() >= dispatcherConfirm) {
      dispatcherConfirm = Date.now() + 4000;
      renderDispatcher();
      setTimeout(renderDispatcher, 4100);
      return;
    }
    dispatcherConfirm = 0;
    try {
      S.dispatcher = await api("POST", d.running ? "/agent/dispatcher/stop" : "/agent/dispatcher/start");
    } catch (err) {
      toast(err.message, "error");
    }
    renderDispatcher();
  }

  // ================================================================ board
  const columns = {};
  for (const col of ["plans", ...TASK_COLUMNS]) {
    const section = $(`.column[data-col="${col}"]`);
    columns[col] = {
      section,
      cards: section.querySelector(".cards"),
      count: section.querySelector(".count"),
      empty: section.querySelector(".column-empty"),
    };
  }
  const taskCards = new Map();
  const planCards = new Map();
  const filterInput = $("#filter");
  const planFilter = $("#plan-filter");
  let filterText = "";
  let filterPlan = "";
  let selectedId = null;

  function taskMatches(t) {
    if (filterPlan && t.plan_id !== filterPlan) return false;
    if (!filterText) return true;
    return t.title.toLowerCase().includes(filterText) || t.id.toLowerCase().includes(filterText);
  }
  function planMatches(p) {
    if (!filterText) return true;
    return p.title.toLowerCase().includes(filterText) || p.id.toLowerCase().includes(filterText) ||
      (p.summary || "").toLowerCase().includes(filterText);
  }

  function statusBadge(status, label, spinning) {
    return h("span", { class: "badge", "data-status": status }, spinning ? h("span", { class: "spinner" }) : null,
      label || status);
  }
  function progressBar(stats) {
    const bar = h("div", { class: "progress", role: "img",
      "aria-label": `${stats.completed} of ${stats.total} tasks done, ${stats.failed} failed` });
    if (stats.total) {
      for (const key of ["completed", "in_progress", "failed"]) {
        if (stats[key]) {
          const seg = h("span", { class: `p-${key}` });
          seg.style.width = `${(100 * stats[key]) / stats.total}%`;
          bar.append(seg);
        }
      }
    }
    return bar;
  }

  function taskSig(t) {
    const plan = t.plan_id ? S.plans.get(t.plan_id) : null;
    return [t.title, t.status, t.task_type, plan ? plan.title : t.plan_id, t.attempts, t.error,
      t.run && t.run.cost_usd, t.run && t.run.duration_ms, S.activity.get(`task:${t.id}`)].join("\u0001");
  }
  function fillTaskCard(el, t) {
    const plan = t.plan_id ? S.plans.get(t.plan_id) : null;
    const activity = S.activity.get(`task:${t.id}`);
    el.dataset.status = t.status;
    el.setAttribute("aria-label", `Task: ${t.title} (${TASK_LABEL[t.status] || t.status})`);
    fill(el,
      h("div", { class: "card-top" },
        h("span", { class: "chip" }, t.task_type || "task"),
        t.status === "in_progress" ? h("span", { class: "badge", "data-status": "in_progress" },
          h("span", { class: "spinner" }), "running") : null,
        t.attempts > 1 ? h("span", { class: "chip", title: "attempts" }, `try ${t.attempts}`) : null,
        h("span", { class: "card-id" }, t.id)),
      h("div", { class: "card-title" }, t.title),
      (plan || t.plan_id || t.run) ? h("div", { class: "card-meta" },
        t.plan_id ? h("span", { class: "plan-ref", title: plan ? `Plan: ${plan.title}` : "plan" }, icon("plan"),
          plan ? plan.title : t.plan_id) : null,
        h("span", { class: "grow" }),
        t.run && t.run.cost_usd ? h("span", { title: "cost" }, fmtCost(t.run.cost_usd)) : null,
        t.run && t.run.duration_ms && t.status !== "in_progress" ? h("span", { title: "duration" },
          fmtDuration(t.run.duration_ms)) : null) : null,
      t.status === "in_progress" && activity ? h("div", { class: "card-activity", title: activity }, activity) : null,
      t.status === "failed" && t.error ? h("div", { class: "card-error" }, t.error) : null,
    );
  }

  function planSig(p) {
    const s = planStats(p.id);
    return [p.title, p.summary, p.status, isOrchestrating(p), p.error, s.pending, s.in_progress, s.completed,
      s.failed, s.total, s.cost.toFixed(4), isOrchestrating(p) ? S.activity.get(`plan:${p.id}`) : "",
      filterPlan === p.id].join("\u0001");
  }
  function fillPlanCard(el, p) {
    const s = planStats(p.id);
    const orch = isOrchestrating(p);
    const activity = orch ? S.activity.get(`plan:${p.id}`) : null;
    el.dataset.status = p.status;
    el.classList.toggle("filtering", filterPlan === p.id);
    el.setAttribute("aria-label", `Plan: ${p.title} (${p.status}${s.total ? `, ${s.completed}/${s.total} done` : ""})`);
    const finished = s.completed + s.failed;
    fill(el,
      h("div", { class: "card-top" },
        statusBadge(p.status, PLAN_LABEL[p.status], orch),
        filterPlan === p.id ? h("span", { class: "chip", title: "the board shows this plan's tasks" }, "filtered") : null,
        h("span", { class: "card-id" }, p.id)),
      h("div", { class: "card-title" }, p.title),
      p.summary ? h("div", { class: "card-summary" }, p.summary) : null,
      s.total ? progressBar(s) : null,
      s.total || s.cost ? h("div", { class: "card-meta" },
        s.total ? h("span", { class: "progress-label" }, `${s.completed}/${s.total} done`) : null,
        s.failed ? h("span", { style: "color: var(--red)" }, `${s.failed} failed`) : null,
        s.in_progress ? h("span", null, `${s.in_progress} running`) : null,
        p.status === "done" && s.total && finished === s.total && !s.failed
          ? h("span", { style: "color: var(--green)" }, "ready to land") : null,
        h("span", { class: "grow" }),
        s.cost ? h("span", { title: "total cost" }, fmtCost(s.cost)) : null) : null,
      orch ? h("div", { class: "card-activity", title: activity || "" }, activity || "orchestrator starting…") : null,
      p.status === "failed" && p.error ? h("div", { class: "card-error" }, p.error) : null,
    );
  }

  // One card per plan or task: created once, refilled only when what it shows changed
  // (its signature), hidden rather than removed when the filter excludes it.
  function updateCard(id, kind, items, cards, signature, fill, matches) {
    const item = items.get(id);
    let el = cards.get(id);
    if (!item) {
      if (el) {
        el.remove();
        cards.delete(id);
      }
      return;
    }
    if (!el) {
      el = h("a", { class: `card ${kind}-card`, href: `#${kind}/${enc(id)}`, "data-id": id });
      cards.set(id, el);
      if (id === selectedId) el.classList.add("selected");
    }
    const sig = signature(item);
    if (el._sig !== sig) {
      el._sig = sig;
      fill(el, item);
    }
    const hide = !matches(item);
    if (el.hidden !== hide) el.hidden = hide;
  }
  function updateTaskCard(id) {
    updateCard(id, "task", S.tasks, taskCards, taskSig, fillTaskCard, taskMatches);
  }
  function updatePlanCard(id) {
    updateCard(id, "plan", S.plans, planCards, planSig, fillPlanCard, planMatches);
  }

  const byStr = (key, dir = 1) => (a, b) => {
    const x = a[key] || "";
    const y = b[key] || "";
    return x < y ? -dir : x > y ? dir : a.id < b.id ? -1 : 1;
  };
  const ORDER = {
    plans: byStr("created", -1),
    pending: byStr("created", 1),
    in_progress: byStr("started", 1),
    completed: byEnd,
    failed: byEnd,
  };
  // most recently finished first; a task cancelled before it started has no "finished": use "modified"
  function byEnd(a, b) {
    const x = a.finished || a.modified || "";
    const y = b.finished || b.modified || "";
    return x > y ? -1 : x < y ? 1 : a.id < b.id ? -1 : 1;
  }

  /** Put the column's cards in order, moving only the elements that are out of place. */
  function reorderColumn(col) {
    const items = col === "plans" ? [...S.plans.values()] : [...S.tasks.values()].filter((t) => t.status === col);
    items.sort(ORDER[col]);
    const map = col === "plans" ? planCards : taskCards;
    const container = columns[col].cards;
    let cursor = container.firstElementChild;
    for (const item of items) {
      const el = map.get(item.id);
      if (!el) continue;
      if (el === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        container.insertBefore(el, cursor);
      }
    }
    while (cursor) {
      const next = cursor.nextElementSibling;
      const id = cursor.dataset.id;
      const owner = col === "plans" ? S.plans.get(id) : S.tasks.get(id);
      if (!owner || (col !== "plans" && owner.status !== col)) cursor.remove();
      cursor = next;
    }
  }

  function updateCounts() {
    const total = { plans: S.plans.size, pending: 0, in_progress: 0, completed: 0, failed: 0 };
    const shown = { plans: 0, pending: 0, in_progress: 0, completed: 0, failed: 0 };
    for (const p of S.plans.values()) if (planMatches(p)) shown.plans++;
    for (const t of S.tasks.values()) {
      total[t.status]++;
      if (taskMatches(t)) shown[t.status]++;
    }
    const filtering = Boolean(filterText || filterPlan);
    for (const col of Object.keys(columns)) {
      const c = columns[col];
      const filteredHere = filtering && (col === "plans" ? Boolean(filterText) : true);
      const text = filteredHere && shown[col] !== total[col] ? `${shown[col]} / ${total[col]}` : String(total[col]);
      if (c.count.textContent !== text) c.count.textContent = text;
      const empty = shown[col] === 0;
      if (col === "plans") renderPlansEmpty(empty, total.plans === 0);
      else {
        if (c.empty.hidden !== !empty) c.empty.hidden = !empty;
        if (empty) {
          const msg = total[col] ? "No matching tasks." : (c.empty.dataset.text ||= c.empty.textContent);
          if (c.empty.textContent !== msg) c.empty.textContent = msg;
        }
      }
    }
  }

  function renderPlansEmpty(empty, none) {
    const el = columns.plans.empty;
    const hide = !empty || !S.synced;
    if (el.hidden !== hide) el.hidden = hide;
    if (hide) return;
    patch(el, none ? "onboarding" : "nomatch", () => none
      ? h("div", { class: "onboarding" },
        h("h3", null, "Start with a plan"),
        h("div", null, "Describe a change in markdown. Shipyard will:"),
        h("ol", null,
          h("li", null, "ask a read-only Claude Code run to split it into tasks,"),
          h("li", null, "run each task with its own agent in its own git worktree,"),
          h("li", null, "merge the results into one branch you can land.")),
        h("button", { class: "btn primary", type: "button", onclick: () => navigate("#new") }, "Write a plan"))
      : h("div", null, "No matching plans."));
  }

  function renderPlanOptions() {
    const plans = [...S.plans.values()].sort(ORDER.plans);
    const sig = plans.map((p) => p.id + "\u0002" + p.title).join("\u0001");
    if (planFilter._sig === sig) return;
    planFilter._sig = sig;
    const options = [h("option", { value: "" }, "All plans")];
    for (const p of plans) options.push(h("option", { value: p.id }, p.title));
    planFilter.replaceChildren(...options);
    if (filterPlan && !S.plans.has(filterPlan)) {
      filterPlan = "";
      dirty.filter = true;
    }
    planFilter.value = filterPlan;
  }

  function renderBoard() {
    if (dirty.planOptions) {
      dirty.planOptions = false;
      renderPlanOptions();
    }
    if (dirty.filter) {
      for (const id of S.tasks.keys()) dirty.tasks.add(id);
      for (const id of S.plans.keys()) dirty.plans.add(id);
    }
    const changed = dirty.counts || dirty.filter || dirty.tasks.size || dirty.plans.size || dirty.cols.size;
    for (const id of dirty.tasks) updateTaskCard(id);
    for (const id of dirty.plans) updatePlanCard(id);
    for (const col of dirty.cols) if (columns[col]) reorderColumn(col);
    dirty.tasks.clear();
    dirty.plans.clear();
    dirty.cols.clear();
    dirty.filter = false;
    dirty.counts = false;
    if (changed) {
      updateCounts();
      renderDispatcher();
    }
  }

  function setFilter() {
    filterText = filterInput.value.trim().toLowerCase();
    filterPlan = planFilter.value;
    dirty.filter = true;
    scheduleFlush();
  }
  filterInput.addEventListener("input", setFilter);
  planFilter.addEventListener("change", setFilter);

  // keyboard: arrows move between cards, Home/End to the ends of a column
  $("#board").addEventListener("keydown", (e) => {
    const card = e.target.closest && e.target.closest(".card");
    if (!card || e.altKey || e.ctrlKey || e.metaKey) return;
    const visible = (container) => [...container.children].filter((c) => !c.hidden);
    const colEl = card.closest(".column");
    const cards = visible(colEl.querySelector(".cards"));
    const index = cards.indexOf(card);
    let target = null;
    if (e.key === "ArrowDown") target = cards[index + 1];
    else if (e.key === "ArrowUp") target = cards[index - 1];
    else if (e.key === "Home") target = cards[0];
    else if (e.key === "End") target = cards[cards.length - 1];
    else if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      const all = [...document.querySelectorAll(".column")];
      let i = all.indexOf(colEl);
      for (;;) {
        i += e.key === "ArrowRight" ? 1 : -1;
        if (i < 0 || i >= all.length) break;
        const other = visible(all[i].querySelector(".cards"));
        if (other.length) {
          target = other[Math.min(index, other.length - 1)];
          break;
        }
      }
    } else if (e.key === " ") {
      e.preventDefault();
      card.click();
      return;
    }
    if (target) {
      e.preventDefault();
      target.focus();
      target.scrollIntoView({ block: "nearest" });
    }
  });

  function selectCard(id) {
    if (selectedId === id) return;
    for (const map of [taskCards, planCards]) {
      map.get(selectedId)?.classList.remove("selected");
      map.get(id)?.classList.add("selected");
    }
    selectedId = id;
  }

  // ================================================================ panel & routing
  const panelEl = $("#panel");
  let current = null; // the open view
  let returnFocus = null;

  function parseHash() {
    const raw = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
    const [kind, id] = raw.split("/");
    return { kind: kind || "", id: id || "" };
  }
  function navigate(hash, replace = false) {
    if (replace) {
      history.replaceState(null, "", hash);
      onRoute();
    } else if (location.hash === hash) {
      onRoute();
    } else {
      location.hash = hash;
    }
  }
  function closePanel() {
    if (current && current.confirmLeave && !current.confirmLeave()) return;
    history.pushState(null, "", location.pathname + location.search);
    onRoute();
  }

  function onRoute() {
    const { kind, id } = parseHash();
    const key = `${kind}/${id}`;
    if (current && current.key === key) return;
    if (current) current.dispose();
    current = null;
    let view = null;
    if (kind === "plan" && id) view = new PlanView(id);
    else if (kind === "task" && id) view = new TaskView(id);
    else if (kind === "new") view = new EditorView(null);
    else if (kind === "edit" && id) view = new EditorView(id);
    const previous = selectedId;
    selectCard(view && (kind === "plan" || kind === "task") ? id : null);
    if (!view) {
      if (!panelEl.hidden) {
        panelEl.hidden = true;
        panelEl.replaceChildren();
        // back to the card that was open, else to whatever had focus before the panel opened
        const card = previous && (taskCards.get(previous) || planCards.get(previous));
        const back = card && !card.hidden ? card : returnFocus && document.contains(returnFocus) ? returnFocus : null;
        (back || $("#board-start")).focus({ preventScroll: false });
      }
      return;
    }
    if (panelEl.hidden && document.activeElement && document.activeElement !== document.body) {
      returnFocus = document.activeElement;
    }
    view.key = key;
    current = view;
    panelEl.replaceChildren(view.root);
    panelEl.hidden = false;
    view.update();
    (view.focusTarget || view.titleEl).focus({ preventScroll: true });
  }
  window.addEventListener("hashchange", onRoute);
  window.addEventListener("popstate", onRoute);

  function panelHead(titleEl, sub, extra) {
    return h("div", { class: "panel-head" },
      h("div", { class: "titles" }, titleEl, sub),
      extra || null,
      h("button", { class: "icon-btn", type: "button", title: "Close (Esc)", "aria-label": "Close", onclick: closePanel },
        icon("x")));
  }

  /** A button that runs an async action, shows progress and reports the server's answer. */
  function actionButton(view, name, label, opts = {}) {
    const busy = view.busy === name;
    return h("button", {
      class: `btn ${opts.kind || ""} ${busy ? "busy" : ""}`.trim(),
      type: "button",
      "data-action": name,
      disabled: opts.disabled || Boolean(view.busy),
      title: opts.title,
      onclick: opts.onclick,
    }, busy ? h("span", { class: "spinner" }) : opts.icon ? icon(opts.icon) : null, busy ? opts.busyLabel || label : label);
  }

  async function runAction(view, name, fn) {
    view.busy = name;
    view.message = null;
    view.update(true);
    try {
      const result = await fn();
      view.busy = null;
      return result;
    } catch (err) {
      view.busy = null;
      view.message = { kind: "error", text: err.message };
      return undefined;
    } finally {
      if (current === view) view.update(true);
    }
  }

  /** Rebuild a row of buttons, keeping keyboard focus on the same action when it survives. */
  function patchActions(el, sig, build) {
    const focused = el.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    if (!patch(el, sig, build) || !focused) return;
    const same = el.querySelector(`[data-action="${focused}"]:not(:disabled)`);
    const fallback = el.querySelector("button:not(:disabled)");
    (same || fallback || panelEl.querySelector(".panel-head h2")).focus();
  }

  function messageNotice(message) {
    if (!message) return null;
    return h("div", { class: `notice ${message.kind}`, role: message.kind === "error" ? "alert" : "status" },
      icon(message.kind === "error" ? "alert" : message.kind === "ok" ? "check" : "info"),
      h("div", { class: "notice-body" }, message.title ? h("strong", null, message.title) : null, message.text,
        message.pre ? h("pre", null, message.pre) : null));
  }

  function stat(label, value, opts = {}) {
    return h("div", { class: `stat ${opts.wide ? "wide" : ""}` },
      h("dt", null, label), h("dd", { class: opts.mono ? "mono" : null, title: opts.title || String(value) }, value));
  }

  function twoStepDelete(view, label, onConfirm) {
    const confirming = view.confirmDelete && Date.now() < view.confirmDelete;
    return actionButton(view, "delete", confirming ? "Click again to delete" : label, {
      kind: `danger ${confirming ? "confirm" : ""}`,
      icon: "trash",
      busyLabel: "Deleting…",
      onclick: () => {
        if (!(view.confirmDelete && Date.now() < view.confirmDelete)) {
          view.confirmDelete = Date.now() + 4000;
          view.update(true);
          setTimeout(() => { if (current === view) view.update(true); }, 4100);
          return;
        }
        view.confirmDelete = 0;
        onConfirm();
      },
    });
  }

  // ---------------------------------------------------------------- activity feed
  const KIND_LABEL = {
    init: "start", text: "Claude", thinking: "thinking", tool_result: "result", api_retry: "retry", result: "end",
    error: "error", other: "event", shipyard: "shipyard", warning: "warning", failed: "failed", tasks: "tasks",
    setup: "setup", test: "test", integrated: "merged", completed: "done", requeued: "requeued", land: "land",
  };
  const KIND_TONE = {
    init: "muted", thinking: "muted", other: "muted", api_retry: "warn", warning: "warn", requeued: "warn",
    error: "error", failed: "error", tasks: "ok", integrated: "ok", completed: "ok",
  };

  function toolTarget(name, input, summary) {
    if (name === "StructuredOutput") {
      const tasks = input && Array.isArray(input.tasks) ? input.tasks.length : null;
      return tasks == null ? "final answer" : `final answer: ${tasks} task${tasks === 1 ? "" : "s"}`;
    }
    let text = summary || "";
    if (name && text.startsWith(name)) text = text.slice(name.length).replace(/^:?\s*/, "");
    return text;
  }

  function toolDetails(name, input) {
    if (!input || typeof input !== "object") return null;
    let label = "input";
    let body;
    if (name === "Write" && typeof input.content === "string") {
      const lines = input.content.replace(/\n$/, "").split("\n").length;
      label = `content · ${lines} line${lines === 1 ? "" : "s"}`;
      body = input.content;
    } else if ((name === "Edit" || name === "MultiEdit") && input.old_string !== undefined) {
      label = "change";
      body = String(input.old_string).split("\n").map((l) => `- ${l}`).join("\n") + "\n" +
        String(input.new_string).split("\n").map((l) => `+ ${l}`).join("\n");
    } else if (name === "Bash") {
      if (!input.description) return null;
      label = "description";
      body = input.description;
    } else {
      const keys = Object.keys(input).filter((k) => !["file_path", "path", "pattern", "command"].includes(k));
      if (!keys.length && name !== "StructuredOutput") return null;
      body = JSON.stringify(input, null, 2);
    }
    return h("details", null, h("summary", null, h("span", { class: "sum-text" }, label)), h("pre", null, body));
  }

  function resultDetails(d, summary) {
    const text = d.content == null ? "" : typeof d.content === "string" ? d.content : JSON.stringify(d.content, null, 2);
    const first = (text.trim().split("\n")[0] || "(no output)").slice(0, 200);
    return h("details", { class: d.is_error ? "result-error" : null },
      h("summary", null, h("span", { class: "sum-text" }, `${d.is_error ? "error" : "result"}: ${first || summary}`)),
      h("pre", null, text || "(no output)"));
  }

  function taskLinkList(ids) {
    return h("ul", { class: "task-links" }, ids.map((tid) => {
      const t = S.tasks.get(tid);
      return h("li", null, h("a", { href: `#task/${enc(tid)}` }, t ? t.title : tid));
    }));
  }

  function renderEvent(ev, feed) {
    const kind = ev.kind || "other";
    const d = ev.data && typeof ev.data === "object" ? ev.data : {};
    let tone = KIND_TONE[kind] || "";
    let label = KIND_LABEL[kind] || kind;
    const main = h("div", { class: "ev-main" });
    const line = h("div", { class: "ev-line" });
    const kindEl = h("span", { class: "ev-kind" });
    line.append(kindEl);
    main.append(line);
    const text = (value) => line.append(h("span", { class: "ev-text" }, value));
    switch (kind) {
      case "text":
        main.append(mdBlock(d.text != null ? d.text : ev.summary));
        break;
      case "thinking":
        text("");
        main.append(h("details", null, h("summary", null, h("span", { class: "sum-text" }, ev.summary || "thinking")),
          h("pre", null, d.text || ev.summary || "")));
        break;
      case "tool_use": {
        label = d.name || "tool";
        line.append(h("span", { class: "ev-target" }, toolTarget(d.name, d.input, ev.summary)));
        const details = toolDetails(d.name, d.input);
        if (details) main.append(details);
        break;
      }
      case "tool_result":
        label = d.name ? `${d.name} result` : "result";
        if (d.is_error) tone = "error";
        main.append(resultDetails(d, ev.summary));
        break;
      case "api_retry":
        text(ev.summary);
        if (d.retry_delay_ms) line.append(h("span", { class: "ev-text", style: "color: var(--muted)" },
          `next try in ${fmtDuration(d.retry_delay_ms)}`));
        break;
      case "result":
        tone = d.is_error ? "error" : "ok";
        text(ev.summary);
        break;
      case "error":
        text(ev.summary);
        if (d.text && !String(ev.summary || "").includes(String(d.text).trim())) main.append(h("pre", null, d.text));
        break;
      case "tasks":
        text(ev.summary);
        if (Array.isArray(d.task_ids) && d.task_ids.length) main.append(taskLinkList(d.task_ids));
        break;
      case "land":
        tone = d.ok === false ? "error" : "ok";
        text(ev.summary);
        break;
      case "setup":
      case "test":
        if (d.exit_code != null && d.exit_code !== 0) tone = "error";
        text(ev.summary);
        if (d.output) main.append(h("details", null, h("summary", null, h("span", { class: "sum-text" }, "output")),
          h("pre", null, d.output)));
        break;
      default:
        text(ev.summary || kind);
    }
    kindEl.textContent = label;
    const item = h("div", { class: `ev k-${kind}${tone ? ` tone-${tone}` : ""}`, "data-kind": kind },
      h("time", { title: ev.ts ? new Date(ev.ts * 1000).toLocaleString() : "" }, ev.ts ? fmtClock(ev.ts) : ""),
      main);
    if (kind === "tool_use" && d.id) feed.tools.set(d.id, item);
    return item;
  }

  class Feed {
    constructor(kind, id, emptyText, label) {
      this.kind = kind;
      this.id = id;
      this.el = h("div", { class: "feed", role: "log", tabindex: "0", "aria-label": label, "data-empty": emptyText });
      this.keys = new Set();
      this.tools = new Map();
      this.loaded = false;
      this.pending = [];
    }
    async load() {
      try {
        const log = await api("GET", `/agent/${this.kind}s/${enc(this.id)}/log?tail=${LOG_TAIL}`);
        const frag = document.createDocumentFragment();
        if (log.total > log.events.length) {
          frag.append(h("div", { class: "feed-note" }, `Showing the last ${log.events.length} of ${log.total} events.`));
        }
        for (const ev of log.events) this.add(ev, frag);
        this.el.append(frag);
      } catch (err) {
        if (err.status !== 404) this.el.append(h("div", { class: "feed-note" }, `Could not load the log: ${err.message}`));
      }
      this.loaded = true;
      const pending = this.pending;
      this.pending = [];
      for (const ev of pending) this.add(ev);
      this.el.scrollTop = this.el.scrollHeight;
    }
    push(ev) {
      if (!ev) return;
      if (!this.loaded) {
        this.pending.push(ev);
        return;
      }
      const el = this.el;
      const stick = el.scrollHeight - el.scrollTop - el.clientHeight < 48;
      this.add(ev);
      if (stick) el.scrollTop = el.scrollHeight;
    }
    add(ev, parent = this.el) {
      const key = `${ev.ts}|${ev.kind}|${ev.summary}`;
      if (this.keys.has(key)) return;
      this.keys.add(key);
      const d = ev.data || {};
      if (ev.kind === "tool_result" && d.tool_use_id && this.tools.has(d.tool_use_id)) {
        const item = this.tools.get(d.tool_use_id);
        item.querySelector(".ev-main").append(resultDetails(d, ev.summary));
        if (d.is_error) item.classList.add("tone-error", "has-error");
        return;
      }
      parent.append(renderEvent(ev, this));
      if (parent === this.el && this.el.childElementCount > FEED_MAX) this.el.firstElementChild.remove();
    }
  }

  // ---------------------------------------------------------------- diff
  function parseDiff(text) {
    const files = [];
    let cur = null;
    for (const line of text.split("\n")) {
      if (line.startsWith("diff --git ")) { // the file's header shows the path instead
        const m = line.match(/^diff --git a\/(.*) b\/(.*)$/);
        cur = { path: m ? m[2] : line.slice(11), lines: [], adds: 0, dels: 0 };
        files.push(cur);
        continue;
      }
      if (!cur) {
        if (!line) continue;
        cur = { path: "changes", lines: [], adds: 0, dels: 0 };
        files.push(cur);
      }
      let cls = "ctx";
      if (line.startsWith("@@")) cls = "hunk";
      else if (line.startsWith("+++ ") || line.startsWith("--- ")) cls = "meta";
      else if (line.startsWith("+")) { cls = "add"; cur.adds++; }
      else if (line.startsWith("-")) { cls = "del"; cur.dels++; }
      else if (/^(index |new file|deleted file|similarity|rename |old mode|new mode|Binary files)/.test(line)) cls = "meta";
      cur.lines.push([cls, line]);
    }
    for (const f of files) {
      while (f.lines.length && f.lines[f.lines.length - 1][1] === "") f.lines.pop();
    }
    return files;
  }
  function renderDiff(result, status) {
    const text = result.diff || "";
    if (!text.trim()) {
      const hint = status === "in_progress" ? "No commits yet: the changes show here when the agent commits or its run ends."
        : status === "pending" ? "No changes yet: the task has not started."
          : result.source || status === "completed" ? "The task made no changes." : "No changes.";
      return [h("div", { class: "empty-hint" }, hint)];
    }
    const files = parseDiff(text);
    let budget = DIFF_MAX_LINES;
    const out = [];
    out.push(h("div", { class: "diff-files" }, (result.files && result.files.length ? result.files : files.map((f) => f.path))
      .map((p) => h("span", { class: "chip mono" }, p))));
    for (const f of files) {
      const body = h("pre", { class: "diff-body" });
      const lines = budget > 0 ? f.lines.slice(0, budget) : [];
      budget -= lines.length;
      body.innerHTML = lines.map(([cls, l]) => `<span class="d-${cls}">${MD.escapeHtml(l) || " "}</span>`).join("");
      if (lines.length < f.lines.length) {
        body.append(h("span", { class: "d-meta" }, `… ${f.lines.length - lines.length} more lines not shown`));
      }
      out.push(h("details", { class: "diff-file", open: true },
        h("summary", null, h("span", null, f.path), h("span", { class: "adds" }, `+${f.adds}`),
          h("span", { class: "dels" }, `−${f.dels}`)), body));
    }
    if (result.source) {
      const source = /^[0-9a-f]{40}$/.test(result.source) ? `the merge commit ${shortSha(result.source)}`
        : `the branch ${result.source}`;
      out.push(h("div", { class: "empty-hint" }, `Changes as recorded in ${source}.`));
    }
    return out;
  }

  // ---------------------------------------------------------------- plan view
  class PlanView {
    constructor(id) {
      this.id = id;
      this.detail = null;
      this.missing = false;
      this.busy = null;
      this.message = null;
      this.landResult = null;
      this.titleEl = h("h2", { id: "panel-title", tabindex: "-1" });
      this.subEl = h("div", { class: "panel-sub" });
      this.actionsEl = h("div", { class: "actions", role: "toolbar", "aria-label": "Plan actions" });
      this.messageEl = h("div", { "aria-live": "polite" });
      this.errorEl = h("div");
      this.statsEl = h("div");
      this.landEl = h("div", { "aria-live": "polite" });
      this.contentEl = h("details", { class: "section plan-content" });
      this.feed = new Feed("plan", id, "The orchestrator’s activity appears here once the plan starts.",
        "Orchestrator activity");
      this.feedHeadAside = h("span", { class: "aside" });
      this.tasksEl = h("div");
      this.tasksAside = h("span", { class: "aside" });
      this.root = h("div", { class: "view plan-view", "data-plan-id": id },
        panelHead(this.titleEl, this.subEl),
        h("div", { class: "panel-body" },
          this.actionsEl, this.messageEl, this.errorEl, this.statsEl, this.landEl,
          this.contentEl,
          h("section", { class: "section orchestrator", "aria-label": "Orchestrator" },
            h("div", { class: "section-head" }, "Orchestrator", this.feedHeadAside), this.feed.el),
          h("section", { class: "section plan-tasks", "aria-label": "Tasks" },
            h("div", { class: "section-head" }, "Tasks", this.tasksAside), this.tasksEl)));
      this.load();
    }
    async load() {
      try {
        this.detail = await api("GET", `/agent/plans/${enc(this.id)}`);
        if (!S.plans.has(this.id) && this.detail) {
          const { orchestrating, progress, total_cost_usd, task_details, ...raw } = this.detail;
          if (orchestrating) S.orchestrating.add(raw.id);
          setPlan(raw);
          scheduleFlush();
        }
      } catch (err) {
        if (err.status === 404) this.missing = true;
        else this.message = { kind: "error", text: err.message };
      }
      if (current === this) this.update(true);
      this.feed.load();
    }
    plan() {
      return S.plans.get(this.id) || (this.detail && !this.missing ? this.detail : null);
    }
    onLog(kind, id, ev) {
      if (kind === "plan" && id === this.id) this.feed.push(ev);
    }
    dispose() {}
    update(force) {
      const p = this.plan();
      if (!p) {
        patch(this.titleEl, "missing", () => (this.missing || (S.synced && this.detail)) ? "Plan not found" : "Loading…");
        patch(this.subEl, "missing", () => this.missing ? "It may have been deleted." : "");
        patch(this.actionsEl, "missing", () => []);
        return;
      }
      const s = planStats(p.id);
      const orch = isOrchestrating(p);
      patch(this.titleEl, p.title, () => p.title);
      patch(this.subEl, [p.status, orch, p.id, p.created, p.modified].join("|"), () => [
        statusBadge(p.status, PLAN_LABEL[p.status], orch),
        h("span", { class: "mono" }, p.id),
        h("span", { title: fullTime(p.created) }, `created ${fmtWhen(p.created)}`),
        p.modified !== p.created ? h("span", { title: fullTime(p.modified) }, `updated ${fmtWhen(p.modified)}`) : null,
      ]);
      const confirming = this.confirmDelete && Date.now() < this.confirmDelete;
      const unfinished = s.pending + s.in_progress;
      patchActions(this.actionsEl, [p.status, orch, this.busy, confirming, unfinished, filterPlan === p.id,
        s.total].join("|"), () => {
        const out = [];
        const startable = p.status === "draft" || p.status === "ready";
        if (startable || p.status === "executing") {
          out.push(actionButton(this, "start", "Start", {
            kind: startable && !orch ? "primary" : "",
            icon: "play",
            busyLabel: "Starting…",
            disabled: !startable || orch,
            title: orch ? "The orchestrator is running" : "Run the orchestrator: it splits the plan into tasks",
            onclick: () => this.start(),
          }));
        }
        if (orch) {
          out.push(actionButton(this, "cancel", "Cancel", {
            kind: "danger", icon: "stop", busyLabel: "Cancelling…", title: "Stop the orchestrator",
            onclick: () => this.cancel(),
          }));
        }
        if (p.status === "failed") {
          out.push(actionButton(this, "retry", "Retry", {
            kind: "primary", icon: "retry", busyLabel: "Retrying…", title: "Run the orchestrator again",
            onclick: () => this.retry(),
          }));
        }
        if (p.status === "done") {
          out.push(actionButton(this, "land", "Land", {
            kind: unfinished ? "" : "primary", icon: "land", busyLabel: "Landing…",
            title: p.integration_branch ? `Merge ${p.integration_branch} into ${p.base_branch || "the base branch"}`
              : "Merge the plan's work into the base branch",
            onclick: () => this.land(),
          }));
        }
        if (p.status === "draft" && !orch) {
          out.push(actionButton(this, "ready", "Mark ready", {
            icon: "ready", title: "Mark the plan as ready to start", onclick: () => this.markReady(),
          }));
        }
        if (startable && !orch) {
          out.push(h("a", { class: "btn", href: `#edit/${enc(p.id)}`, "data-action": "edit" }, icon("edit"), "Edit"));
        }
        out.push(h("span", { class: "sep" }));
        if (s.total) {
          out.push(h("button", {
            class: "btn ghost", type: "button", "data-action": "filter",
            onclick: () => {
              planFilter.value = filterPlan === p.id ? "" : p.id;
              setFilter();
              this.update(true);
            },
          }, icon("filter"), filterPlan === p.id ? "Show all tasks" : "Show only its tasks"));
        }
        if (!orch && p.status !== "executing") {
          out.push(twoStepDelete(this, "Delete", () => this.remove()));
        }
        return out;
      });
      patch(this.messageEl, JSON.stringify(this.message), () => messageNotice(this.message));
      patch(this.errorEl, [p.status, p.error].join("|"), () => p.status === "failed" ? h("div", {
        class: "notice error plan-error", role: "alert" }, icon("alert"),
      h("div", { class: "notice-body" }, h("strong", null, "The plan failed"),
        p.error || "The orchestrator stopped without saying why. See its activity below.",
        h("div", { style: "margin-top: 6px; color: var(--muted)" },
          "Retry runs the orchestrator again; the plan text stays as it is."))) : null);
      const o = p.orchestration || {};
      patch(this.statsEl, JSON.stringify([s, o, p.integration_branch, p.base_branch, p.base_commit]), () => {
        if (!s.total && !p.orchestration && !p.integration_branch) return null;
        const items = [
          stat("Tasks", s.total ? `${s.completed}/${s.total} done` : "—"),
          stat("Failed", s.total ? String(s.failed) : "—"),
          stat("Total cost", fmtCost(s.cost), { title: "orchestrator and all tasks" }),
        ];
        if (p.orchestration) {
          items.push(
            stat("Planning", fmtCost(o.cost_usd), { title: "cost of the orchestrator run" }),
            stat("Tokens", `${fmtCount(o.input_tokens)} / ${fmtCount(o.output_tokens)}`,
              { title: "orchestrator tokens: input / output" }),
            stat("Turns", o.num_turns == null ? "—" : String(o.num_turns)),
            stat("Duration", fmtDuration(o.duration_ms), { title: "orchestrator run time" }));
        }
        const out = [h("dl", { class: "stats plan-stats" }, items)];
        if (p.integration_branch || p.base_branch) {
          out.push(h("dl", { class: "kv" },
            p.integration_branch ? [h("dt", null, "Integration branch"), h("dd", { class: "mono" }, p.integration_branch)] : null,
            p.base_branch ? [h("dt", null, "Base"), h("dd", { class: "mono" },
              `${p.base_branch}${p.base_commit ? ` @ ${shortSha(p.base_commit)}` : ""}`)] : null));
        }
        return out;
      });
      patch(this.landEl, JSON.stringify(this.landResult), () => {
        const r = this.landResult;
        if (!r) return null;
        return messageNotice(r.ok
          ? { kind: "ok", title: "Landed", text: `${r.message}${r.commit ? ` (${shortSha(r.commit)} on ${r.branch})` : ""}` }
          : { kind: "error", title: "Not landed", text: r.message });
      });
      // content: open by default while the plan can still be edited
      if (this.contentEl._status === undefined) {
        this.contentEl._status = p.status;
        this.contentEl.open = p.status === "draft" || p.status === "ready" || !(p.tasks || []).length;
      }
      const content = p.content !== undefined ? p.content : this.detail ? this.detail.content : undefined;
      patch(this.contentEl, JSON.stringify([p.summary, content]), () => [
        h("summary", null, "Plan"),
        h("div", { class: "content-box" },
          p.summary ? h("p", { class: "plan-summary", style: "margin-top: 0; color: var(--text-2)" }, p.summary) : null,
          content === undefined ? h("div", { class: "empty-hint" }, "Loading…")
            : content.trim() ? mdBlock(content, "md plan-body") : h("div", { class: "empty-hint" }, "No plan text.")),
      ]);
      patch(this.feedHeadAside, [orch, o.outcome].join("|"), () =>
        orch ? [h("span", { class: "spinner", style: "display:inline-block; vertical-align:-1px; margin-right:6px" }),
          "running"] : o.outcome ? `ended: ${o.outcome}` : "");
      patch(this.tasksAside, s.total ? `${s.completed}/${s.total} done` : "", () => s.total ? `${s.completed}/${s.total} done` : "");
      const ids = planTaskIds(p);
      const rows = ids.map((tid) => S.tasks.get(tid) || (this.detail && (this.detail.task_details || []).find((x) => x.id === tid)))
        .filter(Boolean);
      patch(this.tasksEl, JSON.stringify([orch, rows.map((t) => [t.id, t.title, t.status, t.run && t.run.cost_usd])]), () => {
        if (!rows.length) {
          return h("div", { class: "empty-hint" }, orch ? "The orchestrator is reading the plan; its tasks will appear here."
            : p.status === "failed" ? "No tasks were created." : "Start the plan to split it into tasks.");
        }
        return h("ul", { class: "task-list" }, rows.map((t) => h("li", null,
          h("a", { href: `#task/${enc(t.id)}`, "data-task-id": t.id },
            statusBadge(t.status, TASK_LABEL[t.status], t.status === "in_progress"),
            h("span", { class: "t-title" }, t.title),
            t.run && t.run.cost_usd ? h("span", { class: "t-cost" }, fmtCost(t.run.cost_usd)) : null))));
      });
    }
    async start() {
      const r = await runAction(this, "start", () => api("POST", `/agent/plans/${enc(this.id)}/start`));
      if (r) {
        S.orchestrating.add(this.id);
        dirty.plans.add(this.id);
        scheduleFlush();
      }
    }
    async cancel() {
      await runAction(this, "cancel", () => api("POST", `/agent/plans/${enc(this.id)}/cancel`));
    }
    async retry() {
      const r = await runAction(this, "retry", async () => {
        await api("POST", `/agent/plans/${enc(this.id)}/retry`);
        return api("POST", `/agent/plans/${enc(this.id)}/start`);
      });
      if (r) {
        S.orchestrating.add(this.id);
        dirty.plans.add(this.id);
        scheduleFlush();
      }
    }
    async markReady() {
      await runAction(this, "ready", () => api("POST", `/agent/plans/${enc(this.id)}/ready`));
    }
    async land() {
      this.landResult = null;
      try {
        this.busy = "land";
        this.update(true);
        const r = await api("POST", `/agent/plans/${enc(this.id)}/land`);
        this.landResult = { ok: true, message: r.message, commit: r.commit, branch: r.branch };
      } catch (err) {
        this.landResult = { ok: false, message: err.message };
      } finally {
        this.busy = null;
        if (current === this) this.update(true);
      }
    }
    async remove() {
      const r = await runAction(this, "delete", () => api("DELETE", `/agent/plans/${enc(this.id)}`));
      if (r) {
        toast("Plan deleted.");
        dropPlan(this.id);
        scheduleFlush();
        closePanel();
      }
    }
  }

  // ---------------------------------------------------------------- task view
  class TaskView {
    constructor(id) {
      this.id = id;
      this.detail = null;
      this.missing = false;
      this.busy = null;
      this.message = null;
      this.diffTimer = null;
      this.diffSeen = null;
      this.titleEl = h("h2", { id: "panel-title", tabindex: "-1" });
      this.subEl = h("div", { class: "panel-sub" });
      this.actionsEl = h("div", { class: "actions", role: "toolbar", "aria-label": "Task actions" });
      this.messageEl = h("div", { "aria-live": "polite" });
      this.errorEl = h("div");
      this.statsEl = h("div");
      this.durationEl = null;
      this.contentEl = h("details", { class: "section task-content", open: true });
      this.feed = new Feed("task", id, "The agent’s activity appears here once the task starts.", "Agent activity");
      this.feedAside = h("span", { class: "aside" });
      this.diffEl = h("div", { class: "diff" }, h("div", { class: "empty-hint" }, "Loading…"));
      this.diffAside = h("span", { class: "aside" });
      this.root = h("div", { class: "view task-view", "data-task-id": id },
        panelHead(this.titleEl, this.subEl),
        h("div", { class: "panel-body" },
          this.actionsEl, this.messageEl, this.errorEl, this.statsEl, this.contentEl,
          h("section", { class: "section activity", "aria-label": "Activity" },
            h("div", { class: "section-head" }, "Activity", this.feedAside), this.feed.el),
          h("section", { class: "section changes", "aria-label": "Changes" },
            h("div", { class: "section-head" }, "Changes", this.diffAside,
              h("button", { class: "btn small ghost", type: "button", title: "Reload the diff",
                onclick: () => this.loadDiff() }, icon("refresh"), "Refresh")),
            this.diffEl)));
      this.ticker = setInterval(() => this.tick(), 1000);
      this.load();
    }
    task() {
      return S.tasks.get(this.id) || (this.detail && !this.missing ? this.detail : null);
    }
    async load() {
      await this.loadDetail();
      this.feed.load();
      this.loadDiff();
    }
    async loadDetail() {
      try {
        this.detail = await api("GET", `/agent/tasks/${enc(this.id)}`);
        this.missing = false;
      } catch (err) {
        if (err.status === 404) this.missing = true;
        else this.message = { kind: "error", text: err.message };
      }
      if (current === this) this.update(true);
    }
    async loadDiff() {
      clearTimeout(this.diffTimer);
      this.diffTimer = null;
      try {
        const result = await api("GET", `/agent/tasks/${enc(this.id)}/diff`);
        if (current !== this) return;
        const status = this.task() ? this.task().status : null;
        patch(this.diffEl, JSON.stringify([status, result.source, result.diff.length, result.diff.slice(0, 2000),
          result.diff.slice(-2000)]), () => renderDiff(result, status));
        const files = result.files || [];
        this.diffAside.textContent = files.length ? `${files.length} file${files.length === 1 ? "" : "s"}` : "";
      } catch (err) {
        if (current === this && err.status !== 404) {
          patch(this.diffEl, "error:" + err.message, () => h("div", { class: "empty-hint" }, `Could not load the diff: ${err.message}`));
        }
      }
    }
    scheduleDiff(delay = 400) {
      clearTimeout(this.diffTimer);
      this.diffTimer = setTimeout(() => this.loadDiff(), delay);
    }
    onLog(kind, id, ev) {
      if (kind !== "task" || id !== this.id) return;
      this.feed.push(ev);
      if (!ev) return;
      if (["integrated", "completed", "failed", "result"].includes(ev.kind)) this.scheduleDiff();
      // an agent that commits as it goes (git commit in Bash) changes its branch mid-run
      else if (ev.kind === "tool_result" && ev.data && ev.data.name === "Bash") this.scheduleDiff(1500);
    }
    onTaskChange(task, type) {
      if (task.id !== this.id) return;
      if (type === "task.status") {
        if (task.status === "failed") this.loadDetail(); // the error log is not in the event
        this.scheduleDiff();
      }
    }
    dispose() {
      clearInterval(this.ticker);
      clearTimeout(this.diffTimer);
    }
    tick() {
      const t = this.task();
      if (!t || !this.durationEl || t.status !== "in_progress" || !t.started) return;
      this.durationEl.textContent = fmtDuration(Date.now() - new Date(t.started).getTime());
    }
    update() {
      const t = this.task();
      if (!t) {
        patch(this.titleEl, "missing", () => (this.missing ? "Task not found" : "Loading…"));
        patch(this.subEl, "missing", () => this.missing ? "It may have been deleted." : "");
        return;
      }
      const plan = t.plan_id ? S.plans.get(t.plan_id) : null;
      patch(this.titleEl, t.title, () => t.title);
      patch(this.subEl, [t.status, t.task_type, t.id, t.plan_id, plan && plan.title, t.attempts].join("|"), () => [
        statusBadge(t.status, TASK_LABEL[t.status], t.status === "in_progress"),
        h("span", { class: "chip" }, t.task_type),
        h("span", { class: "mono" }, t.id),
        t.plan_id ? h("a", { href: `#plan/${enc(t.plan_id)}`, class: "plan-link" }, icon("plan"),
          plan ? plan.title : `plan ${t.plan_id}`) : h("span", null, "standalone task"),
        t.attempts ? h("span", null, `attempt ${t.attempts}`) : null,
      ]);
      patchActions(this.actionsEl, [t.status, this.busy].join("|"), () => {
        const out = [];
        if (t.status === "failed") {
          out.push(actionButton(this, "rerun", "Rerun", {
            kind: "primary", icon: "retry", busyLabel: "Requeueing…", title: "Put the task back in the queue",
            onclick: () => this.rerun(),
          }));
        }
        if (t.status === "pending" || t.status === "in_progress") {
          out.push(actionButton(this, "cancel", "Cancel", {
            kind: "danger", icon: "stop", busyLabel: "Cancelling…",
            title: t.status === "in_progress" ? "Stop the agent; the task fails as cancelled" : "Cancel before it starts",
            onclick: () => this.cancel(),
          }));
        }
        return out;
      });
      patch(this.messageEl, JSON.stringify(this.message), () => messageNotice(this.message));
      const errorLog = this.detail && this.detail.status === "failed" ? this.detail.error_log : null;
      patch(this.errorEl, JSON.stringify([t.status, t.error, errorLog]), () => t.status === "failed"
        ? h("div", { class: "notice error task-error", role: "alert" }, icon("alert"),
          h("div", { class: "notice-body" }, h("strong", null, "The task failed"), t.error || "No reason was recorded.",
            errorLog ? h("details", { class: "error-log", open: true },
              h("summary", { style: "cursor: pointer; margin-top: 6px" }, "Error log"), h("pre", null, errorLog)) : null))
        : t.status === "completed" && t.result ? messageNotice({ kind: "ok", text: `Completed: ${t.result}` }) : null);
      const run = t.run || {};
      patch(this.statsEl, JSON.stringify([run, t.branch, t.base_commit, t.started, t.finished, t.status]), () => {
        const running = t.status === "in_progress" && t.started;
        this.durationEl = h("dd", { title: "duration" },
          running ? fmtDuration(Date.now() - new Date(t.started).getTime()) : fmtDuration(run.duration_ms));
        const ran = Boolean(t.run || running);
        return [
          ran ? h("dl", { class: "stats task-stats" },
            stat("Cost", fmtCost(run.cost_usd)),
            stat("Tokens", `${fmtCount(run.input_tokens)} / ${fmtCount(run.output_tokens)}`,
              { title: "input / output tokens" }),
            stat("Turns", run.num_turns == null ? "—" : String(run.num_turns)),
            h("div", { class: "stat" }, h("dt", null, running ? "Running for" : "Duration"), this.durationEl),
            stat("Outcome", run.outcome || (t.status === "in_progress" ? "running" : "—"))) : null,
          !ran && !t.branch ? null : h("dl", { class: "kv" },
            h("dt", null, "Branch"), h("dd", { class: "mono" }, t.branch || (t.status === "completed" ? "merged and removed" : "—")),
            t.base_commit ? [h("dt", null, "Base commit"), h("dd", { class: "mono" }, shortSha(t.base_commit))] : null,
            t.started ? [h("dt", null, "Started"), h("dd", { title: fullTime(t.started) }, fmtWhen(t.started))] : null,
            t.finished ? [h("dt", null, "Finished"), h("dd", { title: fullTime(t.finished) }, fmtWhen(t.finished))] : null),
        ];
      });
      patch(this.contentEl, t.content, () => [h("summary", null, "Task"),
        h("div", { class: "content-box" }, t.content && t.content.trim() ? mdBlock(t.content, "md task-body")
          : h("div", { class: "empty-hint" }, "No description."))]);
      patch(this.feedAside, t.status, () => t.status === "in_progress"
        ? [h("span", { class: "spinner", style: "display:inline-block; vertical-align:-1px; margin-right:6px" }), "running"] : "");
    }
    async rerun() {
      const r = await runAction(this, "rerun", () => api("POST", `/agent/tasks/${enc(this.id)}/rerun`));
      if (r) {
        setTask(r);
        this.detail = { ...r, error_log: null };
        scheduleFlush();
      }
    }
    async cancel() {
      const r = await runAction(this, "cancel", () => api("POST", `/agent/tasks/${enc(this.id)}/cancel`));
      if (r) {
        setTask(r);
        scheduleFlush();
        this.loadDetail();
      }
    }
  }

  // ---------------------------------------------------------------- editor
  class EditorView {
    constructor(id) {
      this.id = id;
      this.busy = null;
      this.message = null;
      this.loaded = !id;
      this.initial = null;
      this.titleEl = h("h2", { id: "panel-title", tabindex: "-1" }, id ? "Edit plan" : "New plan");
      this.subEl = h("div", { class: "panel-sub" }, id ? h("span", { class: "mono" }, id)
        : "Describe the change. Shipyard splits it into tasks when you start it.");
      this.title = h("input", { id: "plan-title", name: "title", type: "text", required: true, maxlength: "200",
        autocomplete: "off", placeholder: "e.g. Add a dark mode toggle" });
      this.summary = h("textarea", { id: "plan-summary", name: "summary", rows: "2", maxlength: "5000",
        placeholder: "One or two sentences: what and why" });
      this.content = h("textarea", { id: "plan-content", name: "content", class: "code", rows: "16",
        spellcheck: "false", placeholder: "## Goal\n\n## Steps\n\n- …\n\n## Done when\n\n- …" });
      this.preview = h("div", { class: "preview content-box", id: "plan-preview", hidden: true, tabindex: "0",
        role: "tabpanel", "aria-labelledby": "tab-preview" });
      this.tabWrite = h("button", { type: "button", role: "tab", id: "tab-write", "aria-selected": "true",
        "aria-controls": "plan-content", onclick: () => this.showTab("write") }, "Write");
      this.tabPreview = h("button", { type: "button", role: "tab", id: "tab-preview", "aria-selected": "false",
        "aria-controls": "plan-preview", tabindex: "-1", onclick: () => this.showTab("preview") }, "Preview");
      this.titleError = h("div", { class: "invalid", role: "alert" });
      this.messageEl = h("div", { "aria-live": "polite" });
      this.saveBtn = h("button", { class: "btn primary", type: "submit", "data-action": "save" },
        id ? "Save changes" : "Save draft");
      const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": "Plan text" }, this.tabWrite, this.tabPreview);
      tablist.addEventListener("keydown", (e) => {
        if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
          e.preventDefault();
          const next = this.tab === "write" ? "preview" : "write";
          this.showTab(next);
          (next === "write" ? this.tabWrite : this.tabPreview).focus();
        }
      });
      this.form = h("form", { class: "form", novalidate: true },
        this.messageEl,
        h("div", { class: "field" }, h("label", { for: "plan-title" }, "Title"), this.title, this.titleError),
        h("div", { class: "field" }, h("label", { for: "plan-summary" }, "Summary", h("span", { class: "hint" }, "optional")),
          this.summary),
        h("div", { class: "field" }, h("label", { for: "plan-content" }, "Plan", h("span", { class: "hint" }, "markdown")),
          tablist, this.content, this.preview),
        h("div", { class: "form-actions" }, this.saveBtn,
          h("button", { class: "btn", type: "button", onclick: () => this.leave() }, "Cancel"),
          h("span", { class: "hint" }, "Ctrl+Enter to save")));
      this.form.addEventListener("submit", (e) => {
        e.preventDefault();
        this.save();
      });
      this.form.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
          e.preventDefault();
          this.save();
        }
      });
      this.tab = "write";
      this.root = h("div", { class: "view editor-view" }, panelHead(this.titleEl, this.subEl),
        h("div", { class: "panel-body" }, this.form));
      this.focusTarget = this.title;
      if (id) {
        this.form.inert = true;
        this.load();
      } else {
        this.initial = this.values();
      }
    }
    async load() {
      try {
        const p = await api("GET", `/agent/plans/${enc(this.id)}`);
        this.title.value = p.title;
        this.summary.value = p.summary || "";
        this.content.value = p.content || "";
        if (p.status !== "draft" && p.status !== "ready") {
          this.message = { kind: "error", text: `This plan is ${p.status}; only draft and ready plans can be edited.` };
        }
      } catch (err) {
        this.message = { kind: "error", text: err.message };
      }
      this.initial = this.values();
      this.loaded = true;
      this.form.inert = false;
      if (current === this) {
        this.update();
        this.title.focus();
      }
    }
    values() {
      return { title: this.title.value, summary: this.summary.value, content: this.content.value };
    }
    isDirty() {
      return this.initial && JSON.stringify(this.values()) !== JSON.stringify(this.initial);
    }
    confirmLeave() {
      return !this.isDirty() || window.confirm("Discard the changes to this plan?");
    }
    leave() {
      if (!this.confirmLeave()) return;
      this.initial = this.values();
      if (this.id) navigate(`#plan/${enc(this.id)}`);
      else closePanel();
    }
    showTab(tab) {
      this.tab = tab;
      const preview = tab === "preview";
      this.tabWrite.setAttribute("aria-selected", String(!preview));
      this.tabPreview.setAttribute("aria-selected", String(preview));
      this.tabWrite.tabIndex = preview ? -1 : 0;
      this.tabPreview.tabIndex = preview ? 0 : -1;
      this.content.hidden = preview;
      this.preview.hidden = !preview;
      if (preview) {
        this.preview.replaceChildren(this.content.value.trim() ? mdBlock(this.content.value)
          : h("div", { class: "empty-hint" }, "Nothing to preview yet."));
      }
    }
    dispose() {}
    update() {
      patch(this.messageEl, JSON.stringify(this.message), () => messageNotice(this.message));
      const disabled = Boolean(this.busy) || !this.loaded;
      if (this.saveBtn.disabled !== disabled) this.saveBtn.disabled = disabled;
      const label = this.busy ? "Saving…" : this.id ? "Save changes" : "Save draft";
      if (this.saveBtn.textContent !== label) this.saveBtn.textContent = label;
    }
    async save() {
      if (this.busy) return;
      const values = this.values();
      if (!values.title.trim()) {
        this.titleError.textContent = "A plan needs a title.";
        this.title.setAttribute("aria-invalid", "true");
        this.title.focus();
        return;
      }
      this.titleError.textContent = "";
      this.title.removeAttribute("aria-invalid");
      this.busy = "save";
      this.message = null;
      this.update();
      try {
        const plan = this.id ? await api("PATCH", `/agent/plans/${enc(this.id)}`, values)
          : await api("POST", "/agent/plans", values);
        const { orchestrating, progress, total_cost_usd, task_details, ...raw } = plan;
        setPlan(raw);
        scheduleFlush();
        this.initial = this.values();
        this.busy = null;
        navigate(`#plan/${enc(plan.id)}`, !this.id);
      } catch (err) {
        this.busy = null;
        this.message = { kind: "error", text: err.message };
        if (current === this) this.update();
      }
    }
  }

  // ================================================================ global keys & boot
  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    const typing = e.target.closest && e.target.closest("input, textarea, select, [contenteditable]");
    if (e.key === "Escape") {
      if (e.target === filterInput && filterInput.value) {
        filterInput.value = "";
        setFilter();
        return;
      }
      if (current) {
        e.preventDefault();
        closePanel();
      }
      return;
    }
    if (typing) return;
    if (e.key === "/") {
      e.preventDefault();
      filterInput.focus();
      filterInput.select();
    } else if (e.key === "n" || e.key === "N") {
      e.preventDefault();
      navigate("#new");
    }
  });
  $("#new-plan").addEventListener("click", () => navigate("#new"));
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && queue.length) scheduleFlush();
  });
  window.addEventListener("focus", () => {
    if (healthProblems.length) refreshHealth();
  });
  window.addEventListener("beforeunload", (e) => {
    if (current && current.isDirty && current.isDirty()) e.preventDefault();
  });

  // The server set the token cookie when the page was opened with ?token=…; keep it out of the URL.
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }

  window.__shipyard = { state: S, api, version: 1 };
  connect();
  // If the event stream is slow to say hello (a proxy buffering it), show the board anyway.
  setTimeout(() => { if (!S.synced && !syncing) resync(); }, 3000);
  onRoute();
})();
