/*
 * The review screen (#review/<plan id>): the orchestrator's proposed tasks, editable,
 * before any of them runs.
 *
 * Owns: editing proposals (title, type, content, files, depends_on by position), dropping
 * and adding them, the live shape preview, inline validation by the server's own rules
 * (POST …/proposals/check, debounced), Save, Approve (saves, then publishes all at once)
 * and Discard (the plan goes back to ready; the plan log keeps the proposals). Leaving
 * with unsaved edits asks first. The list is rebuilt only when proposals are added or
 * removed, so typing never loses focus.
 */
import { api } from "./api.js";
import { h, icon, patch } from "./dom.js";
import { enc } from "./format.js";
import { messageNotice, panelHead } from "./panel.js";
import { isOpen, navigate } from "./router.js";
import { S, planRecord, setPlan } from "./store.js";
import { afterDiscard } from "./replan.js";
import { shapeView } from "./shape.js";
import { scheduleFlush } from "./render.js";

const TYPES = ["feature", "bugfix", "refactor", "chore", "docs", "test"];

function splitList(text) {
  return text.split(",").map((x) => x.trim()).filter(Boolean);
}

export class ReviewView {
  constructor(id) {
    this.id = id;
    this.cardId = id;
    this.items = [];
    this.initial = null;
    this.problems = [];
    this.notes = [];
    this.message = null;
    this.busy = null;
    this.loaded = false;
    this.checkTimer = null;
    this.checkSeq = 0;
    this.titleEl = h("h2", { id: "panel-title", tabindex: "-1" }, "Review tasks");
    this.subEl = h("div", { class: "panel-sub" }, h("span", { class: "mono" }, id));
    this.messageEl = h("div", { "aria-live": "polite" });
    this.summaryEl = h("div", { class: "review-summary", "aria-live": "polite" });
    this.listEl = h("ol", { class: "proposals" });
    this.shapeEl = h("div", { class: "review-shape" });
    this.saveBtn = h("button", { class: "btn", type: "button", "data-action": "save", onclick: () => this.save() }, "Save");
    this.approveBtn = h("button", { class: "btn primary", type: "button", "data-action": "approve",
      onclick: () => this.approve() }, icon("play"), "Approve and run");
    this.discardBtn = h("button", { class: "btn danger", type: "button", "data-action": "discard",
      onclick: () => this.discard() }, "Discard");
    this.addBtn = h("button", { class: "btn ghost", type: "button", "data-action": "add", onclick: () => this.add() },
      "+ Add a task");
    this.root = h("div", { class: "view review-view", "data-plan-id": id },
      panelHead(this.titleEl, this.subEl),
      h("div", { class: "panel-body" },
        h("div", { class: "actions", role: "toolbar", "aria-label": "Review actions" },
          this.approveBtn, this.saveBtn, this.discardBtn,
          h("a", { class: "btn ghost", href: `#plan/${enc(id)}` }, "Back to the plan")),
        this.messageEl,
        h("p", { class: "hint review-hint" }, "Nothing runs until you approve. ",
          "“Depends on” lists the numbers of earlier tasks that must be merged first; tasks that change the ",
          "same files run one after the other."),
        this.summaryEl,
        h("section", { class: "section", "aria-label": "Shape" }, h("div", { class: "section-head" }, "Shape"),
          this.shapeEl),
        h("section", { class: "section", "aria-label": "Proposed tasks" },
          h("div", { class: "section-head" }, "Proposed tasks"), this.listEl, this.addBtn)));
    this.focusTarget = this.titleEl;
    this.load();
  }

  async load() {
    try {
      const plan = await api("GET", `/agent/plans/${enc(this.id)}`);
      this.titleEl.textContent = `Review: ${plan.title}`;
      if (plan.status !== "review") {
        this.message = { kind: "info", text: `This plan is ${plan.status}; it has no proposals to review.` };
      }
      this.items = (plan.proposals || []).map((p) => ({ ...p, files: [...(p.files || [])],
        depends_on: [...(p.depends_on || [])] }));
    } catch (err) {
      this.message = { kind: "error", text: err.message };
    }
    this.initial = JSON.stringify(this.items);
    this.loaded = true;
    this.rebuild();
    this.check();
  }

  isDirty() {
    return this.loaded && JSON.stringify(this.items) !== this.initial;
  }
  confirmLeave() {
    return !this.isDirty() || window.confirm("Leave without saving your changes to the proposals?");
  }
  dispose() {
    clearTimeout(this.checkTimer);
    if (this.shapeEl.firstChild && this.shapeEl.firstChild._dispose) this.shapeEl.firstChild._dispose();
  }

  /** Rebuild the editable list (after add/remove); keystrokes only touch this.items. */
  rebuild() {
    this.listEl.replaceChildren(...this.items.map((item, i) => this.editor(item, i)));
    this.update();
  }

  editor(item, index) {
    const n = index + 1;
    const changed = () => {
      this.scheduleCheck();
      this.update();
    };
    const field = (label, input, hint) => h("label", { class: "field" },
      h("span", { class: "field-label" }, label, hint ? h("span", { class: "hint" }, hint) : null), input);
    const title = h("input", { type: "text", value: item.title, maxlength: "120", "data-field": "title",
      "aria-label": `Task ${n} title` });
    title.addEventListener("input", () => { item.title = title.value; changed(); });
    const type = h("select", { "data-field": "task_type", "aria-label": `Task ${n} type` },
      TYPES.map((t) => h("option", { value: t, selected: t === item.task_type }, t)));
    type.addEventListener("change", () => { item.task_type = type.value; changed(); });
    const files = h("input", { type: "text", value: (item.files || []).join(", "), "data-field": "files",
      class: "mono", placeholder: "app/models.py, docs/", "aria-label": `Task ${n} files` });
    files.addEventListener("input", () => { item.files = splitList(files.value); changed(); });
    const deps = h("input", { type: "text", value: (item.depends_on || []).join(", "), "data-field": "depends_on",
      placeholder: "e.g. 1, 2", inputmode: "numeric", "aria-label": `Task ${n} depends on` });
    deps.addEventListener("input", () => {
      item.depends_on = splitList(deps.value).map((x) => (/^\d+$/.test(x) ? Number(x) : x));
      changed();
    });
    const content = h("textarea", { rows: "4", "data-field": "content", class: "code",
      "aria-label": `Task ${n} instructions` });
    content.value = item.content || "";
    content.addEventListener("input", () => { item.content = content.value; changed(); });
    const remove = h("button", { class: "btn ghost danger", type: "button", "data-action": "remove",
      title: "Drop this task (later numbers shift down)", onclick: () => this.remove(index) }, icon("trash"), "Drop");
    const errors = h("div", { class: "proposal-errors", role: "alert" });
    const li = h("li", { class: "proposal", "data-index": n },
      h("div", { class: "proposal-head" }, h("span", { class: "shape-num" }, `#${n}`), title, type, remove),
      h("div", { class: "proposal-row" }, field("Files", files, "paths it will change"),
        field("Depends on", deps, "task numbers")),
      field("Instructions", content),
      errors);
    li._errors = errors;
    return li;
  }

  add() {
    this.items.push({ title: "", content: "", task_type: "feature", files: [], depends_on: [] });
    this.rebuild();
    this.scheduleCheck();
    const inputs = this.listEl.lastChild && this.listEl.lastChild.querySelector("input");
    if (inputs) inputs.focus();
  }

  remove(index) {
    const gone = index + 1;
    this.items.splice(index, 1);
    for (const item of this.items) {
      item.depends_on = (item.depends_on || []).filter((d) => d !== gone).map((d) => (typeof d === "number" && d > gone
        ? d - 1 : d));
    }
    this.rebuild();
    this.scheduleCheck();
  }

  scheduleCheck() {
    clearTimeout(this.checkTimer);
    this.checkTimer = setTimeout(() => this.check(), 250);
  }

  /** Ask the server to validate the current set (the same rules as orchestration). */
  async check() {
    const seq = ++this.checkSeq;
    try {
      const r = await api("POST", `/agent/plans/${enc(this.id)}/proposals/check`, { tasks: this.items });
      if (seq !== this.checkSeq) return;
      this.problems = r.problems;
      this.notes = r.notes;
    } catch (err) {
      if (seq !== this.checkSeq) return;
      this.problems = [{ task: null, message: err.message }];
    }
    if (isOpen(this)) this.update();
  }

  update() {
    patch(this.messageEl, JSON.stringify(this.message), () => messageNotice(this.message));
    const byTask = new Map();
    const general = [];
    for (const p of this.problems) {
      if (p.task) byTask.set(p.task, [...(byTask.get(p.task) || []), p.message]);
      else general.push(p.message);
    }
    [...this.listEl.children].forEach((li, i) => {
      const msgs = byTask.get(i + 1) || [];
      li.classList.toggle("invalid", msgs.length > 0);
      patch(li._errors, JSON.stringify(msgs), () => msgs.map((m) => h("div", null, icon("alert"), m)));
    });
    const count = this.items.length;
    patch(this.summaryEl, JSON.stringify([general, this.problems.length, this.notes, count, this.isDirty()]), () => [
      general.length ? h("div", { class: "notice error", role: "alert" }, icon("alert"),
        h("div", { class: "notice-body" }, h("strong", null, "Cannot approve yet"), general.map((g) => h("div", null, g))))
        : null,
      this.problems.length && !general.length ? h("div", { class: "notice error" }, icon("alert"),
        h("div", { class: "notice-body" }, `${this.problems.length} problem(s) to fix before approving; see the tasks below.`))
        : null,
      this.notes.length ? h("div", { class: "notice info" }, icon("info"),
        h("div", { class: "notice-body" }, this.notes.map((n) => h("div", null, n)))) : null,
      h("div", { class: "hint" }, `${count} task(s)${this.isDirty() ? " · unsaved changes" : ""}`),
    ]);
    const items = this.items.map((item, i) => ({
      id: `p${i + 1}`, label: `#${i + 1}`, title: item.title, files: item.files || [],
      depends_on: (item.depends_on || []).filter((d) => typeof d === "number" && d >= 1 && d <= count && d !== i + 1)
        .map((d) => `p${d}`),
    }));
    patch(this.shapeEl, JSON.stringify(items), () => {
      if (this.shapeEl.firstChild && this.shapeEl.firstChild._dispose) this.shapeEl.firstChild._dispose();
      return items.length ? shapeView(items) : h("div", { class: "empty-hint" }, "No tasks: add one, or discard the plan.");
    });
    const blocked = Boolean(this.busy) || !this.loaded || this.problems.length > 0 || !count;
    this.approveBtn.disabled = blocked;
    this.saveBtn.disabled = Boolean(this.busy) || !this.loaded || !this.isDirty();
    this.discardBtn.disabled = Boolean(this.busy) || !this.loaded;
    this.addBtn.disabled = Boolean(this.busy);
  }

  async run(name, fn) {
    this.busy = name;
    this.message = null;
    this.update();
    try {
      return await fn();
    } catch (err) {
      this.message = { kind: "error", text: err.message };
      return undefined;
    } finally {
      this.busy = null;
      if (isOpen(this)) this.update();
    }
  }

  async save() {
    const plan = await this.run("save", () => api("PUT", `/agent/plans/${enc(this.id)}/proposals`, { tasks: this.items }));
    if (plan) {
      this.initial = JSON.stringify(this.items);
      this.message = { kind: "ok", text: "Saved. Nothing runs until you approve." };
      setPlan(planRecord(plan));
      scheduleFlush();
      this.update();
    }
  }

  async approve() {
    const plan = await this.run("approve", async () => {
      await api("PUT", `/agent/plans/${enc(this.id)}/proposals`, { tasks: this.items });
      return api("POST", `/agent/plans/${enc(this.id)}/approve`);
    });
    if (plan) {
      this.initial = JSON.stringify(this.items);
      setPlan(planRecord(plan));
      scheduleFlush();
      navigate(`#plan/${enc(this.id)}`, true);
    }
  }

  async discard() {
    const current = S.plans.get(this.id);
    const after = current ? afterDiscard(current) : "the plan goes back to ready";
    if (!window.confirm(`Discard these proposals? Then ${after}; the plan log keeps them.`)) return;
    const plan = await this.run("discard", () => api("POST", `/agent/plans/${enc(this.id)}/discard`));
    if (plan) {
      this.initial = JSON.stringify(this.items);
      setPlan(planRecord(plan));
      scheduleFlush();
      navigate(`#plan/${enc(this.id)}`, true);
    }
  }
}
