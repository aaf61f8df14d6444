/*
 * The new-task form (#new-task): a standalone task (no plan) with its agent.
 *
 * Owns: the form (title, what to do, type, agent) and POST /agent/tasks. The task
 * is picked up at once by a free worker; the panel then shows it (#task/<id>).
 */
import { agentSelect, defaultAgent } from "./agents.js";
import { api } from "./api.js";
import { h, patch } from "./dom.js";
import { enc } from "./format.js";
import { messageNotice, panelHead } from "./panel.js";
import { closePanel, isOpen, navigate } from "./router.js";
import { setTask } from "./store.js";
import { scheduleFlush } from "./stream.js";

const TYPES = ["feature", "bugfix", "refactor", "chore", "docs", "test"];

export class TaskEditorView {
  constructor() {
    this.busy = false;
    this.message = null;
    this.titleEl = h("h2", { id: "panel-title", tabindex: "-1" }, "New task");
    this.subEl = h("div", { class: "panel-sub" }, "One change for one agent, in its own worktree.");
    this.title = h("input", { id: "task-title", name: "title", type: "text", required: true, maxlength: "200",
      autocomplete: "off", placeholder: "e.g. Fix the typo in the README" });
    this.content = h("textarea", { id: "task-content", name: "content", rows: "8", class: "code",
      placeholder: "What the agent should do, and how to tell it is done" });
    this.type = h("select", { id: "task-type", name: "task_type" }, TYPES.map((t) => h("option", { value: t }, t)));
    this.agent = agentSelect({ id: "task-agent", name: "agent", fallback: defaultAgent() });
    this.errorEl = h("div", { class: "invalid", role: "alert" });
    this.messageEl = h("div", { "aria-live": "polite" });
    this.saveBtn = h("button", { class: "btn primary", type: "submit", "data-action": "create-task" }, "Create task");
    this.form = h("form", { class: "form", novalidate: true },
      this.messageEl,
      h("div", { class: "field" }, h("label", { for: "task-title" }, "Title"), this.title),
      h("div", { class: "field" }, h("label", { for: "task-content" }, "What to do"), this.content, this.errorEl),
      h("div", { class: "field-row" },
        h("div", { class: "field" }, h("label", { for: "task-type" }, "Type"), this.type),
        h("div", { class: "field" }, h("label", { for: "task-agent" }, "Agent"), this.agent)),
      h("div", { class: "form-actions" }, this.saveBtn,
        h("button", { class: "btn", type: "button", onclick: () => closePanel() }, "Cancel")));
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.save();
    });
    this.root = h("div", { class: "view editor-view" }, panelHead(this.titleEl, this.subEl),
      h("div", { class: "panel-body" }, this.form));
    this.focusTarget = this.title;
  }
  isDirty() {
    return Boolean(this.title.value.trim() || this.content.value.trim());
  }
  confirmLeave() {
    return this.busy || !this.isDirty() || window.confirm("Discard this new task?");
  }
  dispose() {}
  update() {
    patch(this.messageEl, JSON.stringify(this.message), () => messageNotice(this.message));
    this.saveBtn.disabled = this.busy;
    this.saveBtn.textContent = this.busy ? "Creating…" : "Create task";
  }
  async save() {
    if (this.busy) return;
    if (!this.title.value.trim() || !this.content.value.trim()) {
      this.errorEl.textContent = "A task needs a title and what to do.";
      (this.title.value.trim() ? this.content : this.title).focus();
      return;
    }
    this.errorEl.textContent = "";
    this.busy = true;
    this.message = null;
    this.update();
    try {
      const task = await api("POST", "/agent/tasks", {
        title: this.title.value.trim(), content: this.content.value, task_type: this.type.value,
        agent: this.agent.value || null,
      });
      setTask(task);
      scheduleFlush();
      this.title.value = this.content.value = "";
      navigate(`#task/${enc(task.id)}`, true);
    } catch (err) {
      this.busy = false;
      this.message = { kind: "error", text: err.message };
      if (isOpen(this)) this.update();
    }
  }
}
