/*
 * The activity feed: an agent's or the orchestrator's log as a readable list.
 *
 * Owns: a window onto a log of any length. Opening a panel loads only the last
 * PAGE events (a seek on the server, whatever the log's size); scrolling up to the
 * top loads the PAGE before, keeping what was on screen in place; live events are
 * appended (queued until the window is in, de-duplicated, keeping the scroll pinned
 * to the bottom when it was), and the oldest rendered ones are dropped past FEED_MAX
 * (scrolling up brings them back). How each event kind is shown (tool calls with
 * their results folded in, text as markdown, …) is here too.
 * Used by the plan panel (orchestrator) and the task panel (agent).
 */
import { api } from "./api.js";
import { h, mdBlock } from "./dom.js";
import { enc, fmtClock, fmtDuration } from "./format.js";
import { S } from "./store.js";

const PAGE = 200; // events fetched when a panel opens, and per scroll to the top
const FEED_MAX = 1500; // rendered events kept; older ones are fetched again on scroll
const FIRST_PAINT = 40; // events rendered before the panel is shown; the rest of the page follows in slices

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

export class Feed {
  constructor(kind, id, emptyText, label) {
    this.kind = kind;
    this.id = id;
    this.el = h("div", { class: "feed", role: "log", tabindex: "0", "aria-label": label, "data-empty": emptyText });
    this.keys = new Set();
    this.tools = new Map();
    this.loaded = false;
    this.pending = [];
    this.first = null; // seq (1-based line number) of the oldest rendered event
    this.last = 0; // seq of the newest
    this.total = 0;
    this.loadingOlder = false;
    this.filling = false; // rendering the rest of the first page, slice by slice
    this.top = h("div", { class: "feed-note feed-top", hidden: true });
    this.observer = null;
    this.opened = performance.now();
  }
  url(query) {
    return `/agent/${this.kind}s/${enc(this.id)}/log?${query}`;
  }
  async load() {
    try {
      const log = await api("GET", this.url(`tail=${PAGE}`));
      this.total = log.total;
      this.last = log.total;
      const events = log.events;
      const later = events.slice(Math.max(0, events.length - FIRST_PAINT));
      this.first = later.length ? later[0].seq : log.total + 1;
      const frag = document.createDocumentFragment();
      frag.append(this.top);
      for (const ev of later) this.add(ev, frag);
      this.el.append(frag);
      // panel opened → newest events painted (read by bench/feed_render.py and the browser test)
      requestAnimationFrame(() => setTimeout(() => performance.measure("shipyard:feed-open",
        { start: this.opened, end: performance.now() }), 0));
      this.updateTop();
      this.fill(events.slice(0, events.length - later.length));
    } catch (err) {
      if (err.status !== 404) this.el.append(h("div", { class: "feed-note" }, `Could not load the log: ${err.message}`));
    }
    this.loaded = true;
    const pending = this.pending;
    this.pending = [];
    for (const ev of pending) this.add(ev);
    this.el.scrollTop = this.el.scrollHeight;
  }
  /**
   * Render already-fetched older events above the shown ones, a slice per frame, then watch
   * the top. Each slice waits for the frame before it to be painted: the newest events are on
   * screen first, and no slice (with the layout it forces) delays that first paint.
   */
  fill(events) {
    this.filling = true;
    const next = (fn) => requestAnimationFrame(() => setTimeout(fn, 0));
    const step = () => {
      if (!events.length) {
        this.filling = false;
        this.updateTop();
        this.watchTop();
        return;
      }
      const slice = events.splice(Math.max(0, events.length - FIRST_PAINT));
      const frag = document.createDocumentFragment();
      for (const ev of slice) this.add(ev, frag);
      const el = this.el;
      const fromBottom = el.scrollHeight - el.scrollTop;
      this.top.after(frag);
      el.scrollTop = el.scrollHeight - fromBottom;
      this.first = slice[0].seq;
      this.updateTop();
      next(step);
    };
    next(step);
  }
  updateTop() {
    const earlier = (this.first || 1) - 1;
    this.top.hidden = earlier <= 0;
    this.top.textContent = this.loadingOlder || this.filling ? "Loading earlier events…"
      : `${earlier.toLocaleString()} earlier event${earlier === 1 ? "" : "s"} — scroll up to load`;
  }
  watchTop() {
    if (this.observer || typeof IntersectionObserver === "undefined") return;
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadOlder();
    }, { root: this.el, rootMargin: "400px 0px 0px 0px" });
    this.observer.observe(this.top);
  }
  /** Fetch the PAGE events before the oldest shown and put them above it, keeping the view still. */
  async loadOlder() {
    if (this.loadingOlder || this.filling || !this.first || this.first <= 1) return;
    this.loadingOlder = true;
    this.updateTop();
    try {
      const after = Math.max(0, this.first - 1 - PAGE);
      const log = await api("GET", this.url(`after=${after}&limit=${this.first - 1 - after}`));
      const frag = document.createDocumentFragment();
      for (const ev of log.events) this.add(ev, frag);
      const el = this.el;
      const fromBottom = el.scrollHeight - el.scrollTop;
      this.top.after(frag);
      el.scrollTop = el.scrollHeight - fromBottom;
      this.first = after + 1;
    } catch (err) {
      this.top.textContent = `Could not load earlier events: ${err.message}`;
      this.loadingOlder = false;
      return;
    }
    this.loadingOlder = false;
    this.updateTop();
    // still at the top (a short page, a tall screen): keep going
    requestAnimationFrame(() => {
      if (this.el.scrollTop < 400) this.loadOlder();
    });
  }
  push(ev) {
    if (!ev) return;
    if (!this.loaded) {
      this.pending.push(ev);
      return;
    }
    const el = this.el;
    const stick = el.scrollHeight - el.scrollTop - el.clientHeight < 48;
    if (!this.add(ev)) return;
    this.total += 1;
    if (stick) {
      this.trim();
      el.scrollTop = el.scrollHeight;
    }
  }
  /** Keep at most FEED_MAX rendered events; the dropped ones come back by scrolling up. */
  trim() {
    let extra = this.el.querySelectorAll(":scope > .ev").length - FEED_MAX;
    while (extra-- > 0) {
      const oldest = this.top.nextElementSibling;
      if (!oldest || !oldest.classList.contains("ev")) break;
      oldest.remove();
      for (const key of oldest._keys || []) this.keys.delete(key);
      const next = this.top.nextElementSibling;
      this.first = next && next.dataset.seq ? Number(next.dataset.seq) : this.last + 1;
    }
    this.updateTop();
  }
  /** Render one event (or fold a tool result into its call); false if it was already shown. */
  add(ev, parent = this.el) {
    const alt = `${ev.ts}|${ev.kind}|${ev.summary}`;
    if (this.keys.has(alt) || (ev.seq != null && this.keys.has(`#${ev.seq}`))) return false;
    const seq = ev.seq != null ? ev.seq : ++this.last; // live events follow the last line
    const keys = [alt, `#${seq}`];
    for (const key of keys) this.keys.add(key);
    const d = ev.data || {};
    if (ev.kind === "tool_result" && d.tool_use_id && this.tools.has(d.tool_use_id)) {
      const item = this.tools.get(d.tool_use_id);
      if (item.isConnected || item.parentNode) {
        item.querySelector(".ev-main").append(resultDetails(d, ev.summary));
        if (d.is_error) item.classList.add("tone-error", "has-error");
        item._keys.push(...keys);
        return true;
      }
    }
    const item = renderEvent(ev, this);
    item.dataset.seq = String(seq);
    item._keys = keys;
    parent.append(item);
    return true;
  }
}
