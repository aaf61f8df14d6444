/*
 * The live event stream (/agent/events): events into the state, once per frame.
 *
 * Owns: the EventSource and its reconnect (backing off up to 15 s when the
 * browser gives up), the snapshot taken on every "hello" (first connect and each
 * reconnect), the queue of events applied to the state (store.js applyEvent) in
 * the "apply" phase of the render loop (render.js: a burst of 200 events costs
 * one render), the connection indicator (#conn), and the performance marks of
 * the first paint:
 *   shipyard:data     snapshot received        shipyard:painted   first board painted
 *   measures shipyard:board-render (data -> painted), shipyard:board-build
 *   (data -> DOM built) and shipyard:board-ready (navigation start -> painted),
 * read by bench/board_render.py and the tests. There is no polling.
 *
 * It calls no view: the board and the open panel draw in their own render
 * phases, and the header and panels hear events through store.js onEvent().
 * What a snapshot is (the board's first pages) and what follows it (the
 * health check) are given to startStream() by main.js.
 */
import { $ } from "./dom.js";
import { onFlush, pauseFlush, resumeFlush, scheduleFlush } from "./render.js";
import { S, applyEvent, dirty } from "./store.js";
import { toast } from "./toast.js";

const EVENT_TYPES = [
  "plan.created", "plan.updated", "plan.status", "plan.deleted", "plan.orchestration", "plan.verification", "plan.log",
  "task.created", "task.updated", "task.status", "task.deleted", "task.log", "dispatcher.status",
  "chat.created", "chat.updated", "chat.deleted", "chat.turn", "chat.message", "chat.log",
];

let source = null;
let syncing = false;
let syncGen = 0;
let queue = [];
let reconnectDelay = 1000;
let firstRender = true;
let loadSnapshot = async () => true; // startStream() sets what a snapshot is
let afterSnapshot = () => {};

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
  pauseFlush(); // events wait in the queue until the snapshot is in
  try {
    const current = await loadSnapshot();
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
      resumeFlush();
    }
  }
  afterSnapshot();
}

/** The "apply" phase of a flush: the events queued since the last frame go into the state. */
function applyQueued() {
  const events = queue;
  queue = [];
  for (const [type, data] of events) applyEvent(type, data);
}

/** The "after" phase: once the first snapshot is drawn, mark the first paint (read by bench and tests). */
function markFirstPaint() {
  if (!firstRender || !S.synced) return;
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

/**
 * Connect to the event stream; also show the board if the stream is slow to say hello.
 * `snapshot()` loads the state anew on every hello (resolving false when a newer load
 * supersedes it); `afterSnapshot()` runs once each such load is over.
 */
export function startStream({ snapshot, afterSnapshot: after }) {
  loadSnapshot = snapshot;
  afterSnapshot = after;
  onFlush("apply", applyQueued);
  onFlush("after", markFirstPaint);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && queue.length) scheduleFlush();
  });
  connect();
  // If the event stream is slow to say hello (a proxy buffering it), show the board anyway.
  setTimeout(() => { if (!S.synced && !syncing) resync(); }, 3000);
}
