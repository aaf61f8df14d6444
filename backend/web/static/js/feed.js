/*
 * The activity feed: an agent's or the orchestrator's log as a readable list.
 *
 * Owns: loading the last LOG_TAIL events when a panel opens, appending live
 * events (queued until the tail is in, de-duplicated, capped at FEED_MAX items,
 * keeping the scroll pinned to the bottom when it was), and how each event kind
 * is shown (tool calls with their results folded in, text as markdown, …).
 * Used by the plan panel (orchestrator) and the task panel (agent).
 */
import { api } from "./api.js";
import { h, mdBlock } from "./dom.js";
import { enc, fmtClock, fmtDuration } from "./format.js";
import { S } from "./store.js";

const LOG_TAIL = 2000; // events fetched when a detail panel opens
const FEED_MAX = 4000; // items kept in a live feed

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
