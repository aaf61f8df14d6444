/*
 * Shipyard dashboard: the entry point. Wires the modules together and boots.
 *
 * No build step and no framework: plain modern JavaScript served as is, loaded
 * as native ES modules (index.html: <script type="module" src="/static/js/main.js">).
 * Data flow: stream.js takes a snapshot and applies events to store.js;
 * board.js and the open panel view render what changed, once per frame
 * (render.js). The open view hears the live events meant for it from here.
 *
 * Owns: the routes (which view each #hash opens), the page-wide keyboard
 * shortcuts (/ filter, N new plan, Esc close), guarding unsaved edits on unload,
 * keeping the access token out of the address bar, and the hooks the browser
 * tests and bench/board_render.py read (window.__shipyard, window.ShipyardMarkdown).
 * See docs/dashboard.md for the module map.
 */
import { api } from "./api.js";
import { filterInput, initBoard, setFilter } from "./board.js";
import { initPages, loadFirstPages } from "./board-pages.js";
import { $ } from "./dom.js";
import { initHeader, refreshHealth } from "./header.js";
import * as markdown from "./markdown.js";
import { EditorView } from "./plan-editor.js";
import { PlanView } from "./plan-panel.js";
import { ReviewView } from "./review.js";
import { addRoute, closePanel, currentView, initRouter, navigate } from "./router.js";
import { S, onEvent } from "./store.js";
import { startStream } from "./stream.js";
import { TaskEditorView } from "./task-editor.js";
import { TaskView } from "./task-panel.js";

performance.mark("shipyard:boot");

addRoute("plan", (id) => (id ? new PlanView(id) : null));
addRoute("task", (id) => (id ? new TaskView(id) : null));
addRoute("new", (chatId) => new EditorView(null, chatId || null)); // #new/<chat id> once the chat has started
addRoute("edit", (id) => (id ? new EditorView(id) : null));
addRoute("review", (id) => (id ? new ReviewView(id) : null));
addRoute("new-task", () => new TaskEditorView());

initBoard();
initPages();
initHeader();
onEvent(tellOpenView);

/** The open panel's live hooks: its feed's log lines, its task's changes, its chat's events. */
function tellOpenView(type, data) {
  const view = currentView();
  if (!view) return;
  if (type === "plan.log" || type === "task.log") {
    if (view.onLog) view.onLog(type === "plan.log" ? "plan" : "task", type === "plan.log" ? data.plan_id : data.task_id,
      data.event);
  } else if (type === "task.created" || type === "task.updated" || type === "task.status") {
    if (view.onTaskChange && data.task) view.onTaskChange(data.task, type, data);
  } else if (type.startsWith("chat.")) {
    if (view.onChat) view.onChat(type, data); // a chat belongs to the editor that shows it (chat.js)
  }
}

document.addEventListener("keydown", (e) => {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  const typing = e.target.closest && e.target.closest("input, textarea, select, [contenteditable]");
  if (e.key === "Escape") {
    if (e.target === filterInput && filterInput.value) {
      filterInput.value = "";
      setFilter();
      return;
    }
    if (currentView()) {
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
$("#new-task").addEventListener("click", () => navigate("#new-task"));
window.addEventListener("beforeunload", (e) => {
  const view = currentView();
  if (view && view.isDirty && view.isDirty()) e.preventDefault();
});

// The server set the token cookie when the page was opened with ?token=…; keep it out of the URL.
const params = new URLSearchParams(location.search);
if (params.has("token")) {
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
}

window.ShipyardMarkdown = { render: markdown.render, escapeHtml: markdown.escapeHtml, safeUrl: markdown.safeUrl };
window.__shipyard = { state: S, api, version: 1 };
// every column's first page on each hello (board-pages.js); the rest loads as it scrolls into view
startStream({ snapshot: () => loadFirstPages({ reset: true }), afterSnapshot: refreshHealth });
initRouter();
