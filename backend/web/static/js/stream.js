/*
 * The live event stream (/agent/events) and the render loop it drives.
 *
 * Owns: the EventSource and its reconnect (backing off up to 15 s when the
 * browser gives up), the snapshot taken on every "hello" (first connect and each
 * reconnect), the queue of events applied once per animation frame (a burst of
 * 200 events costs one render), and the performance marks of the first paint:
 *   shipyard:data     snapshot received        shipyard:painted   first board painted
 *   measures shipyard:board-render (data -> painted), shipyard:board-build
 *   (data -> DOM built) and shipyard:board-ready (navigation start -> painted),
 * read by bench/board_render.py and the tests. There is no polling.
 */
import { renderBoard } from "./board.js";
import { loadFirstPages, noteEvent } from "./board-pages.js";
import { $ } from "./dom.js";
import { refreshHealth, renderDispatcher } from "./header.js";
import { currentView } from "./router.js";
import { S, activityLine, dirty, dropPlan, dropTask, setPlan, setTask } from "./store.js";
import { toast } from "./toast.js";

const EVENT_TYPES = [
  "plan.created", "plan.updated", "plan.status", "plan.deleted", "plan.orchestration", "plan.verification", "plan.log",
  "task.created", "task.updated", "task.status", "task.deleted", "task.log", "dispatcher.status",
  "chat.created", "chat.updated", "chat.deleted", "chat.turn", "chat.message", "chat.log",
];

function applyEvent(type, data) {
  noteEvent(type, data); // column counts and plan progress (board-pages.js)
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
    case "plan.verification":
      if (data.active) S.verifying.add(data.plan_id);
      else S.verifying.delete(data.plan_id);
      dirty.plans.add(data.plan_id);
      break;
    case "plan.log": {
      const line = activityLine(data.event || {});
      if (line) {
        S.activity.set(`plan:${data.plan_id}`, line);
        dirty.plans.add(data.plan_id);
      }
      const view = currentView();
      if (view && view.onLog) view.onLog("plan", data.plan_id, data.event);
      break;
    }
    case "task.created":
    case "task.updated":
    case "task.status":
      if (data.task) setTask(data.task);
      {
        const view = currentView();
        if (view && view.onTaskChange && data.task) view.onTaskChange(data.task, type, data);
      }
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
      const view = currentView();
      if (view && view.onLog) view.onLog("task", data.task_id, data.event);
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
      if (type.startsWith("chat.")) {
        // a chat belongs to the editor that shows it (chat.js), not to the board
        const view = currentView();
        if (view && view.onChat) view.onChat(type, data);
      }
      break;
  }
}

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
    // every column's first page (board-pages.js); the rest loads as it scrolls into view
    const current = await loadFirstPages({ reset: true });
    if (gen !== syncGen) return;
    if (!current) return; // a newer load (a filter change) is applying its pages
    if (firstRender) performance.mark("shipyard:data");
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

export function scheduleFlush() {
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
  const view = currentView();
  if (view) view.update();
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

/** Connect to the event stream; also show the board if the stream is slow to say hello. */
export function startStream() {
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && queue.length) scheduleFlush();
  });
  connect();
  // If the event stream is slow to say hello (a proxy buffering it), show the board anyway.
  setTimeout(() => { if (!S.synced && !syncing) resync(); }, 3000);
}
