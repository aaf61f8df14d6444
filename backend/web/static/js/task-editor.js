/*
 * The new-task form (#new-task): a standalone task, outside any plan, with its agent.
 *
 * Owns: title, type, agent and description, and creating the task (POST /agent/tasks).
 * A standalone task starts as soon as a worker is free and integrates into the
 * shipyard/tasks branch, which its panel offers to land on the base branch
 * (standalone.js). The agent select's first option follows the project's setting.
 */
import { agentSelect, defaultAgent } from "./agents.js";
import { api } from "./api.js";
import { h, patch } from "./dom.js";
import { enc } from "./format.js";
import { messageNotice, panelHead } from "./panel.js";
import { closePanel, isOpen, navigate } from "./router.js";
import { setTask } from "./store.js";
import { scheduleFlush } from "./render.js";

const TYPES = ["feature", "bugfix", "refactor", "chore", "docs", "test"];

export class TaskEditorView {
  constructor() {
    this.busy = null;
    this.message = null;
    this.titleEl = h("h2", { id: "panel-title", tabindex: "-1" }, "New task");
    this.subEl = h("div", { class: "panel-sub" },
      "A standalone task: one agent does it in its own worktree, as soon as a worker is free.");
    this.title = h("input", { id: "task-title", name: "title", type: "text", required: true, maxlength: "200",
      autocomplete: "off", placeholder: "e.g. Fix the typo in the README" });
    this.type = h("select", { id: "task-type", name: "task_type" }, TYPES.map((t) => h("option", { value: t }, t)));
    this.agent = agentSelect({ id: "task-agent", name: "agent", fallback: defaultAgent() });
    this.content = h("textarea", { id: "task-content", name: "content", class: "code", rows: "12",
      spellcheck: "false", placeholder: "What the agent should do, and how to tell it is done." });
    this.error = h("div", { class: "invalid", role: "alert" });
    this.messageEl = h("div", { "aria-live": "polite" });
    this.saveBtn = h("button", { class: "btn primary", type: "submit", "data-action": "create" }, "Create task");
    this.form = h("form", { class: "form", novalidate: true },
      this.messageEl,
      h("div", { class: "field" }, h("label", { for: "task-title" }, "Title"), this.title),
      h("div", { class: "field-row" },
        h("div", { class: "field" }, h("label", { for: "task-type" }, "Type"), this.type),
        h("div", { class: "field" }, h("label", { for: "task-agent" }, "Agent"), this.agent)),
      h("div", { class: "field" }, h("label", { for: "task-content" }, "Task", h("span", { class: "hint" }, "markdown")),
        this.content, this.error),
      h("div", { class: "form-actions" }, this.saveBtn,
        h("button", { class: "btn", type: "button", onclick: () => this.leave() }, "Cancel"),
        h("span", { class: "hint" }, "Ctrl+Enter to create")));
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
    this.root = h("div", { class: "view editor-view" }, panelHead(this.titleEl, this.subEl),
      h("div", { class: "panel-body" }, this.form));
    this.focusTarget = this.title;
  }
  isDirty() {
    return Boolean(this.title.value.trim() || this.content.value.trim());
  }
  /** Asked by the router before it leaves this view (Escape, another route). */
  confirmLeave() {
    return Boolean(this.busy) || !this.isDirty() || window.confirm("Discard this task?");
  }
  leave() {
    if (!this.confirmLeave()) return;
    this.title.value = this.content.value = "";
    closePanel();
  }
  dispose() {}
  update() {
    patch(this.messageEl, JSON.stringify(this.message), () => messageNotice(this.message));
    this.saveBtn.disabled = Boolean(this.busy);
    this.saveBtn.textContent = this.busy ? "Creating…" : "Create task";
  }
  async save() {
    if (this.busy) return;
    const body = { title: this.title.value.trim(), content: this.content.value, task_type: this.type.value,
      agent: this.agent.value || null };
    if (!body.title || !body.content.trim()) {
      this.error.textContent = "A task needs a title and a description.";
      (body.title ? this.content : this.title).focus();
      return;
    }
    this.error.textContent = "";
    this.busy = "create";
    this.message = null;
    this.update();
    try {
      const task = await api("POST", "/agent/tasks", body);
      setTask(task);
      scheduleFlush();
      this.title.value = this.content.value = "";
      this.busy = null;
      navigate(`#task/${enc(task.id)}`, true);
    } catch (err) {
      this.busy = null;
      this.message = { kind: "error", text: err.message };
      if (isOpen(this)) this.update();
    }
  }
}
